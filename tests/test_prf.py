"""Pseudo-relevance feedback: Rocchio / average on real indexes, the learned model (init = Rocchio, safetensors
round trip), its training with and without LoL (loss goes down, gradients reach it, no test query), and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import make_writable

from heron.errors import HeronError
from heron.retrieval.prf import PRFModel, PRFRetriever, average, prune_rows, rocchio, with_prf
from heron.training.prf import PRFTrainConfig, PRFTrainer, lol_regularizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bm25_index(tiny_beir, tmp_path_factory):
    from heron.build.config import make_config
    from heron.build.index import build_index

    path = tmp_path_factory.mktemp("prf") / "tiny-bm25"
    build_index(make_config({"dataset": str(tiny_beir), "output": str(path), "encoder": {"type": "bm25"}}),
                progress=False)
    return path


@pytest.fixture(scope="module")
def base(bm25_index):
    from heron.retrieval import open_index_retriever

    return open_index_retriever(bm25_index, threads=1)


@pytest.fixture(scope="module")
def tiny_ds(tiny_beir):
    from heron.eval import load_dataset

    return load_dataset(str(tiny_beir))


QUERIES = ["protein misfolding in the brain", "vitamin d deficiency and bone density", "gene expression in cancer"]


def test_vector_formulas_hand_computed():
    q = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    docs = np.array([[[0.0, 2.0, 0.0], [2.0, 2.0, 4.0]], [[1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]])
    mask = np.array([[True, True], [True, False]])
    np.testing.assert_allclose(rocchio(q, docs, 1.0, 0.5, mask), [[1.5, 1.0, 1.0], [0.5, 2.5, 0.5]])
    np.testing.assert_allclose(rocchio(q, docs, 0.4, 0.6), [[0.4 + 0.6, 1.2, 1.2], [3.0, 0.8 + 3.0, 3.0]])
    np.testing.assert_allclose(average(q, docs, mask), [[1.0, 4 / 3, 4 / 3], [0.5, 1.5, 0.5]], rtol=1e-6)
    # no feedback document at all: the query is kept (α·q), never averaged with nothing
    none = np.zeros((2, 2), dtype=bool)
    np.testing.assert_allclose(rocchio(q, docs, 2.0, 0.5, none), 2.0 * q)
    np.testing.assert_allclose(average(q, docs, none), q)
    np.testing.assert_array_equal(prune_rows(np.array([[0.5, -1.0, 3.0, 2.0]]), 2), [[0.0, 0.0, 3.0, 2.0]])
    np.testing.assert_array_equal(prune_rows(np.array([[0.5, -1.0, 3.0]]), 0), [[0.5, 0.0, 3.0]])


def test_rocchio_on_an_inverted_index_is_the_formula(base):
    prf = with_prf(base, "rocchio", docs=2, alpha=0.7, beta=0.4, terms=0)
    assert isinstance(prf, PRFRetriever) and prf.index is base.index
    q = base.encode(QUERIES).toarray()
    first = base.search_vectors(sp.csr_matrix(q), 2)
    forward = base.index.forward_matrix(dequantize=True)
    expected = np.stack([0.7 * q[r] + 0.4 * forward[[base.index.doc_index(d) for d in ids]].toarray().mean(axis=0)
                         for r, (ids, _) in enumerate(first)])
    revised = prf.encode(QUERIES)
    assert sp.issparse(revised) and revised.shape == (3, base.index.vocab_size)
    np.testing.assert_allclose(revised.toarray(), expected, rtol=1e-5, atol=1e-6)
    got = prf.search(QUERIES, k=5)
    want = base.search_vectors(sp.csr_matrix(expected.astype(np.float32)), 5)
    for (ids, scores), (wids, wscores) in zip(got, want):
        assert ids == wids
        np.testing.assert_allclose(scores, wscores, rtol=1e-5)
    # expansion: the revision holds terms the query did not have, and pruning caps them
    assert revised[0].nnz > sp.csr_matrix(q[0]).nnz
    assert max(with_prf(base, "rocchio", docs=2, terms=7).encode(QUERIES).getnnz(axis=1)) <= 7
    avg = with_prf(base, "average", docs=2, terms=0).encode(QUERIES[:1]).toarray()[0]
    rows = forward[[base.index.doc_index(d) for d in first[0][0]]].toarray()
    np.testing.assert_allclose(avg, (q[0] + rows.sum(axis=0)) / 3, rtol=1e-5, atol=1e-6)


def test_prf_retriever_is_an_index_retriever(base, tiny_ds):
    prf = with_prf(base, "rocchio", docs=3)
    run = prf.retrieve(tiny_ds, tiny_ds.queries("test"), k=10)
    assert set(run) == set(tiny_ds.queries("test")) and all(len(d) == 10 for d in run.values())
    info = prf.describe()
    assert info["name"].endswith("-prf-rocchio3-a1-b0.5") and info["prf"]["docs"] == 3
    # allow: feedback and ranking both stay within the allowed documents
    allowed = base.index.doc_ids[:7]
    hits = prf.search(QUERIES, k=5, allow=allowed)
    assert all(set(ids) <= set(allowed) for ids, _ in hits)


def test_prf_errors_are_one_line(base, tmp_path):
    for spec, match in (("rm3", "unknown PRF"), ("model:", "unknown PRF"), (f"model:{tmp_path}", "prf_model.json")):
        with pytest.raises(HeronError, match=match):
            with_prf(base, spec)
    with pytest.raises(HeronError, match="unknown PRF option"):
        with_prf(base, "rocchio", depth=3)
    with pytest.raises(HeronError, match="prf: field 'docs': Input should be greater than or equal to 1"):
        with_prf(base, "rocchio", docs=0)
    with pytest.raises(HeronError, match="prf: field 'beta': Input should be a finite number"):
        with_prf(base, "rocchio", beta=float("inf"))
    wrong = PRFModel("sparse", base.index.vocab_size + 1, 3)
    with pytest.raises(HeronError, match="dimensions"):
        with_prf(base, wrong)
    with pytest.raises(HeronError, match="at most 3"):
        with_prf(base, PRFModel("sparse", base.index.vocab_size, 3), docs=5)
    with pytest.raises(HeronError, match="inverted index or a FAISS"):
        with_prf(object(), "rocchio")


@pytest.mark.parametrize("space", ["sparse", "dense"])
def test_model_starts_as_rocchio_and_round_trips(space, tmp_path):
    torch.manual_seed(0)
    b, k, dim = 3, 4, 12
    q = torch.rand(b, dim)
    docs = torch.rand(b, k, dim)
    scores = torch.sort(torch.rand(b, k), dim=1, descending=True).values
    mask = torch.tensor([[True, True, True, False], [True, False, False, False], [False] * 4])
    model = PRFModel(space, dim, max_feedback=k)
    with torch.no_grad():
        out = model(q, docs, scores, mask).numpy()
    np.testing.assert_allclose(out, rocchio(q.numpy(), docs.numpy(), 1.0, 0.5, mask.numpy()), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # move every parameter away from its initial value, then save and reload
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        moved = model(q, docs, scores, mask)
    model.save(tmp_path / "m", {"docs": 2})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "prf_model.json"]
    loaded = PRFModel.load(tmp_path / "m")
    assert loaded.config() == model.config() and loaded.info == {"docs": 2}
    with torch.no_grad():
        torch.testing.assert_close(loaded(q, docs, scores, mask), moved)
    make_writable(tmp_path / "m")
    (tmp_path / "m" / "prf_model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(HeronError, match="not a heron PRF model"):
        PRFModel.load(tmp_path / "m")


def test_lol_gradients_reach_the_model():
    torch.manual_seed(1)
    model = PRFModel("sparse", 6, max_feedback=3)
    q = torch.rand(2, 6)
    docs = torch.rand(2, 3, 6)
    scores = torch.tensor([[3.0, 2.0, 1.0], [2.0, 1.5, 1.0]])
    candidates = torch.rand(5, 6)
    from heron.training.prf import reformulation_loss

    positives = torch.tensor([[True, False, False, False, False], [False, False, True, False, False]])
    losses = []
    for c in (1, 3):
        mask = torch.arange(3)[None, :] < c
        losses.append(reformulation_loss(model(q, docs, scores, mask.expand(2, 3)), candidates, positives))
    # order the pair so that "more feedback" has the larger loss: the regulariser is positive
    worse = float(losses[1].detach().sum()) > float(losses[0].detach().sum())
    more, less = (losses[1], losses[0]) if worse else (losses[0], losses[1])
    reg = lol_regularizer([less, more])
    assert float(reg.detach()) > 0
    reg.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads.values())
    assert float(grads["feedback_gain"].abs().sum()) > 0  # through the feedback documents' contribution


def _fixed_loss(trainer: PRFTrainer, batch, counts) -> float:
    with torch.no_grad():
        return float(torch.stack([x.mean() for x in trainer.losses(batch, counts)]).mean())


@pytest.mark.parametrize("lol", [True, False])
def test_tiny_prf_training_lowers_its_loss(lol, tiny_beir, bm25_index, tiny_ds, tmp_path):
    config = PRFTrainConfig(dataset=str(tiny_beir), index=str(bm25_index), lol=lol, feedback=[0, 1, 3], steps=40,
                            batch_size=10, candidates=10, lr=0.05, threads=1, log_every=5)
    trainer = PRFTrainer(config)
    test_ids = set(tiny_ds.qrels("test"))
    assert trainer.qids and not set(trainer.qids) & test_ids
    batch = trainer.batch(np.arange(len(trainer.qids)))  # every training query
    before = _fixed_loss(trainer, batch, [1, 3])
    parts = [trainer.step() for _ in range(config.steps)]
    after = _fixed_loss(trainer, batch, [1, 3])
    assert after < before, (before, after)
    assert all(np.isfinite(p["loss"]) for p in parts)
    assert (parts[0]["comparative"] >= 0) and (lol or all(p["comparative"] == 0 for p in parts))
    out = trainer.save(tmp_path / f"prf-{lol}", [parts[-1]], 1.0)
    info = json.loads((out / "training.json").read_text())
    assert not set(info["datasets"][0]["query_ids"]) & test_ids
    learned = with_prf(trainer.base, f"model:{out}")
    assert learned.docs == 3 and learned.describe()["prf"]["method"] == "model"
    assert all(len(ids) == 5 for ids, _ in learned.search(QUERIES, k=5))


def test_prf_training_refuses_test_qrels_and_other_datasets(tiny_beir, bm25_index):
    with pytest.raises(HeronError, match="refusing to train"):
        PRFTrainer(PRFTrainConfig(dataset=str(tiny_beir), index=str(bm25_index), split="test"))
    with pytest.raises(HeronError, match="built from dataset"):
        PRFTrainer(PRFTrainConfig(dataset="scifact", index=str(bm25_index)))
    with pytest.raises(Exception, match="feedback"):
        PRFTrainConfig(dataset="x", index="y", feedback=[0])


def _heron(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "heron", *args], capture_output=True, text=True, env=env, timeout=600)


def test_cli_train_prf_and_eval_with_prf(tiny_beir, bm25_index, tmp_path):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "train" / "prf-lol.yaml"
    out = tmp_path / "prf-model"
    proc = _heron("train", "prf", "-d", str(tiny_beir), "-i", str(bm25_index), "-c", str(config), "--steps", "5",
                  "--feedback", "0,1,2", "--threads", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "prf_model.json").read_text())["max_feedback"] == 2
    results = tmp_path / "results"
    proc = _heron("eval", "-d", str(tiny_beir), "--index", str(bm25_index), "--prf", "rocchio", "--prf-docs", "2",
                  "--threads", "1", "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    assert "+prf-rocchio-k2" in proc.stdout
    proc = _heron("eval", "-d", str(tiny_beir), "--index", str(bm25_index), "--prf", f"model:{out}", "--threads", "1",
                  "--results-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    assert "+prf-model-k2" in proc.stdout
    for bad, fragment in ((["--prf", "rm3"], "unknown PRF"), (["-r", "bm25", "--prf", "rocchio"], "index-backed")):
        proc = _heron("eval", "-d", str(tiny_beir), *bad, "--results-dir", str(results))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr, proc.stderr


@pytest.mark.models
def test_rocchio_on_a_dense_index(tiny_beir, tmp_path):
    from heron.build.config import make_config
    from heron.build.index import build_index
    from heron.retrieval import open_index_retriever

    path = tmp_path / "dense"
    try:
        build_index(make_config({"dataset": str(tiny_beir), "output": str(path),
                                 "encoder": {"type": "dense", "model": "minilm", "threads": 1},
                                 "faiss": {"type": "flat"}}), progress=False)
    except HeronError as exc:
        pytest.skip(f"minilm unavailable: {exc}")
    base = open_index_retriever(path, threads=1, device="cpu")
    prf = with_prf(base, "rocchio", docs=2)
    q = base.encode(QUERIES)
    first = base.search_vectors(q, 2)
    vectors = np.stack([base.index.index.reconstruct(base.index.doc_index(d)) for ids, _ in first for d in ids])
    expected = q + 0.5 * vectors.reshape(len(QUERIES), 2, -1).mean(axis=1)
    np.testing.assert_allclose(prf.encode(QUERIES), expected, rtol=1e-5, atol=1e-6)
    model = PRFModel("dense", base.index.dim, 2)
    np.testing.assert_allclose(with_prf(base, model).encode(QUERIES), expected, rtol=1e-5, atol=1e-5)


def test_prf_model_never_subtracts_feedback_and_its_loss_ignores_query_scale(tmp_path):
    """β = softplus(b) ≥ 0: however far training pushes b, a revision keeps the query's own terms; the
    trainer's loss scores unit-norm revisions, so scaling a query cannot lower it; old formats are refused."""
    from torch.nn import functional as F

    from heron.training.prf import reformulation_loss

    model = PRFModel("sparse", 4, max_feedback=2)
    assert float(model.beta) == pytest.approx(0.5) and float(model.alpha) == 1.0
    with torch.no_grad():
        model.beta_raw.fill_(-40.0)
    q = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    docs = torch.tensor([[[5.0, 1.0, 5.0, 0.0], [5.0, 0.0, 5.0, 3.0]]])
    with torch.no_grad():
        out = model(q, docs, torch.tensor([[2.0, 1.0]]), torch.tensor([[True, True]]))
    assert float(model.beta) >= 0 and torch.all(out[0, [0, 2]] >= q[0, [0, 2]])
    candidates = torch.rand(6, 4)
    positives = torch.zeros(2, 6, dtype=torch.bool)
    positives[0, 1] = positives[1, 4] = True
    x = torch.rand(2, 4)
    a = reformulation_loss(F.normalize(x, dim=1), candidates, positives, 0.5)
    b = reformulation_loss(F.normalize(7.0 * x, dim=1), candidates, positives, 0.5)
    torch.testing.assert_close(a, b)
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "prf_model.json").read_text())
    assert config["version"] == 2 and config["learned"]["beta"] >= 0
    make_writable(tmp_path / "m")
    (tmp_path / "m" / "prf_model.json").write_text(json.dumps({**config, "version": 1}))
    with pytest.raises(HeronError, match="version 1 is not supported"):
        PRFModel.load(tmp_path / "m")


