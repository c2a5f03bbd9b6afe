#!/usr/bin/env python
"""Exact term at a time over compressed postings: the two ways of collecting a query's top-k, timed turn about.

``bits``: every posting also marks its document in a touched bitset, then the bitset is walked into the top-k
heap (``kernels._push_window``); ``dense``: no bitset, one scan of the whole accumulator in groups of 16
(``kernels._push_dense``; from ``kernels.BUFFERED_K`` results on, a buffer of candidate keys instead of the heap).
Both include sorting the results (``heap_finish``). ``InvertedIndex.search`` picks ``dense`` for queries with at least
``num_docs / kernels.DENSE_SCAN`` postings; this script runs every query both ways, checks that the answers are
identical, and prints the best and median of ``--rounds`` passes (ms per query, one thread)::

    python bench/dense_scan.py --index /tmp/dictbench/work/paired/dictionaries/heron-exact \\
        --vectors /tmp/dictbench/work/vectors/dictionaries --truth /tmp/dictbench/work/truth/dictionaries.npz
    python bench/dense_scan.py --index /tmp/presets/w/scifact-index --queries-npz /tmp/presets/w/scifact-queries.npz

Queries come from a ``sparse_engines.py`` vector set (``--vectors``, the rows of ``--truth`` when given) or from
an ``approx_presets.py queries`` file (``--queries-npz``, its test split). ``--top-terms N`` keeps each query's
``N`` largest weights (shorter queries: fewer postings per document, where the bitset wins).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heron.indexing.inverted import InvertedIndex, codec, kernels  # noqa: E402
from heron.indexing.inverted.topk import heap_finish, heap_reset, outputs, prepare_query  # noqa: E402


def load_queries(args) -> list[tuple[np.ndarray, np.ndarray]]:
    if args.queries_npz:  # <work>/<name>-queries.npz
        from approx_presets import load_queries as preset_queries

        path = Path(args.queries_npz)
        return preset_queries(path.parent, path.name.removesuffix("-queries.npz"), "test")
    from lsrbench.data import VectorSet

    queries = VectorSet(Path(args.vectors)).queries()
    rows = np.load(args.truth)["query_rows"] if args.truth else range(len(queries))
    return [queries[i] for i in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--vectors")
    ap.add_argument("--truth")
    ap.add_argument("--queries-npz")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--top-terms", type=int, default=0)
    args = ap.parse_args()
    if not (args.vectors or args.queries_npz):
        ap.error("give --vectors or --queries-npz")
    index = InvertedIndex.open(args.index)
    arrays = codec.compressed_arrays(index.arrays)
    po, n = arrays[0], index.num_docs
    queries = [prepare_query(t, w, len(po) - 1) for t, w in load_queries(args)]
    if args.top_terms:
        keep = [np.sort(np.argsort(-w, kind="stable")[:args.top_terms]) for _, w in queries]
        queries = [(np.ascontiguousarray(t[o]), np.ascontiguousarray(w[o])) for (t, w), o in zip(queries, keep)]
    postings = np.mean([int((po[t + 1] - po[t]).sum()) for t, _ in queries])
    size = max(n, kernels.WINDOW)
    wacc, wbits, err = np.zeros(size), np.zeros((size + 63) // 64, np.uint64), np.zeros(2, np.int64)
    hs, hd = np.empty(min(args.k, n), np.float32), np.empty(min(args.k, n), np.int32)
    no_mask, block_size = np.zeros(0, np.uint8), np.int64(index.block_size)

    def one_pass(dense: bool) -> tuple[float, list]:
        out = []
        t0 = time.perf_counter()
        for t, w in queries:
            heap_reset(hs, hd)
            if not codec.score_query(*arrays, np.int64(n), block_size, t, w, np.int64(0), np.int64(len(t)), True,
                                     wacc, wbits, not dense, err):
                codec.raise_error(args.index, err)
            if dense:
                kernels._push_dense(wacc, n, no_mask, hs, hd)
            else:
                kernels._push_window(wacc, wbits, (n + 63) >> 6, 0, no_mask, hs, hd)
            idx, scores = outputs(1, len(hs))
            heap_finish(hs, hd, idx, scores, 0)
            out.append((idx, scores))
        return (time.perf_counter() - t0) / len(queries) * 1e3, out

    first = {way: one_pass(way == "dense")[1] for way in ("bits", "dense")}
    same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first["bits"], first["dense"]))
    if not same:
        sys.exit("the two ways gave different answers")
    times = {"bits": [], "dense": []}
    for _ in range(args.rounds):
        for way in times:
            times[way].append(one_pass(way == "dense")[0])
    best = {w: min(v) for w, v in times.items()}
    med = {w: float(np.median(v)) for w, v in times.items()}
    print(f"{args.index}: {n:,} documents, {len(queries)} queries, {postings / n:.3f} postings per document per "
          f"query, k={args.k}; answers identical")
    print(f"ms/query best: bits {best['bits']:.4f}, dense {best['dense']:.4f}; median: bits {med['bits']:.4f}, "
          f"dense {med['dense']:.4f}; dense / bits (median) {med['dense'] / med['bits']:.3f}")


if __name__ == "__main__":
    main()
