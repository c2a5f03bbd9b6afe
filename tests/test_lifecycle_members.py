"""Adding documents to CSR and multi-vector indexes (heron.build.segment): the segmented index answers as a
from-scratch build of all documents with the same model and frozen settings does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import heron

sys.path.insert(0, str(Path(__file__).parent))
from test_lifecycle_api import QUERIES, _build, _corpus, _dataset  # noqa: E402
from test_multivector import tiny_backbone  # noqa: E402, F401  (a fixture: the tiny random backbone)


def _ranked(index, k=10):
    return [[(h.doc_id, h.score) for h in hits] for hits in index.search_batch(QUERIES, k=k)]


def _assert_same_ranking(ours, theirs, atol):
    """Same documents in the same order with scores within ``atol`` (documents are encoded in batches of other
    sizes here and there: padding moves a float by ~1e-7), ties within ``atol`` allowed to swap."""
    for a, b in zip(ours, theirs):
        assert len(a) == len(b)
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=atol)
        for (da, sa), (db, sb) in zip(a, b):
            assert da == db or abs(sa - sb) <= atol, (a, b)


@pytest.fixture(scope="module")
def colbert_model(tiny_backbone, tmp_path_factory):  # noqa: F811  (the imported fixture)
    """A saved multi-vector model (tiny random BERT backbone + projection), so two builds load the same weights."""
    from heron.retrieval.encoders.multivector import MultiVectorEncoder

    enc = MultiVectorEncoder(tiny_backbone, device="cpu", projection_dim=16, query_length=12, document_length=40)
    return enc.save(tmp_path_factory.mktemp("colbert") / "colbert")


def test_multivector_add_equals_a_from_scratch_build(tiny_beir, tmp_path, colbert_model):
    docs = [{**d, "text": d["text"][:200]} for d in _corpus(tiny_beir)[:14]]
    extra = {"encoder": {"type": "multivector", "model": str(colbert_model)}}
    from heron.build import build_index, make_config

    def build(data, out):
        return build_index(make_config({"dataset": str(data), "output": str(out), **extra}), progress=False)

    classic = build(_dataset(tmp_path / "old", docs[:10], tiny_beir), tmp_path / "mv")
    index = heron.Index.open(classic)
    assert index.add(docs[10:]) == 4
    index.delete([docs[2]["_id"]])
    index.commit()
    scratch = build(_dataset(tmp_path / "all", docs[:2] + docs[3:], tiny_beir), tmp_path / "scratch")
    ours, theirs = _ranked(index), _ranked(heron.Index.open(scratch))
    assert all(docs[2]["_id"] not in [d for d, _ in q] for q in ours)
    _assert_same_ranking(ours, theirs, atol=1e-4)
    index.merge(1)
    _assert_same_ranking(_ranked(heron.Index.open(classic)), theirs, atol=1e-4)


@pytest.mark.models
def test_csr_add_equals_a_from_scratch_build_with_the_same_scale(tiny_beir, tmp_path):
    from heron.indexing.inverted import InvertedIndex
    from heron.training.csr import CSRTrainConfig, train_csr

    model = train_csr(CSRTrainConfig(datasets=[str(tiny_beir)], k=8, steps=4, batch_size=8, recon_batch=16),
                      tmp_path / "ck", progress=False)
    docs = [{**d, "text": d["text"][:300]} for d in _corpus(tiny_beir)[:14]]
    classic = _build("csr", _dataset(tmp_path / "old", docs[:10], tiny_beir), tmp_path / "csr",
                     encoder={"type": "csr", "model": str(model)})
    scale = InvertedIndex.open(classic).scale
    index = heron.Index.open(classic)
    index.add(docs[10:])
    index.commit()
    scratch = _build("csr", _dataset(tmp_path / "all", docs, tiny_beir), tmp_path / "scratch",
                     encoder={"type": "csr", "model": str(model)}, scale=scale)
    seg, ref = index.snapshot.member(index.snapshot.members[0]), InvertedIndex.open(scratch)
    assert seg.doc_ids == ref.doc_ids
    diff = abs(seg.vectors(range(len(docs))) - ref.vectors(range(len(docs))))
    # CSR codes are TopK of a dense embedding: a batch-dependent 1e-7 may flip one impact by one step
    assert diff.max() <= 1.5 / scale and diff.nnz <= 0.01 * ref.nnz + 2
    _assert_same_ranking(_ranked(index), _ranked(heron.Index.open(scratch)), atol=2.0 / scale * 8)
