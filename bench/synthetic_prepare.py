#!/usr/bin/env python
"""Vectors and ground truth for a paired exact run on the synthetic corpus, without the full engine benchmark.

What ``sparse_engines.py`` does before it runs any engine, alone: vector sets of real corpora read from
``bench/forward_index.py prepare`` files (a heron index's stored impacts and its test queries), the
synthetic corpus calibrated from them, and its brute-force ground truth, all under ``--work``; then
``sparse_exact_paired.py --work`` times the exact engines on it::

    python bench/synthetic_prepare.py --work /tmp/w1m --npz scifact=/tmp/fwd/scifact.npz \\
        --npz nfcorpus=/tmp/fwd/nfcorpus.npz --num-docs 1000000
    python bench/sparse_exact_paired.py --datasets synthetic-1000000-q500-s0 --configs heron-taat,pisa-taat \\
        --rounds 3 --work /tmp/w1m
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lsrbench import data as D  # noqa: E402
from sparse_engines import npz_vectors, synthetic_vectors, truth_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--npz", action="append", required=True, metavar="NAME=FILE", help="a real corpus to calibrate from")
    ap.add_argument("--num-docs", type=int, default=1_000_000)
    ap.add_argument("--num-queries", type=int, default=500)
    ap.add_argument("--truth-queries", type=int, default=100, help="queries with ground truth (the paired run's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(args.work)
    real = []
    for spec in args.npz:
        name, _, file = spec.partition("=")
        out = work / "vectors" / name
        real.append(D.VectorSet(out) if D.VectorSet.exists(out) else npz_vectors(name, Path(file), out))
    started = time.time()
    vs = synthetic_vectors(real, work, argparse.Namespace(num_docs=args.num_docs, num_queries=args.num_queries,
                                                          seed=args.seed, rebuild_vectors=False))
    print(f"vectors: {vs.root} ({time.time() - started:.0f} s)", flush=True)
    started = time.time()
    print(f"truth: {truth_for(vs, work, args.truth_queries, [10, 1000])} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
