#!/usr/bin/env python
"""splade-tiny encoding throughput on MS MARCO-length passages, one torch thread (the per-core figure of
docs/SCALING.md): the distinct passages of ``msmarco-train/triples.toy100.tsv`` encoded ``--repeat`` times,
best run reported, with non-zeros per passage and per query::

    flock /tmp/heron-bench.lock .venv/bin/python bench/encode_passages.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco-train" / "triples.toy100.tsv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--triples", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from heron.retrieval.encoders.splade import SpladeEncoder

    rows = [line.rstrip("\n").split("\t") for line in open(args.triples, encoding="utf-8", errors="replace")]
    passages = sorted({p for r in rows for p in r[1:3]})
    queries = sorted({r[0] for r in rows})
    encoder = SpladeEncoder("splade-tiny", threads=1)
    encoder.encode_documents(passages[:16])  # warm-up
    rates = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        docs = encoder.encode_documents(passages)
        rates.append(len(passages) / (time.perf_counter() - started))
    words = np.mean([len(p.split()) for p in passages])
    print(f"{len(passages)} passages ({words:.1f} words), 1 thread: {max(rates):.1f} docs/s best of {args.repeat} "
          f"(runs {', '.join(f'{r:.1f}' for r in rates)}); non-zeros per passage "
          f"{np.diff(docs.indptr).mean():.1f}, per query {np.diff(encoder.encode_queries(queries).indptr).mean():.1f}")


if __name__ == "__main__":
    main()