def test_reformulation_loss_hand_computed():
    """Scores [2, 1, 0] with positives {0, 1}: 'all' = log(e²+e+1) − log(e²+e); 'lowest' targets candidate 1
    with candidate 0 masked: −log(e / (e + 1)); temperature divides the scores."""
    import math

    from heron.training.prf import reformulation_loss

    revised = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    positives = torch.tensor([[True, True, False]])
    e = math.e
    assert float(reformulation_loss(revised, candidates, positives)) == pytest.approx(
        math.log(e ** 2 + e + 1) - math.log(e ** 2 + e), rel=1e-5)
    assert float(reformulation_loss(revised, candidates, positives, target="lowest")) == pytest.approx(
        math.log(1 + 1 / e), rel=1e-5)
    assert float(reformulation_loss(revised, candidates, positives, temperature=2.0)) == pytest.approx(
        math.log(e + e ** 0.5 + 1) - math.log(e + e ** 0.5), rel=1e-5)
    sparse = candidates.to_sparse()
    assert float(reformulation_loss(revised, sparse, positives)) == pytest.approx(
        float(reformulation_loss(revised, candidates, positives)), rel=1e-5)
    with pytest.raises(HeronError, match="positive"):
        reformulation_loss(revised, candidates, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(HeronError, match="target"):
        reformulation_loss(revised, candidates, positives, target="best")
