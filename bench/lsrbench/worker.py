"""Child-process side of the benchmark: ``build`` / ``export`` one engine's index, or ``search`` it.

Run by ``sparse_engines.py`` (one process per engine and stage, so builds are measured in isolation:
the parent reads the child's peak RSS from ``wait4``). Writes one JSON file (``--result``).

Search protocol, per configuration and per ``k``:

1. warm-up: a parallel batch over the first 100 queries and 50 single-query calls (numba compilation,
   JVM JIT, page cache are excluded from timing), then whole passes of single-query calls over every
   query until the mean latency of a pass differs from the previous pass's by less than 5 % (at most
   ``WARM_MAX_PASSES`` passes or ``WARM_MAX_SECONDS``; the number of passes is reported, and whether it
   became stable: the JVM keeps compiling for several passes);
2. *latency*: ``--passes`` timed passes, every query once per pass through the engine's single-query
   call on this thread (1 thread), each timed with ``perf_counter_ns``: p50, p99, mean per pass, and the
   median of each over the passes; QPS on 1 thread = 1000 / mean ms;
3. *throughput*: the engine's batch call with ``--threads`` threads over every query, ``--passes``
   times: the median QPS (and QPS of the batch call on 1 thread with ``--batch-1``);
4. recall@k (tie-aware, :mod:`lsrbench.metrics`) of the answers of step 3 (and of step 2's single
   calls: both are reported, since a batch call may answer differently, e.g. a data race);
5. heron only, exact modes: the kernel function alone (no query preparation, no id mapping), to show
   the overhead of the Python API.

Approximate engines first *sweep* their knobs (single-query calls on 1 thread, k = 10, the first 300
queries): mean latency and recall@10 per setting. Along one query cut (one BMP beta) the settings go
from fastest to most accurate and stop once recall@10 reaches 0.995. For each recall target the
fastest setting reaching it is then measured in full, as are fixed configurations (heron's presets).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsrbench import engines as E  # noqa: E402
from lsrbench.data import VectorSet  # noqa: E402
from lsrbench.metrics import Truth, latency_summary  # noqa: E402

RECALL_TARGETS = (0.90, 0.95, 0.99)
WARMUP_SINGLE = 50
WARMUP_BATCH = 100
SWEEP_QUERIES = 300
SWEEP_STOP = 0.995
WARM_MAX_PASSES = 30
WARM_MAX_SECONDS = 120.0  # per configuration and k: then measured anyway, reported "not stable"
WARM_STABLE = 0.05


def _maxrss_bytes() -> int:
    """This process's own peak RSS (``VmHWM``: reset by exec, unlike ``ru_maxrss``, which a child
    inherits from the parent it was forked from)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cmd_build(args) -> dict:
    vs = VectorSet(args.vectors)
    engine = E.ENGINES[args.engine]()
    index_dir = Path(args.index)
    before = _maxrss_bytes()
    t0 = time.perf_counter()
    if args.stage == "export":
        extra = engine.export(vs, index_dir, args.threads)
    else:
        extra = engine.build(vs, index_dir, args.threads)
    seconds = time.perf_counter() - t0
    own = _maxrss_bytes()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"seconds": seconds, "rss_before_build_bytes": before, "self_peak_rss_bytes": own,
            "children_peak_rss_bytes": children, "peak_rss_bytes": max(own, children), **extra}


def _rows(searcher, raws) -> list[np.ndarray]:
    return [searcher.rows(r) for r in raws]


def _single(searcher, qs, k, knobs) -> tuple[np.ndarray, list]:
    lat = np.empty(len(qs), np.int64)
    raws = []
    gc.disable()
    try:
        for i, q in enumerate(qs):
            t0 = time.perf_counter_ns()
            r = searcher.one(q, k, **knobs)
            lat[i] = time.perf_counter_ns() - t0
            raws.append(r)
    finally:
        gc.enable()
    return lat, raws


def _batch(searcher, qs, k, threads, knobs) -> tuple[float, list]:
    gc.disable()
    try:
        t0 = time.perf_counter()
        raws = searcher.batch(qs, k, threads, **knobs)
        seconds = time.perf_counter() - t0
    finally:
        gc.enable()
    return seconds, raws


