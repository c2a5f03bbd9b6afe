#!/usr/bin/env python
"""Load test of ``heron serve`` on loopback, next to in-process search in the same run.

1. In-process: ``heron.Index`` opened and warmed up, then the request mix searched one query at a time
   for ``--inprocess-seconds`` (one caller: the latency floor).
2. HTTP: ``heron serve`` started as a child process on a free loopback port; ``--clients`` concurrent
   clients (one ``httpx.AsyncClient`` each, keep-alive) send ``POST /v1/search`` for ``--duration``
   seconds, then stop by themselves. Any non-200 answer or transport error counts as an error.
3. ``--overload`` (instead of 2): one client sends cheap single queries for ``--idle-seconds`` (the idle
   latency); then the cheap clients alone for ``--duration`` seconds (the latency their own load gives);
   then ``--clients`` clients for ``--duration`` seconds, ``--heavy-clients`` of them (in a process of their
   own) sending batches of ``--heavy-batch`` queries at ``--heavy-k``, the rest cheap single queries.
   ``--think-ms``: a cheap client's pause between queries under load (0: back to back, which saturates a
   small machine by itself; the idle client never pauses). Reported: answers by status class (5xx must be zero), cheap p50 / p99 in each
   phase, the loaded / idle p99 ratio (the acceptance bound is 10×), batch latency and throughput; JSON
   to ``<out>/server_overload-<index>.json``.

The mix cycles through the retrievers (``--retrievers``, default every member plus the first two
fused) and the dataset's test queries. Reported per retriever and overall: requests, errors, p50 / p99
latency (ms) and throughput (requests/s); JSON to ``bench/out/server_load-<dataset>.json``;
``--write-docs`` prints the Markdown table for docs/BENCHMARKS.md.

    .venv/bin/python bench/server_load.py --index indexes/scifact-bundle --dataset scifact
    .venv/bin/python bench/server_load.py --index indexes/scifact-bm25 --dataset scifact --overload
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


async def _overload_clients(url: str, queries: list[str], kind: str, clients: int, start_at: float, stop_at: float,
                            args) -> tuple[list[float], dict[str, int]]:
    """``clients`` clients of one ``kind`` between wall-clock times ``start_at`` and ``stop_at``: ``cheap``
    ones send single queries (then wait ``args.think_ms``), ``heavy`` ones batches; 429s wait Retry-After."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(1 << 62))
    extra = {"retriever": args.retriever} if args.retriever else {}

    async def client():
        async with httpx.AsyncClient(timeout=120) as http:
            while time.time() < stop_at:
                i = next(counter)
                if kind == "cheap":
                    path, body = "/v1/search", {"query": queries[i % len(queries)], "k": args.k, **extra}
                else:
                    start = (i * args.heavy_batch) % len(queries)
                    part = (queries[start:] + queries)[:args.heavy_batch]
                    path, body = "/v1/search/batch", {"queries": part, "k": args.heavy_k, **extra}
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{url}{path}", json=body)
                    status = str(r.status_code) if r.status_code in (429, 503) else f"{r.status_code // 100}xx"
                except httpx.HTTPError as exc:
                    r, status = None, type(exc).__name__
                statuses[status] = statuses.get(status, 0) + 1
                if r is not None and r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                if r is not None and r.status_code == 429:  # shed: wait as told
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                elif kind == "cheap" and args.think_ms:
                    await asyncio.sleep(args.think_ms / 1000)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses


def _clients_process(url, queries, kind, clients, start_at, stop_at, args):
    """One client group in its own process (its JSON and HTTP work off the other group's event loop)."""
    return asyncio.run(_overload_clients(url, queries, kind, clients, start_at, stop_at, args))


def _phase(url: str, queries: list[str], cheap: int, heavy: int, seconds: float, args) -> dict:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    start_at = time.time() + (5.0 if heavy else 0.0)  # the heavy process starts (imports) in the meantime
    stop_at = start_at + seconds
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        loaded = pool.submit(_clients_process, url, queries, "heavy", heavy, start_at, stop_at, args) if heavy \
            else None
        cheap_lat, cheap_status = asyncio.run(_overload_clients(url, queries, "cheap", cheap, start_at, stop_at, args))
        heavy_lat, heavy_status = loaded.result() if loaded else ([], {})
    out = {}
    for kind, lat, statuses in (("cheap", cheap_lat, cheap_status), ("heavy", heavy_lat, heavy_status)):
        errors = sum(n for s, n in statuses.items() if s != "2xx")
        out[kind] = {**_stats(lat, errors, seconds), "statuses": statuses}
    return out


