#!/usr/bin/env python
"""Cost per entry of scoring forward-index rows, the approximate search's inner loop (docs/BENCHMARKS.md,
"Approximate search: prefetched forward rows").

For each index of ``--work`` (``bench/approx_presets.py build`` layout: ``<corpus>-index``), scores
``--docs`` random documents' stored rows against a random query and prints ns per entry for: the ordered
float64 sum the exact kernels use (``ordered``), four interleaved partial sums (``interleaved``,
``approx._row_dot``), the same with the next rows prefetched as the approximate kernel does
(``prefetched``), and merely reading the rows (``read``). A forward index larger than the last-level cache
(the dictionary corpus) waits on memory; one inside it (SciFact) on arithmetic::

    flock /tmp/heron-bench.lock python bench/forward_row_cost.py --work /tmp/presets/w
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

from heron.indexing.inverted.approx import PREFETCH_OFFSETS, PREFETCH_ROWS, _prefetch_ahead, _row_dot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import approx_presets as P  # noqa: E402


@njit(cache=True)
def ordered(qd, fo, ft, fi, docs):
    total = 0.0
    for d in docs:
        s = 0.0
        for i in range(fo[d], fo[d + 1]):
            s += qd[ft[i]] * fi[i]
        total += s
    return total


@njit(cache=True)
def interleaved(qd, fo, ft, fi, docs):
    total = 0.0
    for d in docs:
        total += _row_dot(qd, ft, fi, fo[d], fo[d + 1])
    return total


@njit(cache=True)
def prefetched(qd, fo, ft, fi, docs):
    total = 0.0
    for p in range(docs.shape[0]):
        _prefetch_ahead(docs, fo, ft, fi, p, docs.shape[0])
        d = docs[p]
        total += _row_dot(qd, ft, fi, fo[d], fo[d + 1])
    return total


@njit(cache=True)
def read(qd, fo, ft, fi, docs):
    total = 0
    for d in docs:
        for i in range(fo[d], fo[d + 1]):
            total += ft[i] + fi[i]
    return float(total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/approx-presets"))
    ap.add_argument("--corpora", default="scifact,nfcorpus,dictionary")
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"prefetch: offsets {PREFETCH_OFFSETS} and rows {PREFETCH_ROWS} documents ahead")
    print("| corpus | forward index MB | ordered | interleaved | prefetched | read |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.corpora.split(","):
        a = P.open_index(args.work, name).arrays
        fo, ft, fi = (np.asarray(a[k]) for k in ("forward_offsets", "forward_terms", "forward_impacts"))
        rng = np.random.default_rng(0)
        docs = rng.integers(0, len(fo) - 1, args.docs).astype(np.int32)
        entries = int((fo[docs + 1] - fo[docs]).sum())
        qd = np.zeros(1 << int(np.ceil(np.log2(int(ft.max()) + 1))))
        qd[rng.integers(0, len(qd), 50)] = rng.random(50)
        cells = []
        for kernel in (ordered, interleaved, prefetched, read):
            kernel(qd, fo, ft, fi, docs[:10])
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                kernel(qd, fo, ft, fi, docs)
                best = min(best, time.perf_counter() - t0)
            cells.append(f"{best / entries * 1e9:.2f} ns")
        size = (ft.nbytes + fi.nbytes + fo.nbytes) / 2**20
        print(f"| {name} | {size:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
