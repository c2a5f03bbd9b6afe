#!/usr/bin/env python
"""Per-query latency of multi-vector search: brute-force MaxSim against MUVERA + rerank.

For each index (``heron build-index --encoder multivector``) and a dataset's test queries, the query
token vectors are encoded once (the index's own encoder and query reduction), then every query is
searched alone, one thread, timed around ``MultiVectorIndex.search``: brute-force exact MaxSim over the
whole corpus, and — when the index holds MUVERA FDEs — FDE top-N from FAISS reranked by exact MaxSim,
N ∈ {50, 100, 200, 500, 1000}. Reported per setting: mean / p50 / p99 milliseconds, the speed-up over
the same index's brute force, and the recall of the brute-force top-10; per index: vectors stored and
bytes on disk (token store, FDE index).

    .venv/bin/python bench/multivector_latency.py --dataset scifact \\
        --index indexes/scifact-colbert-muvera --index indexes/scifact-colbert-muvera-hnsw
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
NS = (50, 100, 200, 500, 1000)


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(index_path: str, dataset: str, ns=NS, max_queries: int | None = None) -> dict:
    import faiss
    import torch

    from heron.eval import load_dataset
    from heron.retrieval.multivector import MultiVectorRetriever

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    retriever = MultiVectorRetriever(index_path, device="cpu", threads=1)
    index = retriever.index
    queries = list(load_dataset(dataset).queries("test").values())[:max_queries]
    clouds = retriever.encode(queries)
    root = Path(index_path)
    fde_bytes = _bytes(root / "fde") if (root / "fde").is_dir() else 0
    out = {"index": index_path, "dataset": dataset, "queries": len(clouds), "num_docs": index.num_docs,
           "vectors": int(index.manifest["num_vectors"]),
           "vectors_per_doc": int(index.manifest["num_vectors"]) / index.num_docs,
           "token_store_bytes": (root / "vectors.npy").stat().st_size, "fde_bytes": fde_bytes,
           "index_bytes": _bytes(root), "fde_faiss": (index.manifest.get("muvera") or {}).get("faiss"),
           "settings": {}}
    index.search(clouds[0], k=10)  # warm-up: page in the store, make the float32 copy
    settings = [None] + (list(ns) if index.fde is not None else [])
    truth = None
    for n in settings:
        if n is not None:
            index.search(clouds[0], k=10, candidates=n)
        times, tops = [], []
        for q in clouds:
            t0 = time.perf_counter()
            ids, _ = index.search(q, k=10, candidates=n)
            times.append(time.perf_counter() - t0)
            tops.append(set(ids))
        if n is None:
            truth = tops
        ms = np.array(times) * 1000
        row = {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
               "p99_ms": float(np.percentile(ms, 99)),
               "recall_of_bruteforce_top10": float(np.mean([len(t & b) / max(len(b), 1)
                                                            for t, b in zip(tops, truth)]))}
        row["speedup_vs_bruteforce"] = out["settings"]["bruteforce"]["mean_ms"] / row["mean_ms"] if n else 1.0
        out["settings"]["bruteforce" if n is None else f"muvera{n}"] = row
        print(f"{index_path} {'bruteforce' if n is None else f'N={n}'}: {row['mean_ms']:.2f} ms mean, "
              f"p99 {row['p99_ms']:.2f}, x{row['speedup_vs_bruteforce']:.1f}, "
              f"recall {row['recall_of_bruteforce_top10']:.3f}", flush=True)
    return out


def table(results: list[dict]) -> str:
    lines = ["| index | vectors/doc | bytes (store + FDE) | search | mean ms | p99 ms | × vs brute | recall of brute top-10 |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for name, s in r["settings"].items():
            lines.append(f"| {Path(r['index']).name} | {r['vectors_per_doc']:.1f} | "
                         f"{r['token_store_bytes'] / 2**20:.0f} + {r['fde_bytes'] / 2**20:.0f} MiB | {name} | "
                         f"{s['mean_ms']:.2f} | {s['p99_ms']:.2f} | {s['speedup_vs_bruteforce']:.1f} | "
                         f"{s['recall_of_bruteforce_top10']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", action="append", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    results = [measure(p, args.dataset, max_queries=args.max_queries) for p in args.index]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"multivector_latency-{args.dataset}.json").write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
