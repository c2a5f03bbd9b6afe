"""Metrics against hand-computed values (graded relevance, unretrieved relevant docs, missing queries)."""

import math

import pytest

from heron.errors import HeronError
from heron.eval.metrics import evaluate
from heron.eval.runs import ranked, truncate

QRELS = {
    "q1": {"d1": 1, "d2": 2, "d3": 0},
    "q2": {"d5": 1},
    "q3": {"d7": 1},  # never retrieved: counts as 0 in every mean (trec_eval -c)
}
RUN = {
    "q1": {"d3": 3.0, "d1": 2.0, "d4": 1.0, "d2": 0.5},
    "q2": {"d6": 1.0},
    "qX": {"d1": 1.0},  # not judged: ignored
}


def test_graded_ndcg_by_hand():
    # DCG = 1/log2(3) + 2/log2(5); ideal = 2/log2(2) + 1/log2(3)
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 + 1 / math.log2(3)
    res = evaluate(RUN, QRELS)
    assert res.per_query["ndcg@10"]["q1"] == pytest.approx(dcg / idcg, abs=1e-6)
    assert res.per_query["ndcg@10"]["q2"] == 0.0
    assert res.per_query["ndcg@10"]["q3"] == 0.0
    assert res.mean["ndcg@10"] == pytest.approx(dcg / idcg / 3, abs=1e-6)
    assert res.num_queries == 3


def test_recall_map_mrr_by_hand():
    res = evaluate(RUN, QRELS)
    q1 = {m: res.per_query[m]["q1"] for m in res.per_query}
    assert q1["recall@100"] == 1.0  # both grade>=1 docs retrieved; grade 0 is not relevant
    assert q1["mrr@10"] == 0.5  # first relevant (d1) at rank 2
    assert q1["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert res.mean["recall@100"] == pytest.approx(1 / 3)
    assert res.mean["mrr@10"] == pytest.approx(0.5 / 3)


def test_mrr_is_cut_at_10():
    run = {"q": {f"n{i:02d}": 100.0 - i for i in range(10)} | {"rel": 1.0}}
    res = evaluate(run, {"q": {"rel": 1}}, ["mrr@10", "recall@100"])
    assert res.mean["mrr@10"] == 0.0  # relevant doc is at rank 11
    assert res.mean["recall@100"] == 1.0


def test_trec_eval_tie_order_is_docid_descending():
    assert [d for d, _ in ranked({"a": 1.0, "b": 1.0, "c": 2.0})] == ["c", "b", "a"]
    res = evaluate({"q": {"a": 1.0, "b": 1.0}}, {"q": {"a": 1}}, ["mrr@10"])
    assert res.mean["mrr@10"] == 0.5
    assert truncate({"q": {"a": 1.0, "b": 1.0}}, 1) == {"q": {"b": 1.0}}


def test_unknown_metric_and_empty_qrels():
    with pytest.raises(HeronError, match="unknown metric 'p@5'"):
        evaluate(RUN, QRELS, ["p@5"])
    with pytest.raises(HeronError):
        evaluate(RUN, {})
