"""FAISS bundles: every index type round-trips; flat equals brute force; sharded top-k is exact; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_writable

from heron.errors import HeronError
from heron.indexing.faiss_index import (
    TYPES,
    FaissIndex,
    build_faiss_index,
    default_params,
    flat_shard,
    search_sharded,
)


def _data(n=1200, d=32, q=20, seed=0):
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((n, d)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = rng.standard_normal((q, d)).astype(np.float32)
    return [f"d{i}" for i in range(n)], docs, queries


def _brute(docs, queries, k):
    scores = queries @ docs.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, 1)


@pytest.mark.parametrize("index_type", TYPES)
def test_round_trip_every_type(tmp_path, index_type):
    ids, docs, queries = _data()
    chunks = [(ids[:500], docs[:500]), (ids[500:], docs[500:])]
    path = build_faiss_index(chunks, tmp_path / "ix", dim=32, index_type=index_type, encoder={"name": "toy"},
                             progress=False)
    index = FaissIndex.open(path, verify=True)
    assert index.index_type == index_type and index.num_docs == 1200 and index.dim == 32
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["faiss"]["type"] == index_type and "index.faiss" in manifest["files"]
    first_ids, first_scores = index.search_batch(queries, k=10)
    again_ids, again_scores = FaissIndex.open(path).search_batch(queries, k=10)
    assert first_ids == again_ids
    np.testing.assert_allclose(np.concatenate(first_scores), np.concatenate(again_scores), rtol=1e-6)
    np.testing.assert_array_equal(index.stored, docs)  # stored vectors are exact
    # each type finds its share of the exact top-10 (random 32-d data is hard for PQ: 4 sub-quantisers)
    truth, _ = _brute(docs, queries, 10)
    recall = np.mean([len(set(r) & {ids[j] for j in t}) / 10 for r, t in zip(first_ids, truth)])
    floor = {"flat": 0.999, "hnsw": 0.9, "ivf-flat": 0.6, "ivf-pq": 0.3, "sq8": 0.9}[index_type]
    assert recall >= floor, recall


def test_flat_equals_brute_force(tmp_path):
    ids, docs, queries = _data()
    index = FaissIndex.open(build_faiss_index([(ids, docs)], tmp_path / "ix", dim=32, progress=False))
    got_ids, got_scores = index.search_batch(queries, k=25)
    order, scores = _brute(docs, queries, 25)
    for row_ids, row_scores, o, s in zip(got_ids, got_scores, order, scores):
        np.testing.assert_allclose(row_scores, s, rtol=1e-5, atol=1e-6)
        assert row_ids[:5] == [ids[j] for j in o[:5]]


def test_hnsw_recall_against_flat(tmp_path):
    ids, docs, queries = _data(n=3000, d=24, q=50, seed=3)
    flat = FaissIndex.open(build_faiss_index([(ids, docs)], tmp_path / "flat", dim=24, progress=False))
    hnsw = FaissIndex.open(build_faiss_index([(ids, docs)], tmp_path / "hnsw", dim=24, index_type="hnsw",
                                             progress=False))
    a, _ = flat.search_batch(queries, 10)
    b, _ = hnsw.search_batch(queries, 10)
    assert np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]) >= 0.95


@pytest.mark.parametrize("k", [1, 17, 40, 100, 300])
def test_sharded_search_is_exact(k):
    _, docs, queries = _data(n=700, d=16, q=15, seed=1)
    scores, pos = search_sharded(lambda lo, hi: flat_shard(docs, lo, hi), len(docs), queries, k, limit=16)
    order, truth = _brute(docs, queries, k)
    np.testing.assert_allclose(scores, truth, rtol=1e-5, atol=1e-6)
    assert pos.shape == (15, k) and (pos >= 0).all()
    np.testing.assert_allclose(np.take_along_axis(queries @ docs.T, pos, 1), truth, rtol=1e-5, atol=1e-6)


def test_sharded_search_with_ties():
    docs = np.ones((50, 4), np.float32)  # every document ties
    scores, pos = search_sharded(lambda lo, hi: flat_shard(docs, lo, hi), 50, docs[:2], 30, limit=8)
    assert scores.shape == (2, 30) and len(set(pos[0].tolist())) == 30


def test_k_larger_than_corpus_is_clamped(tmp_path):
    ids, docs, queries = _data(n=40)
    index = FaissIndex.open(build_faiss_index([(ids, docs)], tmp_path / "ix", dim=32, progress=False))
    got, _ = index.search_batch(queries[:2], k=1000)
    assert [len(g) for g in got] == [40, 40]


def test_dimension_mismatch(tmp_path):
    ids, docs, queries = _data(n=40)
    with pytest.raises(HeronError, match="do not match the index dimension"):
        build_faiss_index([(ids, docs)], tmp_path / "ix", dim=16, progress=False)
    index = FaissIndex.open(build_faiss_index([(ids, docs)], tmp_path / "ix", dim=32, progress=False))
    with pytest.raises(HeronError, match="query vectors have 8 dimensions, the index has 32"):
        index.search_batch(np.zeros((1, 8), np.float32))


def test_missing_and_corrupt_files(tmp_path):
    ids, docs, _ = _data(n=40)
    path = make_writable(build_faiss_index([(ids, docs)], tmp_path / "ix", dim=32, progress=False))
    (path / "index.faiss").rename(tmp_path / "moved")
    with pytest.raises(HeronError, match=r"index\.faiss: file listed in the manifest is missing"):
        FaissIndex.open(path)
    (tmp_path / "moved").rename(path / "index.faiss")
    raw = bytearray((path / "vectors.npy").read_bytes())
    raw[-1] ^= 0xFF
    (path / "vectors.npy").write_bytes(bytes(raw))
    with pytest.raises(HeronError, match="checksum mismatch"):
        FaissIndex.open(path, verify=True)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HeronError, match="format version 99"):
        FaissIndex.open(path)


def test_failed_build_keeps_previous_index(tmp_path):
    ids, docs, _ = _data(n=40)
    path = build_faiss_index([(ids, docs)], tmp_path / "ix", dim=32, progress=False)
    before = (path / "manifest.json").read_text()

    def broken():
        yield ids[:20], docs[:20]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build_faiss_index(broken(), path, dim=32, progress=False)
    assert (path / "manifest.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_parameters():
    with pytest.raises(HeronError, match="unknown FAISS index type"):
        default_params("annoy", 10, 8)
    with pytest.raises(HeronError, match="unknown parameter"):
        default_params("flat", 10, 8, {"nlist": 4})
    with pytest.raises(HeronError, match="must divide"):
        default_params("ivf-pq", 1000, 30, {"pq_m": 7})
    assert default_params("ivf-pq", 100, 32)["pq_bits"] == 6  # 2^bits <= training points


@pytest.mark.parametrize("index_type", ["ivf-flat", "ivf-pq"])
def test_trained_indexes_are_deterministic_by_seed(tmp_path, index_type):
    from heron.storage import sha256_file

    ids, docs, _ = _data(n=800)
    paths = [build_faiss_index([(ids, docs)], tmp_path / f"ix{i}", dim=32, index_type=index_type,
                               params={"seed": 3}, progress=False) for i in range(2)]
    assert sha256_file(paths[0] / "index.faiss") == sha256_file(paths[1] / "index.faiss")


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf-flat"])
def test_live_mask_skips_deleted_documents_inside_faiss(tmp_path, index_type):
    """Deleted documents (a segment's tombstones) are skipped by FAISS's own selector: flat returns exactly the
    brute-force top-k of the live documents; HNSW / IVF return only live ones and keep their ef_search / nprobe
    (IVF probing every list is exact)."""
    ids, docs, queries = _data(n=800)
    params = {"nlist": 8, "nprobe": 8} if index_type == "ivf-flat" else None
    index = FaissIndex.open(build_faiss_index([(ids, docs)], tmp_path / "ix", dim=32, index_type=index_type,
                                              params=params, progress=False), device="cpu")
    live = np.ones(800, dtype=bool)
    live[np.random.default_rng(1).choice(800, 300, replace=False)] = False
    got_ids, got_scores = index.search_batch(queries, k=10, live=live)
    kept = np.flatnonzero(live)
    order, scores = _brute(docs[kept], queries, 10)
    truth = [[ids[kept[j]] for j in row] for row in order]
    assert all(live[int(d[1:])] for row in got_ids for d in row) and all(len(row) == 10 for row in got_ids)
    if index_type == "hnsw":
        recall = np.mean([len(set(r) & set(t)) / 10 for r, t in zip(got_ids, truth)])
        assert recall >= 0.9, recall
    else:
        assert got_ids == truth
        np.testing.assert_allclose(np.stack(got_scores), scores, rtol=1e-5)
    with pytest.raises(HeronError, match="live mask"):
        index.search_batch(queries, k=10, live=live[:-1])