def _median_summary(passes: list[dict]) -> dict:
    """The median of each latency statistic over the timed passes (and the spread of the means)."""
    out = {key: float(np.median([p[key] for p in passes])) for key in ("p50_ms", "p99_ms", "mean_ms")}
    out["qps_single_calls"] = 1000.0 / out["mean_ms"] if out["mean_ms"] > 0 else None
    out["pass_means_ms"] = [p["mean_ms"] for p in passes]
    return out


def measure(searcher, qs, k, threads, knobs, truth: Truth, keep_rows: bool, kernel: bool, passes: int = 1,
            batch_1: bool = False) -> dict:
    load = list(os.getloadavg())
    searcher.batch(qs[:WARMUP_BATCH], k, threads, **knobs)  # warm-up
    for q in qs[:WARMUP_SINGLE]:
        searcher.one(q, k, **knobs)
    warm_means = []  # whole warm-up passes until the mean is stable
    warm_start = time.perf_counter()
    while len(warm_means) < WARM_MAX_PASSES and time.perf_counter() - warm_start < WARM_MAX_SECONDS:
        lat, _ = _single(searcher, qs, k, knobs)
        warm_means.append(float(lat.mean() / 1e6))
        if len(warm_means) >= 2 and abs(warm_means[-1] - warm_means[-2]) < WARM_STABLE * warm_means[-2]:
            break
    stats, single_raws = [], None
    for _ in range(max(1, passes)):
        lat, single_raws = _single(searcher, qs, k, knobs)
        stats.append(latency_summary(lat))
    qps, raws = [], None
    for _ in range(max(1, passes)):
        sn, raws = _batch(searcher, qs, k, threads, knobs)
        qps.append(len(qs) / sn)
    rows = _rows(searcher, raws)
    out = {**_median_summary(stats), f"qps_{threads}_threads": float(np.median(qps)), "recall": truth.recall(k, rows),
           "recall_single_calls": truth.recall(k, _rows(searcher, single_raws)), "passes": len(stats),
           "warmup_passes": len(warm_means), "warmup_pass_means_ms": warm_means,
           "warmup_stable": len(warm_means) >= 2 and abs(warm_means[-1] - warm_means[-2]) < WARM_STABLE * warm_means[-2],
           f"qps_{threads}_threads_passes": qps, "loadavg": load}
    if batch_1 and threads != 1:
        q1 = []
        for _ in range(max(1, passes)):
            sn, _ = _batch(searcher, qs, k, 1, knobs)
            q1.append(len(qs) / sn)
        out["qps_1_thread_batch"] = float(np.median(q1))
    out["qps_1_thread"] = out.pop("qps_single_calls")
    if kernel and hasattr(searcher, "kernel_one"):  # heron: the kernel call alone (Python API overhead)
        ns = np.empty(len(qs), np.int64)
        for i, q in enumerate(qs):
            t0 = time.perf_counter_ns()
            searcher.kernel_one(q, k, **knobs)
            ns[i] = time.perf_counter_ns() - t0
        out["kernel_only"] = latency_summary(ns)
    if keep_rows:
        out["_rows"] = rows
    return out


