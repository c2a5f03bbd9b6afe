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


@pytest.mark.models
def test_fused_and_plain_retrievers_share_models_and_query_encodings(tmp_path, tiny_beir, monkeypatch):
    """``-r splade -r dense -r splade+dense -r bm25+splade+dense`` in one process: each model loads once and
    each query set is encoded once per model; a fused run costs the members' searches, nothing more."""
    import os
    from collections import Counter
    from pathlib import Path

    from heron.build.config import IndexConfig
    from heron.build.index import build_index
    from heron.eval import load_dataset
    from heron.retrieval import CachedIndexRetriever, clear_retriever_cache, get_retriever
    from heron.retrieval.encoders.dense import DenseEncoder
    from heron.retrieval.encoders.splade import SpladeEncoder

    models = Path(os.environ.get("HERON_CACHE", Path.home() / ".cache" / "heron")) / "models"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(models)
    monkeypatch.setenv("HERON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HERON_QUERY_ENCODER", "torch")  # count SpladeEncoder loads (numpy queries load no torch)
    splade = build_index(IndexConfig(dataset=str(tiny_beir), output=str(tmp_path / "splade"),
                                     encoder={"type": "splade", "model": "splade-tiny", "doc_max_length": 64}),
                         progress=False)
    dense = build_index(IndexConfig(dataset=str(tiny_beir), output=str(tmp_path / "dense"),
                                    encoder={"type": "dense", "model": "minilm"}), progress=False)

    loads, encodings = Counter(), Counter()
    for kind, cls in (("splade", SpladeEncoder), ("dense", DenseEncoder)):
        def counted(original, counter, key):
            def wrapper(*args, **kwargs):
                counter[key] += 1
                return original(*args, **kwargs)
            return wrapper

        monkeypatch.setattr(cls, "__init__", counted(cls.__init__, loads, kind))
        monkeypatch.setattr(cls, "encode_queries", counted(cls.encode_queries, encodings, kind))
    # the named "splade" retriever, served by the index built above as if it were its cache index
    monkeypatch.setattr(CachedIndexRetriever, "index_path",
                        lambda self, dataset: splade if self.name == "splade" else dense)
    clear_retriever_cache()
    try:
        ds = load_dataset(tiny_beir)
        queries = ds.queries("test")
        specs = [str(splade), str(dense), f"{splade}+{dense}", f"bm25+{splade}+{dense}", "splade", "splade+dense"]
        retrievers = [get_retriever(spec) for spec in specs]
        runs = [r.retrieve(ds, queries, k=10) for r in retrievers]
        assert loads == {"splade": 1, "dense": 1}
        assert encodings == {"splade": 1, "dense": 1}
        plain_splade, plain_dense, fused = retrievers[:3]
        assert fused.members == [plain_splade, plain_dense] and retrievers[3].members[1:] == fused.members
        assert get_retriever("splade") is retrievers[4] and retrievers[4].for_dataset(ds) is plain_splade
        # the fused run is the fusion of the members' runs
        members = [m.retrieve(ds, queries, k=1000) for m in fused.members]
        assert runs[2] == rrf(members, depth=10) and runs[5] == runs[2]
        assert encodings == {"splade": 1, "dense": 1}
        # another query set is encoded anew (once per model again)
        other = dict(list(queries.items())[:3])
        for r in retrievers[:3]:
            r.retrieve(ds, other, k=5)
        assert encodings == {"splade": 2, "dense": 2} and loads == {"splade": 1, "dense": 1}
    finally:
        clear_retriever_cache()
