"""Hybrid fusion of runs: reciprocal-rank fusion and normalised linear fusion.

Both take runs ``{qid: {docid: score}}`` (from any retrievers) and return a fused run.

- **RRF** (Cormack et al., 2009): ``score(d) = Σ_r w_r / (k + rank_r(d))`` with ranks from 1 and
  ``k = 60``; a document missing from a run gets nothing from it.
- **Linear**: each run's scores are normalised per query (``minmax`` to [0, 1], or ``zscore``), then
  ``score(d) = Σ_r w_r · norm_r(d)``; a document missing from a run gets that run's minimum (0 after
  min-max; the lowest z-score seen).

Ties are broken by document id so that fusion is deterministic.

Example::

    >>> a = {"q": {"d1": 3.0, "d2": 2.0}}
    >>> b = {"q": {"d2": 0.9, "d3": 0.1}}
    >>> sorted(rrf([a, b])["q"].items(), key=lambda kv: -kv[1])[0][0]
    'd2'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heron.errors import HeronError
from heron.retrieval.base import Retriever, Run

FUSIONS = ("rrf", "linear")


def _weights(runs: Sequence[Run], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(runs)
    if len(weights) != len(runs):
        raise HeronError(f"{len(weights)} fusion weights for {len(runs)} runs")
    return [float(w) for w in weights]


def ranked(scores: dict[str, float]) -> list[str]:
    """Document ids by descending score, ties by id (the order every fused run is read in)."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def _cut(scores: dict[str, float], depth: int | None) -> dict[str, float]:
    items = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(items[:depth] if depth else items)


def rrf(runs: Sequence[Run], k: float = 60.0, weights: Sequence[float] | None = None,
        depth: int | None = None) -> Run:
    """Reciprocal-rank fusion; ``depth`` keeps the top documents of the fused run."""
    ws = _weights(runs, weights)
    fused: Run = {}
    for qid in sorted(set().union(*runs)):
        acc: dict[str, float] = {}
        for run, w in zip(runs, ws):
            for rank, doc in enumerate(ranked(run.get(qid, {})), start=1):
                acc[doc] = acc.get(doc, 0.0) + w / (k + rank)
        fused[qid] = _cut(acc, depth)
    return fused


def _normalise(scores: dict[str, float], method: str) -> tuple[dict[str, float], float]:
    if not scores:
        return {}, 0.0
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    if method == "minmax":
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo
        norm = {d: ((s - lo) / span if span > 0 else 1.0) for d, s in scores.items()}
        return norm, 0.0
    if method == "zscore":
        mu, sd = float(values.mean()), float(values.std())
        norm = {d: ((s - mu) / sd if sd > 0 else 0.0) for d, s in scores.items()}
        return norm, min(norm.values())
    raise HeronError(f"unknown score normalisation {method!r} (choose minmax or zscore)")


def linear(runs: Sequence[Run], weights: Sequence[float] | None = None, norm: str = "minmax",
           depth: int | None = None) -> Run:
    """Weighted sum of per-query normalised scores."""
    ws = _weights(runs, weights)
    fused: Run = {}
    for qid in sorted(set().union(*runs)):
        normalised = [_normalise(run.get(qid, {}), norm) for run in runs]
        docs = set().union(*(n for n, _ in normalised))
        fused[qid] = _cut({d: sum(w * n.get(d, floor) for (n, floor), w in zip(normalised, ws)) for d in docs},
                          depth)
    return fused


def fuse(runs: Sequence[Run], method: str = "rrf", weights: Sequence[float] | None = None, *,
         rrf_k: float = 60.0, norm: str = "minmax", depth: int | None = None) -> Run:
    if method == "rrf":
        return rrf(runs, rrf_k, weights, depth)
    if method == "linear":
        return linear(runs, weights, norm, depth)
    raise HeronError(f"unknown fusion {method!r} (choose from {', '.join(FUSIONS)})")


class FusedRetriever(Retriever):
    """Runs every member retriever to ``depth`` and fuses their runs (``heron eval -r a+b --fusion rrf``)."""

    def __init__(self, members: Sequence[Retriever], method: str = "rrf", weights: Sequence[float] | None = None,
                 rrf_k: float = 60.0, norm: str = "minmax", depth: int = 1000):
        if len(members) < 2:
            raise HeronError("fusion needs at least two retrievers")
        if method not in FUSIONS:
            raise HeronError(f"unknown fusion {method!r} (choose from {', '.join(FUSIONS)})")
        from heron.retrieval.options import FusionOptions, checked

        checked(FusionOptions, "fusion", method=method, weights=weights, rrf_k=rrf_k, depth=depth)
        _weights(members, weights)
        self.members, self.method, self.weights = list(members), method, weights
        self.rrf_k, self.norm, self.depth = rrf_k, norm, depth
        self.name = "+".join(m.describe()["name"] for m in self.members) + f"-{method}"

    def describe(self) -> dict:
        info = {"name": self.name, "fusion": self.method, "members": [m.describe() for m in self.members],
                "depth": self.depth}
        if self.weights is not None:
            info["weights"] = list(self.weights)
        info.update({"rrf_k": self.rrf_k} if self.method == "rrf" else {"norm": self.norm})
        return info

    def retrieve(self, dataset, queries: dict[str, str], k: int = 1000) -> Run:
        runs = [m.retrieve(dataset, queries, k=max(k, self.depth)) for m in self.members]
        return fuse(runs, self.method, self.weights, rrf_k=self.rrf_k, norm=self.norm, depth=k)
