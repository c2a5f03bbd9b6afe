#!/usr/bin/env python
"""The headline ratios of one or more ``sparse_engines.py`` runs, side by side, as a Markdown table.

For each dataset and cut-off: heron's fastest exact mode against Lucene impact search and against
PISA's fastest *exact* algorithm (every algorithm the run measured; exact = the single-query answers
match brute force), as mean- and p50-latency ratios on 1 thread and as a QPS ratio with the run's
threads; and heron's fastest approximate setting at recall@10 ≥ 0.95 against Seismic's (the authors'
build settings, and heron's pruning budget where measured). One column group per run, so the spread
between runs on a shared machine is visible::

    .venv/bin/python bench/sparse_engines_ratios.py bench/out/sparse_engines-A.json bench/out/sparse_engines-B.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lsrbench import report as R  # noqa: E402


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}×"


def rows(results: dict) -> list[tuple[str, str, str]]:
    """``(dataset, comparison, measured)`` for one run."""
    out = []
    qk = f"qps_{results['threads']}_threads"
    for name, entry in results["datasets"].items():
        heron = R._find(entry, "heron-taat") + R._find(entry, "heron-pruned")
        for k in ("10", "1000"):
            h = R._best(heron, k, exact=True)
            if not h:
                continue
            hm = h["by_k"][k]
            for peer, cfgs in (("Lucene impact", R._find(entry, "lucene")), ("PISA best exact", R._find(entry, "pisa-"))):
                p = R._best(cfgs, k, exact=True)
                if not p:
                    continue
                pm = p["by_k"][k]
                out.append((name, f"top-{k}: {peer} time / heron time",
                            f"mean {_x(pm['mean_ms'], hm['mean_ms'])}, p50 {_x(pm['p50_ms'], hm['p50_ms'])}, "
                            f"QPS@{results['threads']} {_x(hm[qk], pm[qk])} ({p['label']} {R._ms(pm['mean_ms'])} / "
                            f"{R._ms(pm['p50_ms'])} ms vs {h['label']} {R._ms(hm['mean_ms'])} / {R._ms(hm['p50_ms'])} ms)"))
        h = R._fastest_at(R._find(entry, "heron-approx"), 0.95)
        for peer, prefix in (("Seismic (authors' settings)", "seismic@"), ("Seismic (heron budget)", "seismic-hb@")):
            s = R._fastest_at(R._find(entry, prefix), 0.95)
            if h and s:
                hm, sm = h["by_k"]["10"], s["by_k"]["10"]
                out.append((name, f"recall@10 ≥ 0.95: {peer} time / heron time",
                            f"mean {_x(sm['mean_ms'], hm['mean_ms'])}, p50 {_x(sm['p50_ms'], hm['p50_ms'])}, "
                            f"QPS@{results['threads']} {_x(hm[qk], sm[qk])} (Seismic {R._knobs(s)} "
                            f"{R._ms(sm['mean_ms'])} ms, recall {sm['recall']:.3f}; heron {h['label']} "
                            f"{R._ms(hm['mean_ms'])} ms, recall {hm['recall']:.3f})"))
    return out


def main(paths: list[str]) -> int:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    table: dict[tuple[str, str], list[str]] = {}
    for i, res in enumerate(runs):
        for ds, what, measured in rows(res):
            table.setdefault((ds, what), ["–"] * len(runs))[i] = measured
    heads = [f"run {r['started'][:16]} UTC (load {r['loadavg_start'][0]:.1f} → {r.get('loadavg_end', [0])[0]:.1f})"
             for r in runs]
    print("| dataset | ratio (> 1: heron faster) | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(runs))
    for (ds, what), cells in table.items():
        print(f"| {ds} | {what} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
