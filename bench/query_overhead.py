#!/usr/bin/env python
"""Where a single exact query's time goes: ``InvertedIndex.search`` (the API) vs the kernel call alone vs the
query preparation alone, per mode, best of 5 passes over the queries (microseconds per query).

    nice -n 5 .venv/bin/python bench/query_overhead.py --vectors <work>/vectors/nfcorpus \
        --index <work>/paired/nfcorpus/heron-exact

``--vectors``: a vector set of ``sparse_engines.py``'s work folder (its queries); ``--index``: a heron index
of the same vectors (as ``sparse_exact_paired.py`` builds it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lsrbench.data import VectorSet  # noqa: E402

from heron.indexing.inverted import InvertedIndex, kernels  # noqa: E402


def best_us(fn, queries, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for q in queries:
            fn(q)
        best = min(best, (time.perf_counter() - start) / len(queries) * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    queries = [(t.astype(np.int32), w.astype(np.float32)) for t, w in VectorSet(args.vectors).queries()]
    index = InvertedIndex.open(args.index)
    mask = np.zeros(0, np.uint8)
    for _ in range(args.rounds):
        for mode in ("exact", "taat"):
            api = best_us(lambda q, mode=mode: index.search(q[0], q[1], k=args.k, mode=mode), queries, args.passes)
            kernel = best_us(lambda q, mode=mode: kernels.search_compressed(mode, index.arrays, index.num_docs, q[0], q[1], args.k,
                                                                 mask, index.block_size, verify=index.verify_blocks),
                             queries, args.passes)
            prep = best_us(lambda q: index._prepare_query(q[0], q[1]), queries, args.passes)
            print(f"{mode}: api {api:.1f} us, kernel {kernel:.1f} us, query preparation {prep:.1f} us")


if __name__ == "__main__":
    main()