def overload(index_dir: str, queries: list[str], args) -> dict:
    """Idle cheap-query latency, then the same queries with heavy batches mixed in (see the docstring)."""
    import httpx
    from serving import start_heron_serve

    server_args = ["--index", index_dir, "--log-level", "warning"]
    if args.workers:
        server_args += ["--workers", str(args.workers)]
    if args.timeout:
        server_args += ["--timeout", str(args.timeout)]
    server, url = start_heron_serve(server_args, timeout=300)
    try:
        back_to_back = argparse.Namespace(**{**vars(args), "think_ms": 0.0})  # idle: the lowest latency
        _phase(url, queries, 1, 0, min(5.0, args.idle_seconds), back_to_back)  # warm-up, not reported
        idle = _phase(url, queries, 1, 0, args.idle_seconds, back_to_back)["cheap"]
        alone = _phase(url, queries, args.clients - args.heavy_clients, 0, args.duration, args)["cheap"]
        loaded = _phase(url, queries, args.clients - args.heavy_clients, args.heavy_clients, args.duration, args)
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        server.terminate()
        server.wait(timeout=30)
    fives = sum(n for kind in ("cheap", "heavy") for s, n in loaded[kind]["statuses"].items() if s.startswith("5"))
    return {"idle": idle, "cheap_alone": alone, "loaded": loaded, "server_5xx": fives,
            "cheap_p99_ratio": loaded["cheap"]["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else float("inf"),
            "lane_metrics": [line for line in metrics.splitlines() if line.startswith("heron_search_")]}


def overload_table(result: dict) -> str:
    o = result["overload"]
    idle, alone, cheap, heavy = o["idle"], o["cheap_alone"], o["loaded"]["cheap"], o["loaded"]["heavy"]
    lines = ["| phase | clients | requests | answers by status | p50 / p99 ms | req/s |", "|---|---:|---:|---|---:|---:|",
             f"| idle, cheap queries | 1 | {idle['requests']} | {idle['statuses']} | {idle['p50_ms']:.1f} / "
             f"{idle['p99_ms']:.1f} | {idle['qps']:.1f} |",
             f"| cheap clients alone | {result['clients'] - result['heavy_clients']} | {alone['requests']} | "
             f"{alone['statuses']} | {alone['p50_ms']:.1f} / {alone['p99_ms']:.1f} | {alone['qps']:.1f} |",
             f"| loaded, cheap queries | {result['clients'] - result['heavy_clients']} | {cheap['requests']} | "
             f"{cheap['statuses']} | {cheap['p50_ms']:.1f} / {cheap['p99_ms']:.1f} | {cheap['qps']:.1f} |",
             f"| loaded, batches of {result['heavy_batch']} (k={result['heavy_k']}) | {result['heavy_clients']} | "
             f"{heavy['requests']} | {heavy['statuses']} | {heavy['p50_ms']:.1f} / {heavy['p99_ms']:.1f} | "
             f"{heavy['qps']:.1f} |"]
    lines.append(f"\n5xx answers: {o['server_5xx']}; cheap p99 under load / idle: {o['cheap_p99_ratio']:.1f}×")
    return "\n".join(lines)


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
    ap.add_argument("--overload", action="store_true", help="idle vs loaded cheap queries, heavy batches mixed in")
    ap.add_argument("--heavy-clients", type=int, default=4, help="--overload: clients sending batches")
    ap.add_argument("--heavy-batch", type=int, default=64, help="--overload: queries per batch")
    ap.add_argument("--heavy-k", type=int, default=100, help="--overload: k of the batches")
    ap.add_argument("--idle-seconds", type=float, default=20.0, help="--overload: idle phase")
    ap.add_argument("--retriever", default=None, help="--overload: retriever (default: the index's)")
    ap.add_argument("--timeout", type=float, default=None, help="--overload: the server's --timeout")
    ap.add_argument("--think-ms", type=float, default=0.0, help="--overload: a cheap client's pause between queries")
    args = ap.parse_args()

    from heron.api import Index
    from heron.eval import load_dataset

    members = Index.open(args.index).retrievers
    retrievers = args.retrievers.split(",") if args.retrievers else members + (
        ["+".join(members[:2])] if len(members) > 1 else [])
    queries = list(load_dataset(args.dataset).queries("test").values())
    if args.overload:
        result = {"index": args.index, "dataset": args.dataset, "clients": args.clients, "cpus": os.cpu_count(),
                  "heavy_clients": args.heavy_clients, "heavy_batch": args.heavy_batch, "heavy_k": args.heavy_k,
                  "k": args.k, "duration_s": args.duration, "idle_s": args.idle_seconds, "timeout": args.timeout,
                  "think_ms": args.think_ms}
        print(f"overload: 1 client idle for {args.idle_seconds:.0f} s, then {args.clients} clients "
              f"({args.heavy_clients} sending batches, in a process of their own) for {args.duration:.0f} s; cheap "
              f"clients pause {args.think_ms:g} ms between queries", flush=True)
        result["overload"] = overload(args.index, queries, args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"server_overload-{Path(args.index).name}.json").write_text(json.dumps(result, indent=1))
        print(overload_table(result))
        return
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