def cmd_search(args) -> dict:
    vs = VectorSet(args.vectors)
    engine = E.ENGINES[args.engine]()
    truth = Truth(args.truth)
    searcher = engine.open(vs, Path(args.index))
    keep = np.load(args.truth)["query_rows"]  # the (non-empty) queries measured
    all_q = vs.queries()
    qs = searcher.prepare([all_q[i] for i in keep])
    ks = [int(x) for x in args.ks.split(",")]
    result = {"engine": args.engine, "threads": args.threads, "queries": len(qs), "configs": [], "sweep": []}
    t_start = time.perf_counter()

    # sweep (approximate engines): single-query calls, 1 thread, k=10
    sweep = searcher.sweep() if args.sweep else []
    if sweep:
        k = min(ks)
        sq = qs[:SWEEP_QUERIES]
        searcher.batch(sq, k, args.threads, **sweep[-1])
        done = set()
        for knobs in sweep:
            group_keys = getattr(searcher, "sweep_group", "")
            group = (tuple(knobs.get(g) for g in group_keys) if isinstance(group_keys, tuple)
                     else knobs.get(group_keys))
            if group is not None and group in done:
                continue  # a faster setting along this group already reached SWEEP_STOP
            for q in sq[:10]:
                searcher.one(q, k, **knobs)
            lat, raws = _single(searcher, sq, k, knobs)
            rec = truth.recall(k, _rows(searcher, raws))  # the first SWEEP_QUERIES queries
            result["sweep"].append({"label": searcher.sweep_label, "knobs": knobs, "k": k,
                                    "mean_ms": float(lat.mean() / 1e6), "p50_ms": float(np.percentile(lat, 50) / 1e6),
                                    "recall": rec})
            print(f"  sweep {searcher.sweep_label} {knobs}: {lat.mean() / 1e6:.3f} ms, recall@{k} {rec:.4f}",
                  flush=True)
            if rec >= SWEEP_STOP and group is not None:
                done.add(group)

    configs = list(searcher.configs())
    if sweep:
        chosen = {}
        for target in RECALL_TARGETS:
            ok = [p for p in result["sweep"] if p["recall"] >= target]
            if ok:
                best = min(ok, key=lambda p: p["mean_ms"])
                key = json.dumps(best["knobs"], sort_keys=True)
                chosen.setdefault(key, (best, []))[1].append(target)
        for best, targets in chosen.values():
            label = f"{searcher.sweep_label}@r{'/'.join(f'{t:.2f}' for t in targets)}"
            configs.append((label, dict(best["knobs"]), True))

    rows_out = {}
    for label, knobs, approximate in configs:
        entry = {"label": label, "knobs": knobs, "approximate": approximate, "by_k": {}}
        for k in ks:
            m = measure(searcher, qs, k, args.threads, knobs, truth, keep_rows=args.keep_rows, kernel=not approximate,
                        passes=args.passes, batch_1=args.batch_1)
            if "_rows" in m:
                rows_out[f"{label}|{k}"] = m.pop("_rows")
            entry["by_k"][str(k)] = m
            print(f"  {label} k={k}: p50 {m['p50_ms']:.3f} ms p99 {m['p99_ms']:.3f} ms mean {m['mean_ms']:.3f} ms "
                  f"qps{args.threads} {m[f'qps_{args.threads}_threads']:.1f} recall {m['recall']:.4f} "
                  f"(single calls {m['recall_single_calls']:.4f}; warm-up passes {m['warmup_passes']})"
                  + (f" (kernel alone: mean {m['kernel_only']['mean_ms']:.3f} ms)" if "kernel_only" in m else ""),
                  flush=True)
        result["configs"].append(entry)
    result["seconds"] = time.perf_counter() - t_start
    result["search_process_maxrss_bytes"] = _maxrss_bytes()
    if rows_out:
        np.savez_compressed(Path(args.result).with_suffix(".rows.npz"),
                            **{key: np.concatenate(v) for key, v in rows_out.items()},
                            **{key + "|indptr": np.cumsum([0] + [len(r) for r in v]) for key, v in rows_out.items()})
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--stage", choices=["build", "export"], default="build")
    s = sub.add_parser("search")
    s.add_argument("--truth", required=True)
    s.add_argument("--ks", default="10,1000")
    s.add_argument("--sweep", action="store_true")
    s.add_argument("--keep-rows", action="store_true")
    s.add_argument("--passes", type=int, default=1, help="timed passes per configuration (medians reported)")
    s.add_argument("--batch-1", action="store_true", help="also time the batch call on 1 thread")
    for p in (b, s):
        p.add_argument("--engine", required=True, choices=sorted(E.ENGINES))
        p.add_argument("--vectors", required=True)
        p.add_argument("--index", required=True)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--result", required=True)
    args = ap.parse_args(argv)
    out = cmd_build(args) if args.cmd == "build" else cmd_search(args)
    Path(args.result).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
