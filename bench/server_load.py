#!/usr/bin/env python
"""Load test of ``heron serve`` on loopback, next to in-process search in the same run.

1. In-process: ``heron.Index`` opened and warmed up, then the request mix searched one query at a time
   for ``--inprocess-seconds`` (one caller: the latency floor).
2. HTTP: ``heron serve`` started as a child process on a free loopback port; ``--clients`` concurrent
   clients (one ``httpx.AsyncClient`` each, keep-alive) send ``POST /v1/search`` for ``--duration``
   seconds, then stop by themselves. Any non-200 answer or transport error counts as an error.

The mix cycles through the retrievers (``--retrievers``, default every member plus the first two
fused) and the dataset's test queries. Reported per retriever and overall: requests, errors, p50 / p99
latency (ms) and throughput (requests/s); JSON to ``bench/out/server_load-<dataset>.json``;
``--write-docs`` prints the Markdown table for docs/BENCHMARKS.md.

    .venv/bin/python bench/server_load.py --index indexes/scifact-bundle --dataset scifact
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # serving.py: start `heron serve` and wait (shared with the tests)


def _stats(latencies: list[float], errors: int, seconds: float) -> dict:
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": len(latencies) + errors, "errors": errors, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "qps": (len(latencies) + errors) / seconds if seconds else 0.0}


def in_process(index_dir: str, mix: list[tuple[str, str]], seconds: float, k: int) -> dict:
    from heron.api import Index

    index = Index.open(index_dir).load().warm_up()
    per: dict[str, list[float]] = {}
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        retriever, query = mix[i % len(mix)]
        t0 = time.perf_counter()
        index.search(query, k=k, retriever=retriever)
        per.setdefault(retriever, []).append(time.perf_counter() - t0)
        i += 1
    elapsed = time.perf_counter() - start
    out = {r: _stats(v, 0, elapsed) for r, v in per.items()}
    out["all"] = _stats([x for v in per.values() for x in v], 0, elapsed)
    return out


async def _clients(url: str, mix: list[tuple[str, str]], clients: int, seconds: float, k: int) -> dict:
    import httpx

    per: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    counter = iter(range(1 << 62))

    async def client():
        async with httpx.AsyncClient(timeout=60) as http:
            while time.perf_counter() < stop:
                retriever, query = mix[next(counter) % len(mix)]
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{url}/v1/search", json={"query": query, "k": k, "retriever": retriever})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    per.setdefault(retriever, []).append(time.perf_counter() - t0)
                else:
                    errors[retriever] = errors.get(retriever, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    out = {r: _stats(per.get(r, []), errors.get(r, 0), elapsed) for r in sorted(set(per) | set(errors))}
    out["all"] = _stats([x for v in per.values() for x in v], sum(errors.values()), elapsed)
    return out


def over_http(index_dir: str, mix, clients: int, seconds: float, k: int, workers: int | None) -> dict:
    import httpx
    from serving import start_heron_serve  # tests/serving.py: start on a free port, wait for /healthz

    args = ["--index", index_dir, "--log-level", "warning"]
    if workers:
        args += ["--workers", str(workers)]
    try:
        server, url = start_heron_serve(args, timeout=300)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    try:
        result = asyncio.run(_clients(url, mix, clients, seconds, k))
        result["metrics_errors"] = sum(
            float(line.rsplit(" ", 1)[1]) for line in httpx.get(f"{url}/metrics").text.splitlines()
            if line.startswith("heron_request_errors_total{"))
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def table(result: dict) -> str:
    lines = ["| retriever | in-process p50 / p99 ms | in-process req/s | HTTP requests | HTTP errors | "
             "HTTP p50 / p99 ms | HTTP req/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r, h in result["http"].items():
        if r == "metrics_errors":
            continue
        p = result["in_process"].get(r, {})
        lines.append(f"| {r} | {p.get('p50_ms', 0):.1f} / {p.get('p99_ms', 0):.1f} | {p.get('qps', 0):.1f} | "
                     f"{h['requests']} | {h['errors']} | {h['p50_ms']:.1f} / {h['p99_ms']:.1f} | {h['qps']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, help="bundle or index directory")
    ap.add_argument("--dataset", required=True, help="queries: the dataset's test queries")
    ap.add_argument("--retrievers", default=None, help="comma list (default: every member + the first two fused)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--inprocess-seconds", type=float, default=30.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--workers", type=int, default=None, help="server search threads (default: CPU count)")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--write-docs", action="store_true", help="print the Markdown table")
    args = ap.parse_args()

    from heron.api import Index
    from heron.eval import load_dataset

    members = Index.open(args.index).retrievers
    retrievers = args.retrievers.split(",") if args.retrievers else members + (
        ["+".join(members[:2])] if len(members) > 1 else [])
    queries = list(load_dataset(args.dataset).queries("test").values())
    mix = [(retrievers[i % len(retrievers)], queries[i % len(queries)]) for i in range(len(queries) * len(retrievers))]
    result = {"index": args.index, "dataset": args.dataset, "retrievers": retrievers, "clients": args.clients,
              "duration_s": args.duration, "k": args.k, "cpus": os.cpu_count()}
    print(f"in-process: {args.inprocess_seconds:.0f} s, one caller", flush=True)
    result["in_process"] = in_process(args.index, mix, args.inprocess_seconds, args.k)
    print(f"HTTP: {args.clients} clients for {args.duration:.0f} s", flush=True)
    result["http"] = over_http(args.index, mix, args.clients, args.duration, args.k, args.workers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"server_load-{Path(args.index).name}.json").write_text(json.dumps(result, indent=1))
    print(table(result))
    total = result["http"]["all"]
    print(f"HTTP total: {total['requests']} requests, {total['errors']} errors, {total['qps']:.1f} req/s")


if __name__ == "__main__":
    main()
