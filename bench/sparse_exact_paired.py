#!/usr/bin/env python
"""Exact top-k, paired: heron, PISA (every exact algorithm) and Lucene timed in alternating passes.

On a shared machine the load changes from minute to minute, and ``sparse_engines.py`` measures the
engines one after another, so a ratio between two engines also carries the load difference between
their turns. Here every engine is opened in one process and, after each is warmed until stable, the
engines take turns: one round = one pass over every query per engine (single-query calls, 1 thread),
in an order rotated each round. The heron-vs-peer ratio is computed *within* each round (same
minute, same load) and the median over rounds is reported, with its range. Answers are checked
against brute force (tie-aware recall must be 1).

The indexes are built first into ``--work``/paired/<dataset>/ by the same adapters as
``sparse_engines.py`` (``lsrbench.engines``); the vectors and ground truth come from its ``--work``::

    nice -n 5 .venv/bin/python bench/sparse_exact_paired.py --datasets scifact,nfcorpus --rounds 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lsrbench import engines as E  # noqa: E402
from lsrbench.data import VectorSet  # noqa: E402
from lsrbench.metrics import Truth  # noqa: E402

WARM_STABLE = 0.05
WARM_MAX_PASSES = 20


def one_pass(searcher, qs, k, knobs) -> tuple[np.ndarray, list]:
    lat = np.empty(len(qs), np.int64)
    raws = []
    gc.disable()
    try:
        for i, q in enumerate(qs):
            t0 = time.perf_counter_ns()
            raws.append(searcher.one(q, k, **knobs))
            lat[i] = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return lat / 1e6, raws


def build(engine: str, vs: VectorSet, index: Path, threads: int) -> None:
    if index.exists():
        return
    adapter = E.ENGINES[engine]()
    if engine == "lucene":
        adapter.export(vs, index, threads)
    adapter.build(vs, index, threads)


def run_dataset(name: str, work: Path, ks: list[int], rounds: int, threads: int, only: list[str] | None = None) -> dict:
    vs = VectorSet(work / "vectors" / name)
    truth_path = work / "truth" / f"{name}.npz"
    truth = Truth(truth_path)
    keep = np.load(truth_path)["query_rows"]
    all_q = vs.queries()
    queries = [all_q[i] for i in keep]
    base = work / "paired" / name
    base.mkdir(parents=True, exist_ok=True)
    configs = [("heron-taat", "heron", {"mode": "taat"}), ("heron-pruned", "heron", {"mode": "exact"})]
    configs += [(f"pisa-{E.PISA_SHORT[a]}", "pisa", {"algorithm": a}) for a in E.PISA_ALGORITHMS]
    configs.append(("lucene-impact", "lucene", {}))
    if only:
        configs = [c for c in configs if c[0] in only]
    engines = {c[1] for c in configs}
    dirs = {"heron": ("heron-exact-build", base / "heron-exact"), "pisa": ("pisa", base / "pisa"),
            "lucene": ("lucene", base / "lucene")}
    searchers = {}
    for eng in sorted(engines):
        adapter, d = dirs[eng]
        build(adapter, vs, d, threads)
        searchers[eng] = E.ENGINES[adapter]().open(vs, d)
    prepared = {e: s.prepare(queries) for e, s in searchers.items()}
    out = {"queries": len(queries), "by_k": {},
           "lucene_segments": E.lucene_segments(dirs["lucene"][1]) if "lucene" in engines else None}
    for k in ks:
        res = {}
        for label, eng, knobs in configs:  # warm-up until stable, and check the answers
            s, qs = searchers[eng], prepared[eng]
            means = []
            while len(means) < WARM_MAX_PASSES:
                lat, raws = one_pass(s, qs, k, knobs)
                means.append(float(lat.mean()))
                if len(means) >= 2 and abs(means[-1] - means[-2]) < WARM_STABLE * means[-2]:
                    break
            recall = truth.recall(k, [s.rows(r) for r in raws])
            res[label] = {"warmup_passes": len(means), "warmup_means_ms": means, "recall": recall,
                          "mean_ms": [], "p50_ms": [], "loadavg": []}
        order = list(range(len(configs)))
        for _ in range(rounds):
            order = order[1:] + order[:1]  # rotate who goes first
            for i in order:
                label, eng, knobs = configs[i]
                lat, _ = one_pass(searchers[eng], prepared[eng], k, knobs)
                res[label]["mean_ms"].append(float(lat.mean()))
                res[label]["p50_ms"].append(float(np.percentile(lat, 50)))
                res[label]["loadavg"].append(os.getloadavg()[0])
        out["by_k"][str(k)] = res
        print(f"{name} k={k}: " + ", ".join(f"{lab} {np.median(v['mean_ms']):.3f} ms (recall {v['recall']:.4f})"
                                            for lab, v in res.items()), flush=True)
    return out


def ratios(entry: dict, k: str) -> list[str]:
    """Per-round ratios (peer time / heron time, > 1: heron faster), median and range over rounds."""
    res = entry["by_k"][k]
    exact = {lab: v for lab, v in res.items() if v["recall"] >= 0.9999}
    heron = min((lab for lab in exact if lab.startswith("heron")), key=lambda lab: np.median(exact[lab]["mean_ms"]))
    pisa = [lab for lab in exact if lab.startswith("pisa")]
    lines = []
    h = np.array(exact[heron]["mean_ms"])
    hp = np.array(exact[heron]["p50_ms"])
    # PISA's best: the exact algorithm with the lowest median mean latency (one algorithm for all rounds,
    # not the minimum of each round, which would favour PISA by picking its luckiest algorithm per round)
    best = min(pisa, key=lambda lab: np.median(exact[lab]["mean_ms"])) if pisa else None
    best_pisa = np.array(exact[best]["mean_ms"]) if best else None
    best_pisa_p50 = np.array(exact[best]["p50_ms"]) if best else None
    for peer, t, tp in ((f"PISA best exact ({best})", best_pisa, best_pisa_p50),
                        ("Lucene impact", np.array(exact["lucene-impact"]["mean_ms"]) if "lucene-impact" in exact else None,
                         np.array(exact["lucene-impact"]["p50_ms"]) if "lucene-impact" in exact else None)):
        if t is None:
            continue
        r, rp = t / h, tp / hp
        lines.append(f"top-{k}: {peer} / {heron}: mean {np.median(r):.2f}× ({r.min():.2f}–{r.max():.2f}), "
                     f"p50 {np.median(rp):.2f}× ({rp.min():.2f}–{rp.max():.2f})")
    return lines


def markdown(results: dict) -> str:
    lines = [f"Paired run {results['started'][:16]} UTC, {results['rounds']} rounds, load average "
             f"{results['loadavg_start'][0]:.1f} → {results['loadavg_end'][0]:.1f}; median of the per-round "
             "values (ms, single-query calls, 1 thread):", ""]
    for name, entry in results["datasets"].items():
        for k, res in entry["by_k"].items():
            seg = f"; Lucene {entry['lucene_segments']} segment" if entry.get("lucene_segments") else ""
            lines += [f"**{name}, top-{k}** ({entry['queries']} queries{seg})", "",
                      "| engine | mean ms | p50 ms | recall | warm-up passes |", "|---|---:|---:|---:|---:|"]
            for lab, v in sorted(res.items(), key=lambda kv: np.median(kv[1]["mean_ms"])):
                lines.append(f"| {lab} | {np.median(v['mean_ms']):.3g} | {np.median(v['p50_ms']):.3g} | "
                             f"{v['recall']:.4f} | {v['warmup_passes']} |")
            lines += ["", "Ratios (> 1: heron faster; per-round median, range): " + "; ".join(ratios(entry, k)) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="scifact,nfcorpus")
    ap.add_argument("--work", default=str(HERE / "out" / "work"), help="sparse_engines.py's work folder")
    ap.add_argument("--ks", default="10,1000")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--configs", default="", help="only these labels (e.g. heron-taat,pisa-taat,pisa-bmm)")
    ap.add_argument("--threads", type=int, default=2, help="build threads")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the paired indexes")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    if args.rebuild:
        shutil.rmtree(work / "paired", ignore_errors=True)
    started = dt.datetime.now(dt.UTC)
    results = {"command": " ".join(["bench/sparse_exact_paired.py", *(argv or sys.argv[1:])]),
               "started": started.isoformat(), "rounds": args.rounds, "loadavg_start": os.getloadavg(), "datasets": {}}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        only = [c.strip() for c in args.configs.split(",") if c.strip()] or None
        results["datasets"][name] = run_dataset(name, work, [int(k) for k in args.ks.split(",")], args.rounds,
                                                args.threads, only)
    results["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"sparse_exact_paired-{stamp}.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    (out / f"sparse_exact_paired-{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
