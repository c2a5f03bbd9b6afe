"""Effectiveness metrics through pytrec_eval (trec_eval's own code), per query and mean.

Conventions, as ``trec_eval -c``: the mean is over every query in the qrels (a query with no
retrieved documents scores 0); graded judgments give graded gains in nDCG; recall, MAP and MRR
count grade ≥ 1 as relevant. MRR@10 is trec_eval's ``recip_rank`` on the run cut to 10 documents.

Example::

    >>> qrels = {"q1": {"d1": 1}}
    >>> run = {"q1": {"d2": 2.0, "d1": 1.0}}
    >>> evaluate(run, qrels, ["mrr@10"]).mean["mrr@10"]
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import pytrec_eval

from heron.errors import HeronError
from heron.eval.runs import Run, truncate

#: heron's metric name → (pytrec_eval measure, key in its output, cut applied to the run first)
METRICS: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "recall@100": ("recall.100", "recall_100", None),
    "recall@1000": ("recall.1000", "recall_1000", None),
    "mrr@10": ("recip_rank", "recip_rank", 10),
    "map": ("map", "map", None),
}
DEFAULT_METRICS = ["ndcg@10", "recall@100", "recall@1000", "mrr@10", "map"]


@dataclass
class EvalResult:
    """Per-query values ``{metric: {qid: value}}`` and their means ``{metric: value}``."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    num_queries: int

    def to_dict(self) -> dict:
        return {"num_queries": self.num_queries, "mean": self.mean, "per_query": self.per_query}


def evaluate(run: Run, qrels: dict[str, dict[str, int]], metrics: list[str] | None = None) -> EvalResult:
    """Score ``run`` against ``qrels`` with trec_eval semantics (see module docstring)."""
    metrics = list(metrics or DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise HeronError(f"unknown metric '{unknown[0]}' (known: {', '.join(METRICS)})")
    if not qrels:
        raise HeronError("no relevance judgments to evaluate against")

    # pytrec_eval needs string ids, int grades and float scores
    qrels = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    run = {str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}

    per_query: dict[str, dict[str, float]] = {}
    by_cut: dict[int | None, list[str]] = {}
    for name in metrics:
        by_cut.setdefault(METRICS[name][2], []).append(name)
    for cut, names in by_cut.items():
        scored_run = truncate(run, cut) if cut else run
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {METRICS[n][0] for n in names})
        scores = evaluator.evaluate(scored_run) if scored_run else {}
        for name in names:
            key = METRICS[name][1]
            per_query[name] = {qid: float(scores.get(qid, {}).get(key, 0.0)) for qid in qrels}
    mean = {name: sum(values.values()) / len(values) for name, values in per_query.items()}
    return EvalResult(per_query=per_query, mean=mean, num_queries=len(qrels))
