"""Multi-vector encoder (PyLate layout, tiny random model), store, brute force vs MUVERA, training, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_writable

from heron.errors import HeronError
from heron.multivector.maxsim import maxsim
from heron.retrieval.encoders.multivector import MultiVectorEncoder

sys.path.insert(0, str(Path(__file__).parent))

TEXTS = ["the cat sat on the mat.", "fever and headache, then a cough!", "white matter develops fast"]


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    from test_splade import _tiny_model
    from transformers import BertModel

    root = tmp_path_factory.mktemp("mv")
    mlm = _tiny_model(root / "mlm")
    BertModel.from_pretrained(str(mlm)).save_pretrained(str(root / "backbone"), safe_serialization=True)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (mlm / name).exists():
            (root / "backbone" / name).write_bytes((mlm / name).read_bytes())
    return root / "backbone"


def test_encoder_round_trip_pylate_layout(tiny_backbone, tmp_path):
    enc = MultiVectorEncoder(tiny_backbone, device="cpu", projection_dim=16, query_length=12, document_length=40)
    assert enc.initialised and enc.query_marker is None  # the tiny vocabulary has no [unused0]
    docs = enc.encode_documents(TEXTS)
    queries = enc.encode_queries(TEXTS[:2])
    assert all(q.shape == (12, 16) for q in queries)  # [MASK]-expanded to query_length, all kept
    np.testing.assert_allclose([np.linalg.norm(v, axis=1) for v in docs[0:1]][0], 1.0, rtol=1e-5)
    ids, mask = enc.tokenize(TEXTS[:1], is_query=False)
    skipped = int(torch.isin(ids[0], enc.skip_ids).sum())
    assert skipped == 1 and docs[0].shape[0] == int(mask.sum()) - skipped  # the '.' is dropped
    folder = enc.save(tmp_path / "colbert")
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Dense"]
    assert json.loads((folder / "1_Dense" / "config.json").read_text())["out_features"] == 16
    assert not list(folder.rglob("*.bin"))
    again = MultiVectorEncoder(folder, device="cpu")
    assert not again.initialised and (again.query_length, again.document_length) == (12, 40)
    for a, b in zip(docs, again.encode_documents(TEXTS)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # batches sorted by length give what one text at a time gives
    for text, vectors in zip(TEXTS, docs):
        np.testing.assert_allclose(again.encode_documents([text])[0], vectors, atol=1e-5)


def test_configured_marker_must_exist(tiny_backbone, tmp_path):
    folder = MultiVectorEncoder(tiny_backbone, device="cpu", projection_dim=8, document_length=64).save(tmp_path / "m")
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    config["query_prefix"] = "[Q] "
    make_writable(folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    with pytest.raises(HeronError, match="marker token '\\[Q\\]' is not in the tokenizer"):
        MultiVectorEncoder(folder, device="cpu")


def test_store_brute_force_and_muvera(tmp_path):
    from heron.indexing.multivector_store import MultiVectorIndex, build_multivector_index

    rng = np.random.default_rng(0)
    clouds = []
    for _ in range(120):
        pts = rng.standard_normal((int(rng.integers(3, 15)), 16)).astype(np.float32)
        clouds.append(pts / np.linalg.norm(pts, axis=1, keepdims=True))
    ids = [f"d{i}" for i in range(120)]
    path = build_multivector_index([(ids[:60], clouds[:60]), (ids[60:], clouds[60:])], tmp_path / "mv", dim=16,
                                   muvera={"reps": 10, "k_sim": 3, "d_proj": 8}, progress=False)
    index = MultiVectorIndex.open(path, verify=True)
    assert index.num_docs == 120 and index.manifest["num_vectors"] == sum(len(c) for c in clouds)
    np.testing.assert_allclose(index.document(7), clouds[7], atol=1e-3)  # fp16 storage
    query = clouds[5][:4] + 0.05 * rng.standard_normal((4, 16)).astype(np.float32)
    got, scores = index.search(query, k=5)
    exact = np.array([maxsim(query, c.astype(np.float16).astype(np.float32)) for c in clouds])
    assert got == [ids[i] for i in np.argsort(-exact, kind="stable")[:5]]
    np.testing.assert_allclose(scores, np.sort(exact)[::-1][:5], rtol=1e-4)
    every, _ = index.search(query, k=5, candidates=120)  # MUVERA over everything = brute force
    assert every == got
    few, _ = index.search(query, k=5, candidates=30)
    assert few[0] == got[0]  # the planted neighbour survives candidate generation
    with pytest.raises(HeronError, match="query vectors of shape"):
        index.search(np.zeros((2, 8), np.float32))


def test_store_with_crisp_reduction(tmp_path):
    from heron.indexing.multivector_store import MultiVectorIndex, build_multivector_index

    rng = np.random.default_rng(1)
    clouds = [rng.standard_normal((20, 8)).astype(np.float32) for _ in range(6)]
    path = build_multivector_index([([f"d{i}" for i in range(6)], clouds)], tmp_path / "c", dim=8,
                                   reduction={"method": "kmeans", "k": 4}, progress=False)
    index = MultiVectorIndex.open(path)
    assert (np.diff(index.offsets) <= 4).all() and index.manifest["reduction"]["k"] == 4
    with pytest.raises(HeronError, match="built without MUVERA"):
        index.search(clouds[0][:2], candidates=3)


def test_maxsim_matrix_matches_loop():
    from heron.multivector.maxsim import maxsim_matrix

    torch.manual_seed(0)
    q, d = torch.randn(3, 5, 4), torch.randn(4, 7, 4)
    qm = torch.tensor([[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]]).bool()
    dm = torch.tensor([[1] * 7, [1, 1, 0, 0, 0, 0, 0], [1] * 3 + [0] * 4, [1] * 6 + [0]]).bool()
    got = maxsim_matrix(q, qm, d, dm)
    for i in range(3):
        for j in range(4):
            want = maxsim(q[i][qm[i]].numpy(), d[j][dm[j]].numpy())
            assert float(got[i, j]) == pytest.approx(want, rel=1e-5)


@pytest.mark.models
def test_train_build_search_from_the_cli(tmp_path, tiny_beir):
    """heron train colbert (MiniLM, a few steps, CRISP too) → build-index multivector (+CRISP, +MUVERA) → eval
    (training and builds as commands of their own; eval and query in this process, which is quicker)."""
    import os

    from test_cli import assert_one_line_error, heron, heron_here
    from test_sparse_pipeline import printed_ids

    from heron.eval import load_dataset
    from heron.indexing.multivector_store import MultiVectorIndex
    from heron.retrieval.multivector import MultiVectorRetriever

    models = Path(os.environ.get("HERON_CACHE", Path.home() / ".cache" / "heron")) / "models"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(models)
    env = {"HERON_CACHE": str(tmp_path / "cache")}
    ck = tmp_path / "colbert"
    for args in (["train", "colbert", "-d", str(tiny_beir), "--steps", "2", "--batch-size", "3",
                  "--document-length", "64", "-o", str(ck)],
                 ["train", "colbert", "-d", str(tiny_beir), "--steps", "1", "--batch-size", "2", "--crisp", "C25",
                  "--document-length", "64", "-o", str(tmp_path / "colbert-crisp")],
                 ["build-index", "--dataset", str(tiny_beir), "--encoder", "multivector", "--model", str(ck),
                  "--muvera", "-o", str(tmp_path / "mv")],
                 ["build-index", "--dataset", str(tiny_beir), "--encoder", "multivector", "--model", str(ck),
                  "--crisp", "C4x8", "-o", str(tmp_path / "mv-c4x8")]):
        proc = heron(*args, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((ck / "training.json").read_text())
    ds = load_dataset(tiny_beir)
    assert set(record["datasets"][0]["query_ids"]) == set(ds.qrels("train"))
    index = MultiVectorIndex.open(tmp_path / "mv", verify=True)
    assert index.fde is not None and index.fde.dim == 10240 and index.dim == 128
    crisp = MultiVectorIndex.open(tmp_path / "mv-c4x8")
    assert (np.diff(crisp.offsets) <= 8).all() and crisp.manifest["query_reduction"]["k"] == 4
    proc = heron_here("eval", "-d", str(tiny_beir), "--index", str(tmp_path / "mv"), "--index",
                      str(tmp_path / "mv-c4x8"), "--results-dir", str(tmp_path / "res"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = heron_here("eval", "-d", str(tiny_beir), "--index", str(tmp_path / "mv"), "--search", "candidates=60",
                      "--results-dir", str(tmp_path / "res"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    brute = json.loads(next((tmp_path / "res" / "tiny").glob("*bruteforce/metrics.json")).read_text())
    muvera = json.loads(next((tmp_path / "res" / "tiny").glob("*muvera60/metrics.json")).read_text())
    assert brute["mean"]["ndcg@10"] == pytest.approx(muvera["mean"]["ndcg@10"], abs=1e-6)  # all 60 docs reranked
    proc = heron_here("query", "--index", str(tmp_path / "mv"), "-s", "candidates=10", "cancer", env=env)
    assert proc.returncode == 0 and "rank" in proc.stdout, proc.stderr[-2000:]
    # which documents: exact MaxSim of the query's token vectors against every stored document, by brute force
    (q,) = MultiVectorRetriever(index).encode(["cancer"])
    exact = np.array([maxsim(q, index.document(i)) for i in range(index.num_docs)])
    printed = [index.doc_ids.index(d) for d in printed_ids(proc.stdout)]
    assert len(set(printed)) == 10  # MUVERA's 10 candidates, all shown, reranked by exact MaxSim:
    assert (np.diff(exact[printed]) <= 1e-5).all()
    # every document a candidate: the brute-force top 3, with their MaxSim scores
    proc = heron_here("query", "--index", str(tmp_path / "mv"), "-s", "candidates=60", "-k", "3", "--json",
                      "cancer", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = json.loads(proc.stdout)["hits"]
    top = np.argsort(-exact, kind="stable")[:3]
    assert exact[top[0]] > exact[top[1]] + 1e-5 > exact[top[2]] + 2e-5  # no near-ties to blur the order
    assert [h["doc_id"] for h in hits] == [index.doc_ids[i] for i in top]
    np.testing.assert_allclose([h["score"] for h in hits], exact[top], rtol=1e-4)
    assert_one_line_error(heron_here("eval", "-d", str(tiny_beir), "--index", str(tmp_path / "mv-c4x8"), "--search",
                                     "candidates=5", env=env), "built without MUVERA FDEs")
    assert_one_line_error(heron_here("train", "colbert", "-d", str(tiny_beir), "--crisp", "C150", "-o",
                                     str(tmp_path / "x"), "--steps", "1", env=env), "share must be")
