#!/usr/bin/env python
"""Effectiveness against retrieval cost for SPLADE regularisation sweeps.

Reads what ``scripts/experiments_splade_prf.sh`` leaves under a results folder: one sub-folder per trained
point (``flops-1e-3``, ``idf-1e-3``, ``if-flops-1e-3``, ``if-idf-1e-3``, ``base``, ``base-idf``), each
with a ``heron eval --cost`` result per dataset (``<label>/<dataset>/cost.json`` and the metrics JSON).
Families by label prefix: ``flops-`` siamese FLOPS, ``idf-`` siamese IDF-aware FLOPS, ``if-flops-``
inference-free FLOPS (binary query tokens), ``if-idf-`` inference-free IDF-aware FLOPS (Geng et al.).

Writes, under ``--out``: ``splade-tradeoff-siamese.png`` and ``splade-tradeoff-inference-free.png``
(rows: datasets; columns: nDCG@10 against mean postings traversed per query and against FLOPS, log
scale; one curve per family, the untuned splade-tiny as a star), ``splade-tradeoff.json`` (every point)
and a Markdown table on stdout, with each IDF-aware point compared with the FLOPS curve at the same
cost (log-linear interpolation between the FLOPS points around it) and, in or out of that range, by
Pareto dominance (lower or equal cost and higher or equal nDCG@10).

    .venv/bin/python bench/splade_tradeoff.py results/splade-prf/splade --out docs/img/splade-prf
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

FAMILIES = {  # label prefix → (variant, curve name)
    "if-idf-": ("inference-free", "IDF-aware FLOPS (IDF query weights)"),
    "if-flops-": ("inference-free", "FLOPS (binary query tokens)"),
    "idf-": ("siamese", "IDF-aware FLOPS"),
    "flops-": ("siamese", "FLOPS"),
}
BASES = {"base": "siamese", "base-idf": "inference-free"}


def family(label: str) -> tuple[str, str, float] | None:
    """(variant, curve, λ) of a sweep label such as ``if-idf-1e-2``; ``None`` for the base points."""
    for prefix, (variant, curve) in FAMILIES.items():
        if label.startswith(prefix):
            return variant, curve, float(label[len(prefix):])
    return None


def load_points(root: Path) -> list[dict]:
    points = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for ds_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
            cost_file = ds_dir / "cost.json"
            metrics = sorted(ds_dir.glob(f"{ds_dir.name}/*/metrics.json")) or sorted(ds_dir.glob("*/*/metrics.json"))
            if not cost_file.is_file() or not metrics:
                continue
            cost = json.loads(cost_file.read_text())[0]
            record = json.loads(metrics[0].read_text())
            label = label_dir.name
            fam = family(label)
            lam = fam[2] if fam else None
            points.append({"label": label, "dataset": ds_dir.name, "variant": fam[0] if fam else BASES.get(label),
                           "curve": fam[1] if fam else "splade-tiny (no fine-tuning)", "lambda": lam,
                           "ndcg@10": record["mean"]["ndcg@10"], "recall@100": record["mean"].get("recall@100"),
                           **{k: cost[k] for k in ("postings", "flops", "query_terms", "doc_terms")}})
    return points


def interpolate(curve: list[dict], cost: float, key: str) -> float | None:
    """nDCG@10 of a curve at ``cost`` (log-linear between its two neighbouring points)."""
    pts = sorted(curve, key=lambda p: p[key])
    for a, b in zip(pts, pts[1:]):
        if a[key] <= cost <= b[key]:
            if b[key] == a[key]:
                return max(a["ndcg@10"], b["ndcg@10"])
            t = (math.log(cost) - math.log(a[key])) / (math.log(b[key]) - math.log(a[key]))
            return a["ndcg@10"] + t * (b["ndcg@10"] - a["ndcg@10"])
    return None


def plot(points: list[dict], variant: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({p["dataset"] for p in points})
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.6 * len(datasets)), dpi=110, squeeze=False)
    for row, ds in enumerate(datasets):
        mine = [p for p in points if p["dataset"] == ds and p["variant"] == variant]
        for col, (key, xlabel) in enumerate((("postings", "mean postings traversed per query"),
                                             ("flops", "FLOPS (expected multiply-adds per query-document pair)"))):
            ax = axes[row][col]
            for curve in sorted({p["curve"] for p in mine if p["lambda"] is not None}):
                pts = sorted((p for p in mine if p["curve"] == curve), key=lambda p: p[key])
                ax.plot([p[key] for p in pts], [p["ndcg@10"] for p in pts], marker="o", label=curve)
                for p in pts:
                    ax.annotate(f"λ={p['lambda']:g}", (p[key], p["ndcg@10"]), fontsize=6,
                                textcoords="offset points", xytext=(3, 3))
            for p in (p for p in mine if p["lambda"] is None):
                ax.plot([p[key]], [p["ndcg@10"]], marker="*", ms=11, ls="", color="black", label=p["curve"])
            ax.set_xscale("log")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("nDCG@10")
            ax.set_title(f"{ds}: {variant}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args()
    points = load_points(args.results)
    if not points:
        raise SystemExit(f"{args.results}: no heron eval --cost results found")
    args.out.mkdir(parents=True, exist_ok=True)
    for variant in ("siamese", "inference-free"):
        if any(p["variant"] == variant for p in points):
            plot(points, variant, args.out / f"splade-tradeoff-{variant}.png")
    comparisons = []
    for p in points:
        if p["lambda"] is None or "IDF-aware" not in p["curve"]:
            continue
        flops_curve = [o for o in points if o["dataset"] == p["dataset"] and o["variant"] == p["variant"]
                       and o["lambda"] is not None and "IDF-aware" not in o["curve"]]
        at = interpolate(flops_curve, p["postings"], "postings")
        # outside the FLOPS curve's range: Pareto comparison with its points
        beats = [o for o in flops_curve if o["postings"] >= p["postings"] and o["ndcg@10"] <= p["ndcg@10"]]
        beaten = [o for o in flops_curve if o["postings"] <= p["postings"] and o["ndcg@10"] >= p["ndcg@10"]]
        comparisons.append({"dataset": p["dataset"], "variant": p["variant"], "label": p["label"],
                            "ndcg@10": p["ndcg@10"], "postings": p["postings"], "flops_curve_at_same_postings": at,
                            "dominates": [o["label"] for o in beats], "dominated_by": [o["label"] for o in beaten]})
    (args.out / "splade-tradeoff.json").write_text(json.dumps({"points": points, "matched_cost": comparisons},
                                                              indent=1))
    print("| dataset | variant | point | λ | nDCG@10 | R@100 | query terms | doc terms | postings / query | FLOPS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in sorted(points, key=lambda p: (p["dataset"], p["variant"] or "", p["curve"], p["lambda"] or 0)):
        lam = "—" if p["lambda"] is None else f"{p['lambda']:g}"
        print(f"| {p['dataset']} | {p['variant']} | {p['curve']} | {lam} | {p['ndcg@10']:.4f} | "
              f"{p['recall@100']:.4f} | {p['query_terms']:.1f} | {p['doc_terms']:.1f} | {p['postings']:,.0f} | "
              f"{p['flops']:.3f} |")
    print()
    print("| dataset | variant | IDF-aware point | nDCG@10 | postings / query | FLOPS curve at the same cost | Δ "
          "| FLOPS points it dominates (cost ≤, nDCG ≥) | FLOPS points dominating it |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in sorted(comparisons, key=lambda c: (c["dataset"], c["variant"], c["postings"])):
        ref = c["flops_curve_at_same_postings"]
        delta = "outside its range" if ref is None else f"{c['ndcg@10'] - ref:+.4f}"
        ref_s = "—" if ref is None else f"{ref:.4f}"
        print(f"| {c['dataset']} | {c['variant']} | {c['label']} | {c['ndcg@10']:.4f} | {c['postings']:,.0f} | "
              f"{ref_s} | {delta} | {', '.join(c['dominates']) or '—'} | {', '.join(c['dominated_by']) or '—'} |")


if __name__ == "__main__":
    main()
