#!/usr/bin/env python
"""Compressed postings on a Zipfian synthetic corpus: format-1 kernels on the decoded arrays vs format 2
(exact, taat); kernel calls, one thread, same answers asserted.

    PYTHONPATH=src .venv/bin/python bench/codec_synthetic.py 300000
"""
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from heron.indexing.inverted import InvertedIndex, build_inverted_index
from heron.indexing.inverted import kernels as K

N, V, L, Q = int(sys.argv[1]), 30000, 100, 200
rng = np.random.default_rng(0)
p = 1.0 / np.arange(1, V + 1) ** 1.0
p /= p.sum()
indptr, indices = [0], []
for _ in range(N):
    t = np.unique(rng.choice(V, size=L, p=p))
    indices.append(t)
    indptr.append(indptr[-1] + len(t))
indices = np.concatenate(indices).astype(np.int32)
data = rng.gamma(1.5, 0.5, len(indices)).astype(np.float32) + 0.01
m = sp.csr_matrix((data, indices, np.array(indptr)), shape=(N, V))
out = tempfile.mkdtemp() + "/idx"
t0 = time.perf_counter()
build_inverted_index([([str(i) for i in range(lo, min(lo + 50000, N))], m[lo:lo + 50000]) for lo in range(0, N, 50000)],
                     out, vocab=[str(i) for i in range(V)], encoder={"type": "synthetic"}, progress=False)
print("build v2 s", time.perf_counter() - t0)
idx = InvertedIndex.open(out)
docs, imps = idx.postings()
po = np.asarray(idx.postings_offsets)
v1 = K.build_block_max(po, docs, imps, 64)
queries = []
for _ in range(Q):
    t = np.unique(rng.choice(V, size=30, p=p)).astype(np.int32)
    queries.append((t, (rng.random(len(t)) + 0.1).astype(np.float32)))
a, mask = idx.arrays, np.zeros(0, np.uint8)
runs = {"v1-exact": lambda q, k: K.search_exact(po, docs, imps, *v1, N, q[0], q[1], k, mask),
        "v1-taat": lambda q, k: K.search_taat(po, docs, imps, N, q[0], q[1], k, mask),
        "v2-exact": lambda q, k: K.search_compressed("exact", a, N, q[0], q[1], k, mask, idx.block_size),
        "v2-taat": lambda q, k: K.search_compressed("taat", a, N, q[0], q[1], k, mask, idx.block_size)}
for q in queries[:20]:
    ref = runs["v1-exact"](q, 10)
    for name, fn in runs.items():
        got = fn(q, 10)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), name
print(f"N={N} nnz={idx.nnz} v2 bytes/posting {idx.bytes_per_posting:.3f}")
for k in (10, 1000):
    for name, fn in runs.items():
        ts = []
        for q in queries:
            t0 = time.perf_counter()
            fn(q, k)
            ts.append(time.perf_counter() - t0)
        ts = np.array(ts) * 1e3
        print(f"k={k} {name}: p50 {np.percentile(ts, 50):.3f} ms mean {ts.mean():.3f} ms", flush=True)
