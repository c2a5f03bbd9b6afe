#!/usr/bin/env python
"""Pseudo-relevance feedback against the number of feedback documents.

For one index (a sparse SPLADE index or a dense FAISS index) and a dataset's test queries: the run
without PRF, then Rocchio (α = 1, β = 0.5) and learned PRF models (``heron train prf``, e.g. with and
without LoL) at every feedback count in ``--docs`` (default 1…10). Each run is scored with nDCG@10 and
Recall@100 and compared query by query with the no-PRF run (paired t-test and Wilcoxon signed-rank,
two-sided). A diagnostic, ``unseen``: nDCG@10 against the test qrels without the documents that are
also judged relevant in the *train* qrels (queries left with none are dropped) — a model trained on
the train qrels can learn which documents tend to be relevant at all (64 % of SciFact's test-relevant
documents are train-relevant too); this shows what is left of a gain on documents it never saw judged. Writes ``prf-<dataset>-<label>.json`` and a drift plot ``prf-drift-<dataset>-<label>.png``
(nDCG@10 against feedback documents, one curve per method, the no-PRF level as a line).

    .venv/bin/python bench/prf_drift.py --dataset scifact --index indexes/scifact-base --label splade-tiny \\
        --model lol=checkpoints/scifact-base-prf-lol --model no-lol=checkpoints/scifact-base-prf-no-lol
    .venv/bin/python bench/prf_drift.py --report results/splade-prf/prf 3     # tables of earlier runs at k = 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ["ndcg@10", "recall@100"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--label", required=True, help="name of the base in file names and titles")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of a learned PRF model (split at "
                    "the last =); repeatable")
    ap.add_argument("--docs", default="1,2,3,4,5,6,7,8,9,10")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()

    from heron.eval import evaluate, load_dataset, paired_test
    from heron.retrieval import open_index_retriever
    from heron.retrieval.prf import PRFModel, with_prf

    ds = load_dataset(args.dataset)
    queries, qrels = ds.queries("test"), ds.qrels("test")
    seen = {d for docs in ds.qrels("train").values() for d, grade in docs.items() if grade > 0} \
        if "train" in ds.splits() else set()
    unseen_qrels = {q: kept for q, docs in qrels.items()
                    if (kept := {d: g for d, g in docs.items() if g > 0 and d not in seen})}
    base = open_index_retriever(args.index, threads=args.threads)
    methods: dict[str, object] = {"rocchio": "rocchio"}
    for spec in args.model:
        name, _, path = spec.rpartition("=")  # names may hold "=", paths rarely do
        if not path:
            raise SystemExit(f"--model {spec!r}: expected NAME=PATH")
        methods[name] = PRFModel.load(path)
    counts = [int(x) for x in args.docs.split(",")]

    def score(retriever) -> tuple[object, float]:
        start = time.perf_counter()
        run = retriever.retrieve(ds, queries, k=100)
        seconds = time.perf_counter() - start
        result = evaluate(run, qrels, METRICS)
        result.mean["ndcg@10_unseen"] = evaluate(run, unseen_qrels, ["ndcg@10"]).mean["ndcg@10"]
        return result, seconds

    none, seconds = score(base)
    print(f"{args.dataset} {args.label} no PRF: nDCG@10 {none.mean['ndcg@10']:.4f}  R@100 "
          f"{none.mean['recall@100']:.4f}  unseen {none.mean['ndcg@10_unseen']:.4f} "
          f"({len(unseen_qrels)} queries)  ({seconds:.1f} s)", flush=True)
    out = {"dataset": args.dataset, "index": args.index, "label": args.label, "queries": none.num_queries,
           "unseen_queries": len(unseen_qrels), "no_prf": none.mean, "methods": {}}
    for name, method in methods.items():
        rows = []
        for k in counts:
            if not isinstance(method, str) and k > method.max_feedback:
                continue
            result, seconds = score(with_prf(base, method, docs=k))
            tests = {m: paired_test(none.per_query[m], result.per_query[m]) for m in METRICS}
            rows.append({"docs": k, **{m: result.mean[m] for m in [*METRICS, "ndcg@10_unseen"]},
                         "seconds": round(seconds, 2),
                         **{f"{m}_p_t": tests[m].t_pvalue for m in METRICS},
                         **{f"{m}_p_wilcoxon": tests[m].wilcoxon_pvalue for m in METRICS}})
            print(f"  {name:10s} k={k:2d}  nDCG@10 {result.mean['ndcg@10']:.4f} (p={tests['ndcg@10'].t_pvalue:.3g})"
                  f"  R@100 {result.mean['recall@100']:.4f} (p={tests['recall@100'].t_pvalue:.3g})"
                  f"  unseen {result.mean['ndcg@10_unseen']:.4f}  {seconds:.1f} s",
                  flush=True)
        out["methods"][name] = rows
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{args.dataset}-{args.label}"
    (folder / f"prf-{stem}.json").write_text(json.dumps(out, indent=1))
    plot(out, folder / f"prf-drift-{stem}.png")
    print(f"wrote {folder / f'prf-{stem}.json'} and the drift plot")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    ax.axhline(result["no_prf"]["ndcg@10"], color="grey", ls="--", lw=1, label="no PRF")
    for name, rows in result["methods"].items():
        ax.plot([r["docs"] for r in rows], [r["ndcg@10"] for r in rows], marker="o", ms=3, label=name)
    ax.set_xlabel("feedback documents")
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"PRF drift: {result['dataset']}, {result['label']} base")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(folder: Path, docs: int) -> None:
    """Markdown tables from the JSON files of earlier runs: every method at ``docs`` feedback documents, and
    each curve's largest drop between consecutive feedback counts (LoL's claim: none)."""
    results = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("prf-*.json"))]
    print("| dataset | base | method | nDCG@10 | p (t / Wilcoxon) | R@100 | p (t / Wilcoxon) | nDCG@10, unseen docs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        n = r["no_prf"]
        print(f"| {r['dataset']} | {r['label']} | no PRF | {n['ndcg@10']:.4f} | | {n['recall@100']:.4f} | | "
              f"{n['ndcg@10_unseen']:.4f} |")
        for name, rows in r["methods"].items():
            row = next((x for x in rows if x["docs"] == docs), None)
            if row is None:
                continue
            print(f"| {r['dataset']} | {r['label']} | {name} (k = {docs}) | {row['ndcg@10']:.4f} | "
                  f"{row['ndcg@10_p_t']:.2g} / {row['ndcg@10_p_wilcoxon']:.2g} | {row['recall@100']:.4f} | "
                  f"{row['recall@100_p_t']:.2g} / {row['recall@100_p_wilcoxon']:.2g} | {row['ndcg@10_unseen']:.4f} |")
    print()
    print("| dataset | base | method | nDCG@10 at k = 1 … 10 | largest drop from k to k+1 |")
    print("|---|---|---|---|---|")
    for r in results:
        for name, rows in r["methods"].items():
            values = [x["ndcg@10"] for x in rows]
            drops = [(values[i] - values[i + 1], rows[i + 1]["docs"]) for i in range(len(values) - 1)]
            worst, at = max(drops) if drops else (0.0, None)
            where = f"{worst:.4f} (at k = {at})" if worst > 0 else "none"
            print(f"| {r['dataset']} | {r['label']} | {name} | {' '.join(f'{v:.4f}' for v in values)} | {where} |")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--report":
        report(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    else:
        main()
