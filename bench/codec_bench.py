#!/usr/bin/env python
"""Compressed postings (inverted index format 2) against the uncompressed format 1, same vectors.

Reads a heron inverted index (format 2; or, with ``--v1``, a format-1 index whose forward rows are
rebuilt as format 2 first, timing the build), encodes the dataset's test queries with the index's own
query encoder, and reports:

* sizes: bytes per posting and total exact-search index bytes of format 2 vs format 1 (format 1's
  arrays computed from the same postings: int32 documents, impacts, block-max blocks of 64, forward
  index), the VByte size of the same gaps for comparison, and Lucene's impact index (``--lucene``,
  built by ``heron.indexing.lucene.LuceneImpactIndex`` from the same impacts);
* latency, one query at a time on one thread, kernel calls only (no id mapping): the format-1 kernels on
  uncompressed arrays vs the compressed path (decode the query's whole lists, then the same kernels; on
  a one-window collection, decode straight into the accumulator), block checksums on and off, at k = 10
  and 1000;
  ``--lucene`` adds Lucene impact search (``LuceneImpactIndex.search_batch``, one query per call).

Example::

    PYTHONPATH=src .venv/bin/python bench/codec_bench.py --index /tmp/idx/scifact-splade --dataset scifact
    PYTHONPATH=src .venv/bin/python bench/codec_bench.py --v1 ~/.cache/heron/indexes/nfcorpus-*/splade \\
        --index /tmp/idx/nfcorpus-v2 --dataset nfcorpus --lucene
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def rebuild_from_v1(v1: Path, out: Path) -> float:
    """Build a format-2 index at ``out`` from a format-1 index's forward rows (same impacts); seconds."""
    from heron.indexing.inverted import build_inverted_index

    manifest = json.loads((v1 / "manifest.json").read_text())
    scale = float(manifest["quantization"]["scale"])
    offsets, terms = np.load(v1 / "forward_offsets.npy"), np.load(v1 / "forward_terms.npy")
    impacts = np.load(v1 / "forward_impacts.npy")
    vocab = json.loads((v1 / manifest.get("vocab_file", "vocab.json")).read_text())
    ids = (v1 / "doc_ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
    weights = (impacts.astype(np.float64) + 0.25) / scale  # re-quantises to the same integers (as reindex does)
    matrix = sp.csr_matrix((weights, terms, offsets), shape=(len(ids), len(vocab)))
    if out.exists():
        shutil.rmtree(out)
    chunks = [(ids[lo:lo + 4096], matrix[lo:lo + 4096]) for lo in range(0, len(ids), 4096)]
    started = time.perf_counter()
    build_inverted_index(chunks, out, vocab=vocab, encoder=manifest["encoder"], scale=scale,
                         quantization=manifest["quantization"]["dtype"],
                         encoder_dir=v1 / "encoder" if (v1 / "encoder").is_dir() else None, progress=False)
    return time.perf_counter() - started


V1_BUILD = """
import json, sys, time, numpy as np, scipy.sparse as sp
from heron.indexing.inverted import build_inverted_index
z = np.load(sys.argv[1], allow_pickle=False)
m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
ids = [str(i) for i in range(m.shape[0])]
chunks = [(ids[lo:lo + 4096], m[lo:lo + 4096]) for lo in range(0, m.shape[0], 4096)]
t0 = time.perf_counter()
build_inverted_index(chunks, sys.argv[2], vocab=[str(i) for i in range(m.shape[1])], encoder={"type": "bench"},
                     scale=float(z["scale"]), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def build_v1(index, heron_src: str, work: Path) -> dict:
    """Build a format-1 index of the same impacts with another heron source tree (e.g. main before format 2)
    in a child process; its build seconds (in-process, as the manifest's) and size."""
    import os
    import subprocess
    import sys

    fwd = index.forward_matrix()
    rows = work / "v1-rows.npz"
    np.savez(rows, data=(fwd.data.astype(np.float64) + 0.25) / index.scale, indices=fwd.indices, indptr=fwd.indptr,
             shape=np.array(fwd.shape), scale=np.float64(index.scale))
    out = work / "v1-index"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", V1_BUILD, str(rows), str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": heron_src}, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["bytes"] = {p.name: p.stat().st_size for p in out.rglob("*") if p.is_file()}
    result["total_bytes"] = sum(result["bytes"].values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 1, "the v1 heron source did not build format 1"
    return result


def v1_arrays(index, docs, impacts) -> dict:
    """The uncompressed format-1 arrays (block-max blocks of 64) of the same postings."""
    from heron.indexing.inverted import kernels

    po = np.asarray(index.postings_offsets)
    bo, bl, bm = kernels.build_block_max(po, docs, impacts, 64)
    fwd = index.forward_matrix()
    return {"postings_offsets": po, "postings_docs": docs, "postings_impacts": impacts, "block_offsets": bo,
            "block_last_doc": bl, "block_max": bm, "forward_offsets": fwd.indptr.astype(np.int64),
            "forward_terms": fwd.indices.astype(np.int32), "forward_impacts": fwd.data}


def vbyte_bytes(po, docs) -> int:
    """Bytes of the document gaps in VByte (7 bits a byte), gaps restarting at each term."""
    gaps = np.diff(docs.astype(np.int64), prepend=-1)
    gaps[po[:-1][np.diff(po) > 0]] = docs[po[:-1][np.diff(po) > 0]].astype(np.int64) + 1
    return int(np.sum(1 + (gaps >= 1 << 7) + (gaps >= 1 << 14) + (gaps >= 1 << 21) + (gaps >= 1 << 28)))


def timed(fn, queries, k, repeat=1) -> dict:
    for q in queries[:20]:
        fn(q, k)  # warm up (compilation, caches)
    times = []
    for _ in range(repeat):
        for q in queries:
            t0 = time.perf_counter()
            fn(q, k)
            times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, help="format-2 index (built from --v1 when given)")
    ap.add_argument("--v1", help="a format-1 index of the same vectors to rebuild from")
    ap.add_argument("--dataset", required=True, help="BEIR dataset whose test queries to encode")
    ap.add_argument("--lucene", action="store_true", help="also build and search Lucene's impact index")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the queries per measurement")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--v1-heron-src", help="a heron src/ of format 1 (e.g. /work/main/src before the merge): "
                                           "build a format-1 index of the same impacts with it, for build time and size")
    args = ap.parse_args(argv)

    from heron.eval import load_dataset
    from heron.indexing.inverted import InvertedIndex, kernels
    from heron.indexing.inverted import format as fmt
    from heron.retrieval.sparse import SparseIndexRetriever

    out = {"index": args.index, "dataset": args.dataset}
    if args.v1:
        out["build_seconds_v2"] = rebuild_from_v1(Path(args.v1), Path(args.index))
        out["build_seconds_v1"] = json.loads((Path(args.v1) / "manifest.json").read_text())["build"]["seconds"]
    index = InvertedIndex.open(args.index)
    out["build_seconds_v2_manifest"] = index.manifest["build"]["seconds"]
    nnz = index.nnz
    docs, impacts = index.postings()
    v1 = v1_arrays(index, docs, impacts)
    files = index.manifest["files"]
    v2_bytes = {name: int(files[fmt.array_file(name)]["bytes"]) for name in fmt.ARRAYS}
    v1_bytes = {name: int(a.nbytes) + 128 for name, a in v1.items()}  # + the .npy header
    vbyte = vbyte_bytes(np.asarray(index.postings_offsets), docs)
    words = np.asarray(index.postings_words)
    bits = np.asarray(index.block_bits).astype(np.int64)
    df_blocks = np.minimum(index.block_size, np.repeat(np.diff(index.postings_offsets),
                                                       np.diff(index.block_offsets)) -
                           (np.arange(len(bits)) - np.repeat(index.block_offsets[:-1], np.diff(index.block_offsets)))
                           * index.block_size)
    out["sizes"] = {
        "num_docs": index.num_docs, "nnz": nnz, "num_blocks": int(len(bits)),
        "v2_bytes": v2_bytes, "v2_total": sum(v2_bytes.values()), "v2_bytes_per_posting": sum(v2_bytes.values()) / nnz,
        "v2_doc_bits_per_posting": float(np.sum((bits & 0xFF) * df_blocks) / nnz),
        "v2_impact_bits_per_posting": float(np.sum((bits >> 8) * df_blocks) / nnz),
        "v2_words_bytes_per_posting": words.nbytes / nnz,
        "v1_bytes": v1_bytes, "v1_exact_total": sum(v1_bytes.values()),
        "v1_bytes_per_posting": sum(v1_bytes.values()) / nnz,
        "vbyte_doc_bytes_per_posting": vbyte / nnz,
        "index_dir_bytes_v2": sum(p.stat().st_size for p in Path(args.index).rglob("*") if p.is_file()),
    }
    if args.v1_heron_src:
        out["v1_build"] = build_v1(index, args.v1_heron_src, Path(args.index).parent)
    print(json.dumps(out["sizes"], indent=1))

    texts = load_dataset(args.dataset).queries("test")
    encoded = sp.csr_matrix(SparseIndexRetriever(index).encode(list(texts.values())))
    queries = []
    for i in range(encoded.shape[0]):
        lo, hi = encoded.indptr[i], encoded.indptr[i + 1]
        terms, weights = index._prepare_query(encoded.indices[lo:hi], encoded.data[lo:hi])
        if len(terms):
            queries.append((terms, weights))
    out["queries"] = len(queries)
    a, n, mask = index.arrays, index.num_docs, np.zeros(0, np.uint8)
    runs = {
        "v1-exact": lambda q, k: kernels.search_exact(v1["postings_offsets"], v1["postings_docs"],
                                                      v1["postings_impacts"], v1["block_offsets"],
                                                      v1["block_last_doc"], v1["block_max"], n, q[0], q[1], k, mask),
        "v1-taat": lambda q, k: kernels.search_taat(v1["postings_offsets"], v1["postings_docs"], v1["postings_impacts"],
                                                    n, q[0], q[1], k, mask),
    }
    def v2(mode, verify):
        def run(q, k):
            return kernels.search_compressed(mode, a, n, q[0], q[1], k, mask, index.block_size, verify=verify)
        return run

    for mode in ("exact", "taat"):
        for verify in (True, False):
            runs[f"v2-{mode}{'' if verify else '-nochecksum'}"] = v2(mode, verify)
    for name in ("v1-exact", "v2-exact", "v2-taat"):  # same answers
        for q in queries[:50]:
            x, y = runs["v1-exact"](q, 100), runs[name](q, 100)
            assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
    if args.lucene:
        from heron.indexing.lucene import LuceneImpactIndex

        started = time.perf_counter()
        lucene = LuceneImpactIndex.open(args.index, threads=1)
        out["lucene_open_seconds"] = time.perf_counter() - started
        out["sizes"]["lucene_bytes"] = sum(p.stat().st_size for p in lucene.lucene_path.rglob("*") if p.is_file())
        vocab = index.vocab
        runs["lucene-impact"] = lambda q, k: lucene.search_batch(
            [{vocab[t]: float(w) for t, w in zip(q[0].tolist(), q[1].tolist())}], k=k, threads=1)
    out["latency"] = {}
    for k in (10, 1000):
        for name, fn in runs.items():
            out["latency"][f"{name}|{k}"] = res = timed(fn, queries, k, 1 if name.startswith("lucene") else args.repeat)
            print(f"k={k} {name}: p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms, mean {res['mean_ms']:.3f} ms",
                  flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "latency"}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
