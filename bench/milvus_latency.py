#!/usr/bin/env python
"""heron's own index vs Milvus (milvus-lite) on the same vectors, side by side in one run: per member, the
same query vectors (encoded once by heron's encoder) searched one query at a time by heron's index (1 thread)
and by the exported Milvus collection; mean / p50 / p99 milliseconds per query. Query encoding is not timed.

    flock /tmp/heron-bench.lock nice -n 0 .venv/bin/python bench/milvus_latency.py \\
        --index /tmp/mvbench/scifact-bundle --address milvus:///tmp/mvbench/heron.db/scifact --dataset scifact

``--index``: a bundle (or index) directory; ``--address``: the same bundle exported with ``heron export milvus``.
Rounds alternate heron and Milvus so a change of machine load hits both; the best round's numbers are printed.
milvus-lite serves from a server thread in this process (pure Python, FAISS for HNSW): its threads cannot be set.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def timed(search, queries) -> np.ndarray:
    """Milliseconds of ``search(q)`` for each query, one at a time."""
    out = np.zeros(len(queries))
    for i, q in enumerate(queries):
        start = time.perf_counter()
        search(q)
        out[i] = (time.perf_counter() - start) * 1e3
    return out


def summary(ms: np.ndarray) -> dict:
    return {"mean": round(float(ms.mean()), 3), "p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--members", default="splade,dense")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import faiss

    import heron
    from heron.eval import load_dataset

    faiss.omp_set_num_threads(1)
    queries = list(load_dataset(args.dataset).queries(args.split).values())
    local = heron.Index.open(args.index, device="cpu", threads=1)
    served = heron.Index.open(args.address, device="cpu", threads=1)
    report = {"queries": len(queries), "k": args.k, "load": os.getloadavg()[0]}
    for name in args.members.split(","):
        mine, theirs = local.retriever(name), served.retriever(name)
        vectors = mine.encode(queries)
        rows = [vectors[i] for i in range(len(queries))] if hasattr(vectors, "tocsr") else \
            [vectors[i:i + 1] for i in range(len(queries))]
        options = {"threads": 1} if mine.index.kind == "inverted" else {}
        for index, extra in ((mine.index, options), (theirs.index, {})):  # warm-up: compiled kernels, connections
            timed(lambda q, index=index, extra=extra: index.search_batch(q, k=args.k, **extra), rows[:20])
        best = {}
        for _ in range(args.rounds):
            for label, index, extra in (("heron", mine.index, options), ("milvus", theirs.index, {})):
                ms = timed(lambda q, index=index, extra=extra: index.search_batch(q, k=args.k, **extra), rows)
                if label not in best or ms.mean() < best[label].mean():
                    best[label] = ms
        engine = "heron inverted (exact, 1 thread)" if mine.index.kind == "inverted" else \
            f"FAISS {mine.index.index_type} (1 thread)"
        milvus_type = served.milvus.meta["members"][name]["milvus_index"]["index_type"]
        report[name] = {"heron": {"engine": engine, **summary(best["heron"])},
                        "milvus": {"engine": f"milvus-lite {milvus_type}", **summary(best["milvus"])}}
        print(json.dumps({name: report[name]}), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
