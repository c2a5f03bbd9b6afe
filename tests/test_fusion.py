"""Fusion against hand-computed rankings."""

from __future__ import annotations

import pytest

from heron.errors import HeronError
from heron.retrieval.fusion import FusedRetriever, fuse, linear, rrf

A = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 1.0}}
B = {"q1": {"c": 9.0, "a": 5.0, "d": 1.0}}


def test_rrf_hand_computed():
    fused = rrf([A, B], k=60)
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62; d: 1/63
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert fused["q1"] == pytest.approx(expected)
    assert list(fused["q1"]) == ["a", "c", "b", "d"]
    assert fused["q2"] == pytest.approx({"x": 1 / 61})


def test_rrf_weights_and_depth():
    fused = rrf([A, B], k=1, weights=[1.0, 3.0], depth=2)
    # a: 1/2 + 3/3 = 1.5; c: 1/4 + 3/2 = 1.75; b: 1/3; d: 3/4
    assert list(fused["q1"]) == ["c", "a"]
    assert fused["q1"]["c"] == pytest.approx(1.75)


def test_linear_minmax_hand_computed():
    fused = linear([A, B])
    # A normalised: a 1, b .5, c 0; B: c 1, a .5, d 0 → a 1.5, c 1.0, b .5, d 0
    assert fused["q1"] == pytest.approx({"a": 1.5, "c": 1.0, "b": 0.5, "d": 0.0})
    assert fused["q2"] == pytest.approx({"x": 1.0})


def test_linear_zscore_missing_docs_get_run_minimum():
    fused = linear([A, B], norm="zscore")
    # A = (3, 2, 1): mean 2, sd sqrt(2/3) → a 1.2247, b 0, c -1.2247
    # B = (9, 5, 1): mean 5, sd sqrt(32/3) → c 1.2247, a 0, d -1.2247; b (missing from B) gets B's minimum
    z = 1.224744871391589
    assert fused["q1"] == pytest.approx({"a": z, "b": -z, "c": 0.0, "d": -z - z})


def test_errors():
    with pytest.raises(HeronError, match="unknown fusion"):
        fuse([A, B], "max")
    with pytest.raises(HeronError, match="3 fusion weights for 2 runs"):
        rrf([A, B], weights=[1, 2, 3])
    with pytest.raises(HeronError, match="at least two"):
        FusedRetriever([object()])


def test_fused_retriever_runs_members():
    class Fixed:
        def __init__(self, run, name):
            self.run, self.n = run, name

        def retrieve(self, dataset, queries, k=1000):
            return self.run

        def describe(self):
            return {"name": self.n}

    ret = FusedRetriever([Fixed(A, "a"), Fixed(B, "b")], "rrf")
    assert ret.retrieve(None, {"q1": ""}, k=2)["q1"] == pytest.approx({"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61})
    assert ret.describe()["name"] == "a+b-rrf"
