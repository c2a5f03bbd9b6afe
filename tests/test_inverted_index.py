"""heron's on-disk inverted index: exact persistence, quantisation, atomic publish, resume, validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_writable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heron.errors import HeronError
from heron.indexing.inverted import FORMAT_VERSION, InvertedIndex, build_inverted_index, kernels
from heron.indexing.inverted import builder as builder_module
from heron.indexing.shards import SparseShardWriter
from heron.retrieval.encoders.bm25 import BM25Encoder
from heron.storage import KILL_ENV
from heron.storage.integrity import xxh3_file

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"
REPO_SRC = Path(__file__).resolve().parents[1] / "src"


# -- helpers ----------------------------------------------------------------------------------------------
def random_matrix(rng: np.random.Generator, n: int, vocab_size: int, density: float) -> sp.csr_matrix:
    m = sp.random(n, vocab_size, density=density, format="csr", random_state=rng, dtype=np.float32)
    m.data = (m.data * rng.choice([0.1, 1.0, 10.0])).astype(np.float32) + np.float32(1e-3)
    return m


def write_shards(directory: Path, ids: list[str], matrix: sp.csr_matrix, per_shard: int) -> Path:
    with SparseShardWriter(directory, vocab_size=matrix.shape[1], meta={"test": True}) as writer:
        for start in range(0, max(len(ids), 1), per_shard):
            if start < len(ids):
                writer.add(ids[start:start + per_shard], matrix[start:start + per_shard])
    return directory


def chunks(ids: list[str], matrix: sp.csr_matrix, per_chunk: int):
    for start in range(0, len(ids), per_chunk):
        yield ids[start:start + per_chunk], matrix[start:start + per_chunk]


def quantised(matrix: sp.csr_matrix, scale: float, dtype) -> sp.csr_matrix:
    """The reference quantisation: round(w * scale) clipped to [1, max] for every non-zero."""
    q = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    q.sum_duplicates()
    q.eliminate_zeros()
    top = np.iinfo(dtype).max
    q.data = np.clip(np.rint(q.data * scale), 1, top)
    return q


def reference_blocks(offsets, docs, impacts, block_size):
    block_offsets, last, maxima = [0], [], []
    for t in range(len(offsets) - 1):
        lo, hi = offsets[t], offsets[t + 1]
        for start in range(lo, hi, block_size):
            end = min(start + block_size, hi)
            last.append(docs[end - 1])
            maxima.append(impacts[start:end].max())
        block_offsets.append(len(last))
    return np.array(block_offsets), np.array(last, dtype=np.int64), np.array(maxima, dtype=np.int64)


def brute_force(q: sp.csr_matrix, docs_quantised: sp.csr_matrix, scale: float) -> np.ndarray:
    return (q @ docs_quantised.T).toarray() / scale


def taat_from_postings(index: InvertedIndex, terms, weights) -> np.ndarray:
    """Score every document from the stored postings, term at a time (independent of the kernels)."""
    scores = np.zeros(index.num_docs)
    offsets = index.postings_offsets
    docs, impacts = index.postings()  # decoded from the compressed blocks
    for t, w in zip(terms, weights):
        lo, hi = offsets[t], offsets[t + 1]
        np.add.at(scores, docs[lo:hi], w * impacts[lo:hi].astype(np.float64))
    return scores / index.scale


def build(source, out, vocab_size=None, **kw):
    vocab = kw.pop("vocab", None) or [f"t{i}" for i in range(vocab_size)]
    kw.setdefault("encoder", {"type": "test"})
    return build_inverted_index(source, out, vocab=vocab, progress=False, **kw)


def files_of(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def check_index_matches(index: InvertedIndex, ids, matrix, dtype, scale, block_size):
    q = quantised(matrix, scale, dtype)
    assert index.num_docs == len(ids) and index.nnz == q.nnz and index.doc_ids == list(ids)
    assert index.dtype == np.dtype(dtype) and index.scale == pytest.approx(scale, rel=1e-12)
    # forward index == quantised input, exactly
    fwd = index.forward_matrix()
    assert np.array_equal(fwd.indptr, q.indptr) and np.array_equal(fwd.indices, q.indices)
    assert np.array_equal(fwd.data, q.data) and fwd.data.dtype == np.dtype(dtype)
    # postings == the transpose, doc indices ascending within each term
    csc = q.tocsc()
    csc.sort_indices()
    assert np.array_equal(index.postings_offsets, csc.indptr)
    docs, impacts = index.postings()
    assert np.array_equal(docs, csc.indices)
    assert np.array_equal(impacts, csc.data) and impacts.dtype == np.dtype(dtype)
    assert np.array_equal(index.df(), np.diff(csc.indptr))
    ref = reference_blocks(csc.indptr, csc.indices, csc.data, block_size)
    assert np.array_equal(index.block_offsets, ref[0])
    assert np.array_equal(index.block_last_doc, ref[1]) and np.array_equal(index.block_max, ref[2])
    assert index.manifest["block_max"]["block_size"] == block_size == index.block_size
    assert not index.has_forward_index and "forward_terms.npy" not in index.manifest["files"]
    return q


# -- persistence round trip -----------------------------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 60), vocab_size=st.integers(1, 40), density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       per_shard=st.integers(1, 25), dtype=st.sampled_from(["uint8", "uint16"]),
       block_size=st.sampled_from([1, 3, 64]), from_dir=st.booleans(), window=st.sampled_from([1, 7, 1 << 22]),
       seed=st.integers(0, 2**31 - 1))
def test_round_trip_random(n, vocab_size, density, per_shard, dtype, block_size, from_dir, window, seed):
    rng = np.random.default_rng(seed)
    matrix = random_matrix(rng, n, vocab_size, density)
    ids = [f"doc-{i}" for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = write_shards(tmp / "shards", ids, matrix, per_shard) if from_dir else chunks(ids, matrix, per_shard)
        default_window, builder_module.MERGE_WINDOW_POSTINGS = builder_module.MERGE_WINDOW_POSTINGS, window
        try:  # small merge windows: many windows, and single-term windows longer than the limit
            path = build(source, tmp / "idx", vocab_size, quantization=dtype, block_size=block_size)
        finally:
            builder_module.MERGE_WINDOW_POSTINGS = default_window
        index = InvertedIndex.open(path, verify=True)
        top = np.iinfo(dtype).max
        scale = top / float(matrix.data.max()) if matrix.nnz else 1.0
        q = check_index_matches(index, ids, matrix, dtype, scale, block_size)
        # rows read back
        for i in rng.choice(max(n, 1), size=min(n, 5), replace=False):
            terms, weights = index.row(i)
            assert np.array_equal(terms, q.indices[q.indptr[i]:q.indptr[i + 1]])
            assert np.allclose(weights, q.data[q.indptr[i]:q.indptr[i + 1]] / scale, rtol=1e-6)
        rows = list(index.iter_rows(chunk=7, dequantize=False))
        assert len(rows) == n
        assert all(np.array_equal(t, q.indices[q.indptr[i]:q.indptr[i + 1]]) and
                   np.array_equal(w, q.data[q.indptr[i]:q.indptr[i + 1]]) for i, (t, w) in enumerate(rows))
        # dequantised scores from postings and from the forward index == brute force over the same quantised vectors
        queries = random_matrix(rng, 4, vocab_size, 0.3)
        expected = brute_force(queries, q, scale)
        assert np.allclose(queries @ index.forward_matrix(dequantize=True).T.toarray(), expected, rtol=1e-5)
        for qi in range(4):
            terms = queries.indices[queries.indptr[qi]:queries.indptr[qi + 1]]
            weights = queries.data[queries.indptr[qi]:queries.indptr[qi + 1]]
            assert np.allclose(taat_from_postings(index, terms, weights), expected[qi], rtol=1e-6)


def test_duplicates_zeros_and_unsorted_input_are_canonicalised(tmp_path):
    indptr = np.array([0, 4, 6])
    indices = np.array([3, 1, 3, 2, 0, 4])
    data = np.array([1.0, 2.0, 0.5, 0.0, 4.0, 0.0], dtype=np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(2, 5))
    index = InvertedIndex.open(build([(["a", "b"], matrix)], tmp_path / "idx", 5))
    assert index.nnz == 3  # explicit zeros are dropped, duplicates summed
    assert [index.row(0, dequantize=False)[0].tolist(), index.row(1)[0].tolist()] == [[1, 3], [0]]
    assert index.row(0, dequantize=False)[1].tolist() == [128, 96] and index.scale == pytest.approx(255 / 4)


def test_explicit_scale_clips_and_keeps_small_weights(tmp_path):
    matrix = sp.csr_matrix(np.array([[0.001, 1.0, 3.0]], dtype=np.float32))
    index = InvertedIndex.open(build([(["a"], matrix)], tmp_path / "idx", 3, scale=100.0))
    assert index.row(0, dequantize=False)[1].tolist() == [1, 100, 255]  # tiny -> 1, 300 clipped to 255
    assert index.manifest["quantization"]["clipped"] == 1 and index.scale == 100.0


def test_uint16_is_finer_than_uint8(tmp_path):
    rng = np.random.default_rng(3)
    matrix = random_matrix(rng, 300, 200, 0.05)
    ids = [str(i) for i in range(300)]
    queries = random_matrix(rng, 20, 200, 0.05)
    exact = (queries @ matrix.T).toarray()
    errors = {}
    for dtype in ("uint8", "uint16"):
        index = InvertedIndex.open(build(chunks(ids, matrix, 64), tmp_path / dtype, 200, quantization=dtype))
        impacts = index.postings()[1]
        assert impacts.dtype == np.dtype(dtype) and index.block_max.dtype == np.dtype(dtype)
        assert index.scale == pytest.approx(np.iinfo(dtype).max / matrix.data.max())
        assert impacts.max() == np.iinfo(dtype).max
        approx = (queries @ index.forward_matrix(dequantize=True).T).toarray()
        bound = (queries.sum(axis=1).A * 0.5 / index.scale) + 1e-5  # ≤ half an impact step per term
        assert np.all(np.abs(approx - exact) <= bound)
        errors[dtype] = np.abs(approx - exact).mean()
    assert errors["uint16"] < errors["uint8"] / 50


# -- real BM25 vectors ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scifact_bm25():
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip("SciFact data not available")
    ids, texts = [], []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            ids.append(doc["_id"])
            texts.append(doc["title"] + " " + doc["text"])
            if len(ids) == 400:
                break
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for _, line in zip(range(50), handle)]
    enc = BM25Encoder().fit(texts)
    return ids, enc, enc.document_vectors(), queries


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_bm25_scifact_index(tmp_path, scifact_bm25, dtype):
    ids, enc, docs, queries = scifact_bm25
    vocab = sorted(enc.vocab, key=enc.vocab.__getitem__)
    enc.save(tmp_path / "encoder")
    shards = write_shards(tmp_path / "shards", ids, docs, per_shard=64)
    description = {"type": "bm25", "k1": enc.k1, "b": enc.b}
    path = build_inverted_index(shards, tmp_path / "idx", vocab=vocab, encoder=description, quantization=dtype,
                                encoder_dir=tmp_path / "encoder", progress=False)
    index = InvertedIndex.open(path, verify=True)
    assert index.encoder == description and index.vocab == vocab and index.doc_ids == ids
    assert index.manifest["files"]["encoder/bm25.json"]["xxh3_128"]
    q = check_index_matches(index, ids, docs, dtype, np.iinfo(dtype).max / float(docs.data.max()), 128)
    # the stored encoder re-creates the query encoder; dequantised index scores == brute force
    qv = BM25Encoder.load(index.encoder_dir).encode_queries(queries)
    assert (qv != enc.encode_queries(queries)).nnz == 0
    expected = brute_force(qv, q, index.scale)
    for qi in range(len(queries)):
        terms, weights = qv.indices[qv.indptr[qi]:qv.indptr[qi + 1]], qv.data[qv.indptr[qi]:qv.indptr[qi + 1]]
        assert np.allclose(taat_from_postings(index, terms, weights), expected[qi], rtol=1e-6)
    # quantisation error stays within half an impact step per query term occurrence
    exact = (qv @ docs.T).toarray()
    assert np.all(np.abs(expected - exact) <= qv.sum(axis=1).A * 0.5 / index.scale + 1e-5)
    manifest = index.manifest
    assert manifest["build"]["peak_rss_bytes"] > 0 and manifest["build"]["heron_version"]
    assert set(manifest["files"]) >= {"postings_words.npy", "doc_ids.txt", "vocab.json.gz", "encoder/bm25_df.npy"}
    words = manifest["postings"]["num_words"]
    assert manifest["files"]["postings_words.npy"] == {
        "bytes": (path / "postings_words.npy").stat().st_size, "dtype": "uint32", "shape": [words],
        "xxh3_128": xxh3_file(path / "postings_words.npy")}


# -- search (integration with the kernels module) ------------------------------------------------------------
def test_search_absent_terms_is_empty(tmp_path):
    matrix = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 2.0, 0]], dtype=np.float32))
    index = InvertedIndex.open(build([(["a", "b"], matrix)], tmp_path / "idx", 3))
    for terms in ([2], [7, -1], ["nope"], []):  # term 2 has no postings; 7 / -1 are outside the vocabulary
        ids, scores = index.search(terms, None, k=5)
        assert ids == [] and scores.dtype == np.float32 and len(scores) == 0


def test_search_dispatch_contract(tmp_path, monkeypatch):
    """What the index hands the kernels (agreed API) and how it maps their answer back."""
    matrix = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 4.0, 1.0], [0.5, 0, 0]], dtype=np.float32))
    index = InvertedIndex.open(build([(["a", "b", "c"], matrix)], tmp_path / "idx", 3))
    seen = {}

    def search_compressed(method, arrays, num_docs, q_terms, q_weights, k, allow, block_size, root, verify):
        seen.update(terms=q_terms, weights=q_weights, k=k, allow=allow, num_docs=num_docs)
        assert arrays["postings_offsets"] is index.postings_offsets and arrays["postings_words"] is index.postings_words
        assert arrays["block_offsets"] is index.block_offsets and arrays["block_max"] is index.block_max
        assert method == "exact" and block_size == index.block_size and root == index.path and verify is True
        return np.array([1, 0, -1], np.int32), np.array([4 * index.scale, 2 * index.scale, -np.inf], np.float32)

    def search_batch(method, arrays, q_indptr, q_terms, q_weights, k, allow_indptr, allow_docs, threads, num_docs,
                     root, verify, block_size):
        seen.update(method=method, q_indptr=q_indptr, allow_indptr=allow_indptr, allow_docs=allow_docs)
        assert arrays["block_max"] is index.block_max
        return np.array([[2, -1], [-1, -1]], np.int32), np.array([[index.scale, -np.inf], [-np.inf, -np.inf]],
                                                                 np.float32)

    monkeypatch.setattr(kernels, "search_compressed", search_compressed)  # the default mode
    monkeypatch.setattr(kernels, "search_batch", search_batch)
    ids, scores = index.search(["t2", "t0", "t2", "missing"], [1.0, 0.5, 1.0, 3.0], k=3, allow=["a", "b"])
    assert ids == ["b", "a"] and np.allclose(scores, [4.0, 2.0]) and scores.dtype == np.float32
    assert seen["terms"].tolist() == [0, 2] and seen["terms"].dtype == np.int32  # sorted, merged, known
    assert seen["weights"].tolist() == [0.5, 2.0] and seen["weights"].dtype == np.float32
    assert seen["allow"].tolist() == [1, 1, 0] and seen["allow"].dtype == np.uint8 and seen["num_docs"] == 3
    assert index.search({"t1": 1.0}, k=2)[0] == ["b", "a"] and len(seen["allow"]) == 0  # empty mask: no filter
    ids, scores = index.search_batch([([0], [1.0]), {"t9": 1.0}], k=2, mode="taat", allow=np.array([0, 0, 1], bool))
    assert ids == [["c"], []] and np.allclose(scores[0], [1.0]) and seen["method"] == "taat"
    assert seen["q_indptr"].tolist() == [0, 1, 1]
    assert seen["allow_indptr"].tolist() == [0, 1, 2] and seen["allow_docs"].tolist() == [2, 2]
    with pytest.raises(HeronError, match="no approximate-search structures"):
        index.search([0], [1.0], mode="approx", query_cut=5, heap_factor=0.8)


@pytest.mark.parametrize("mode", ["exact", "taat"])
def test_search_matches_brute_force(tmp_path, mode):
    pytest.importorskip("heron.indexing.inverted.kernels")
    rng = np.random.default_rng(11)
    matrix = random_matrix(rng, 500, 300, 0.03)
    ids = [f"d{i}" for i in range(500)]
    index = InvertedIndex.open(build(chunks(ids, matrix, 128), tmp_path / "idx", 300, block_size=8))
    q = quantised(matrix, index.scale, np.uint8)
    queries = random_matrix(rng, 10, 300, 0.03)
    expected = brute_force(queries, q, index.scale)
    allow = np.zeros(500, dtype=bool)
    allow[::3] = True
    for qi in range(10):
        terms, weights = queries.indices[queries.indptr[qi]:queries.indptr[qi + 1]], \
            queries.data[queries.indptr[qi]:queries.indptr[qi + 1]]
        for mask in (None, allow):
            got_ids, got_scores = index.search(terms, weights, k=10, mode=mode, allow=mask)
            scores = expected[qi] if mask is None else np.where(mask, expected[qi], -np.inf)
            want = np.sort(scores[scores > 0])[::-1][:10]
            assert np.allclose(got_scores, want, rtol=1e-5)
            assert all(scores[int(d[1:])] == pytest.approx(s, rel=1e-5) for d, s in zip(got_ids, got_scores))


def test_search_batch_matches_single_queries(tmp_path):
    pytest.importorskip("heron.indexing.inverted.kernels")
    rng = np.random.default_rng(12)
    matrix = random_matrix(rng, 300, 100, 0.05)
    index = InvertedIndex.open(build([([f"d{i}" for i in range(300)], matrix)], tmp_path / "idx", 100))
    queries = random_matrix(rng, 8, 100, 0.05)
    for mode in ("exact", "taat"):
        ids, scores = index.search_batch(queries, k=5, mode=mode, threads=2)
        for qi in range(8):
            one_ids, one_scores = index.search(queries.indices[queries.indptr[qi]:queries.indptr[qi + 1]],
                                               queries.data[queries.indptr[qi]:queries.indptr[qi + 1]], k=5)
            assert np.allclose(scores[qi], one_scores, rtol=1e-5) and len(ids[qi]) == len(one_ids)


# -- approximate structures ---------------------------------------------------------------------------------
def test_approx_arrays_are_stored(tmp_path, monkeypatch):
    calls = {}

    def fake_build_approx(po, pd, pi, fo, ft, fi, num_docs, **params):
        calls.update(shapes=[a.shape for a in (po, pd, pi, fo, ft, fi)], num_docs=num_docs, params=params)
        return {"summaries": np.arange(6, dtype=np.float32).reshape(2, 3), "block_docs": np.array([1, 0], np.int32)}

    monkeypatch.setitem(sys.modules, "heron.indexing.inverted.approx",
                        types.SimpleNamespace(build_approx=fake_build_approx, PRESETS={}))
    matrix = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 3.0, 0]], dtype=np.float32))
    params = {"n_postings": 10, "summary_energy": 0.4}
    index = InvertedIndex.open(build([(["a", "b"], matrix)], tmp_path / "idx", 3, approx=params), verify=True)
    assert calls == {"shapes": [(4,), (3,), (3,), (3,), (3,), (3,)], "num_docs": 2, "params": params}
    assert index.manifest["approx"] == {"params": params, "arrays": ["block_docs", "summaries"]}
    assert np.array_equal(index.approx["summaries"], np.arange(6).reshape(2, 3))
    assert index.manifest["files"]["approx/block_docs.npy"]["dtype"] == "int32"


# -- atomic publish and resume ------------------------------------------------------------------------------
@pytest.fixture()
def corpus(tmp_path):
    rng = np.random.default_rng(5)
    matrix = random_matrix(rng, 600, 120, 0.05)
    ids = [f"doc{i}" for i in range(600)]
    return ids, matrix, write_shards(tmp_path / "shards", ids, matrix, per_shard=100)


def test_existing_index_survives_a_failed_build(tmp_path, corpus, monkeypatch):
    ids, matrix, shards = corpus
    out = build(shards, tmp_path / "idx", 120)
    before = files_of(out)
    calls = {"n": 0}
    real_write_at = builder_module._write_at

    def failing_write_at(*args):  # "disk full" in the middle of pass 2
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device")
        return real_write_at(*args)

    monkeypatch.setattr(builder_module, "_write_at", failing_write_at)
    with pytest.raises(OSError, match="No space"):
        build(shards, out, 120, quantization="uint16")
    assert files_of(out) == before and InvertedIndex.open(out, verify=True).dtype == np.uint8
    progress = json.loads((tmp_path / ".idx.building" / "progress.json").read_text())
    assert progress["stage"] == "pass2" and progress["shard"] == 2
    # an iterable that raises midway leaves it intact too
    def broken():
        yield ids[:10], matrix[:10]
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        build(broken(), out, 120)
    assert files_of(out) == before
    # a bad input is a one-line error and leaves it intact
    bad = matrix[:3].copy()
    bad.data[0] = -1.0
    with pytest.raises(HeronError, match="non-negative"):
        build([(ids[:3], bad)], out, 120)
    assert files_of(out) == before
    # a good build replaces it
    monkeypatch.undo()
    build(shards, out, 120, quantization="uint16")
    assert InvertedIndex.open(out, verify=True).dtype == np.uint16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "shards"]


def test_publish_without_rename_exchange_and_recovery(tmp_path, corpus, monkeypatch):
    _, matrix, shards = corpus
    from heron.storage import directories

    monkeypatch.setattr(directories, "_exchange", lambda a, b: False)  # e.g. a non-Linux filesystem
    out = build(shards, tmp_path / "idx", 120)
    first = files_of(out)
    build(shards, out, 120, quantization="uint16")  # rename old aside, new in, delete old
    assert InvertedIndex.open(out, verify=True).dtype == np.uint16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "shards"]
    # a publish cut between its two renames: the old index sits at .idx.old and idx is missing
    os.rename(out, tmp_path / ".idx.old")
    with pytest.raises(HeronError, match="line break"):
        build([(["a\nb"], matrix[:1])], out, 120)  # any later build first puts the old index back
    assert InvertedIndex.open(out, verify=True).dtype == np.uint16
    build(shards, out, 120)
    assert files_of(out) == first


def test_concurrent_build_is_refused(tmp_path, corpus):
    import fcntl

    shards = corpus[2]
    with open(tmp_path / ".idx.lock", "w") as other:  # the lock as another build holds it
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(HeronError, match="another build of this index is running"):
            build(shards, tmp_path / "idx", 120)
    build(shards, tmp_path / "idx", 120)


def _killed_build(shards: Path, out: Path, kill_at: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        from heron.indexing.inverted import build_inverted_index, builder
        builder.MERGE_WINDOW_POSTINGS = 50  # ~70 merge windows, some holding one long posting list
        build_inverted_index({str(shards)!r}, {str(out)!r}, vocab=[f"t{{i}}" for i in range(120)],
                             encoder={{"type": "test"}}, block_size=16, progress=False)
    """)
    env = {**os.environ, KILL_ENV: kill_at,
           "PYTHONPATH": os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("kill_at", ["inverted.pass1:3", "inverted.pass1.data:3", "inverted.pass2:1",
                                     "inverted.pass2:6", "inverted.merge:1", "inverted.merge:21",
                                     "inverted.merge.data:5"])
def test_resume_after_sigkill_matches_clean_build(tmp_path, corpus, kill_at):
    _, matrix, shards = corpus
    clean = build(shards, tmp_path / "clean", 120, block_size=16)
    out = tmp_path / "idx"
    old = build([(["x"], matrix[:1])], out, 120)  # a previous index at the output path
    old_files = files_of(old)
    result = _killed_build(shards, out, kill_at)
    assert result.returncode == -9, result.stderr
    assert files_of(out) == old_files  # the killed build did not touch the published index
    progress = json.loads((tmp_path / ".idx.building" / "progress.json").read_text())
    point, number = kill_at.split(":")
    done = int(number) - point.endswith(".data")  # killed between a step's data and its checkpoint: one less
    stage = point.split(".")[1]
    assert progress["stage"] == stage and progress["window" if stage == "merge" else "shard"] == done
    resumed = build(shards, out, 120, block_size=16)  # default merge window: same bytes
    assert files_of(resumed) == files_of(clean)  # byte for byte
    manifest, clean_manifest = InvertedIndex.open(resumed, verify=True).manifest, json.loads(
        (clean / "manifest.json").read_text())
    assert manifest["files"] == clean_manifest["files"] and manifest["build"]["resumed"] is True
    assert not (tmp_path / ".idx.building").exists() and not (tmp_path / ".idx.lock").exists()


def test_resume_after_reboot_redoes_pass_2(tmp_path, corpus, monkeypatch):
    shards = corpus[2]
    clean = build(shards, tmp_path / "clean", 120, block_size=16)
    out = tmp_path / "idx"
    assert _killed_build(shards, out, "inverted.merge:11").returncode == -9
    progress_file = tmp_path / ".idx.building" / "progress.json"
    progress = json.loads(progress_file.read_text())
    progress["boot_id"] = "another-boot"  # unsynced pass-2 / merge writes may be gone
    progress_file.write_text(json.dumps(progress))
    calls = []
    real_pass2 = builder_module._Build.pass2
    monkeypatch.setattr(builder_module._Build, "pass2",
                        lambda self: calls.append(self.state["shard"]) or real_pass2(self))
    resumed = build(shards, out, 120, block_size=16)
    assert calls == [0] and files_of(resumed) == files_of(clean)


def test_changed_input_or_params_restart_the_build(tmp_path, corpus):
    ids, matrix, shards = corpus
    out = tmp_path / "idx"
    assert _killed_build(shards, out, "inverted.pass2:3").returncode == -9
    # different parameters: the partial build is discarded
    path = build(shards, out, 120, block_size=16, quantization="uint16")
    index = InvertedIndex.open(path, verify=True)
    assert index.manifest["build"]["resumed"] is False and index.dtype == np.uint16
    # different input (same layout, other weights): also starts over
    assert _killed_build(shards, out, "inverted.pass2:3").returncode == -9
    other = matrix.copy()
    other.data = other.data * 2 + 1
    other_shards = write_shards(tmp_path / "other", ids, other, per_shard=100)
    os.rename(shards, tmp_path / "moved")
    os.rename(other_shards, shards)
    index = InvertedIndex.open(build(shards, out, 120, block_size=16), verify=True)
    assert index.manifest["build"]["resumed"] is False
    check_index_matches(index, ids, other, np.uint8, 255 / float(other.data.max()), 16)
    # resume=False ignores a matching partial build
    assert _killed_build(shards, out, "inverted.pass2:4").returncode == -9
    index = InvertedIndex.open(build(shards, out, 120, block_size=16, resume=False))
    assert index.manifest["build"]["resumed"] is False


# -- validation on open ------------------------------------------------------------------------------------
@pytest.fixture()
def small_index(tmp_path):
    rng = np.random.default_rng(1)
    matrix = random_matrix(rng, 50, 30, 0.2)
    return make_writable(build(chunks([f"d{i}" for i in range(50)], matrix, 20), tmp_path / "idx", 30))


@pytest.mark.parametrize("name", ["postings_words.npy", "block_checksum.npy", "block_max.npy", "doc_ids.txt"])
def test_missing_or_truncated_file_is_named(small_index, name):
    path = small_index / name
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(HeronError, match=f"{name}.*truncated"):
        InvertedIndex.open(small_index)
    path.unlink()
    with pytest.raises(HeronError, match=f"{name}.*missing"):
        InvertedIndex.open(small_index)


def test_corrupt_header_and_tampered_content(small_index, monkeypatch):
    path = small_index / "block_checksum.npy"
    original = path.read_bytes()
    path.write_bytes(b"garbage!" + original[8:])  # same size, unreadable header
    with pytest.raises(HeronError, match="block_checksum.npy.*not a readable .npy"):
        InvertedIndex.open(small_index)
    tampered = bytearray(original)
    tampered[-1] ^= 0xFF  # same size, valid header, different content: only the checksum sees it
    path.write_bytes(bytes(tampered))
    with pytest.raises(HeronError, match="block_checksum.npy: checksum mismatch"):
        InvertedIndex.open(small_index)  # a small file is hashed in full at every open
    monkeypatch.setenv("HERON_OPEN_HASH_BYTES", "0")  # as if every file were large: sizes and ends only
    index = InvertedIndex.open(small_index)
    with pytest.raises(HeronError, match="block_checksum.npy: checksum mismatch"):
        index.verify()
    with pytest.raises(HeronError, match="block_checksum.npy: checksum mismatch"):
        InvertedIndex.open(small_index, verify=True)
    path.write_bytes(original)
    InvertedIndex.open(small_index, verify=True)
    ids = small_index / "doc_ids.txt"
    ids.write_bytes(ids.read_bytes().replace(b"d1\n", b"dX\n", 1))
    with pytest.raises(HeronError, match="doc_ids.txt: checksum mismatch"):
        InvertedIndex.open(small_index).verify()


def test_array_with_wrong_dtype_is_named(small_index):
    path = small_index / "block_last_doc.npy"
    np.save(path, np.load(path).astype(np.int64)[: len(np.load(path)) // 2])  # same bytes, other dtype/shape
    manifest = json.loads((small_index / "manifest.json").read_text())
    manifest["files"]["block_last_doc.npy"]["bytes"] = path.stat().st_size
    (small_index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HeronError, match="block_last_doc.npy: array is int64"):
        InvertedIndex.open(small_index)


def test_format_version_mismatch(small_index):
    manifest = json.loads((small_index / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (small_index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HeronError, match=rf"index format version {FORMAT_VERSION + 1} is not supported \(this heron "
                                         rf"reads version {FORMAT_VERSION}; rebuild it with "
                                         rf"`heron build-index <config>`\)"):
        InvertedIndex.open(small_index)


def test_bad_manifest(small_index, tmp_path):
    (small_index / "manifest.json").write_text("{not json")
    with pytest.raises(HeronError, match="manifest.json: unreadable heron inverted index JSON"):
        InvertedIndex.open(small_index)
    (small_index / "manifest.json").unlink()
    with pytest.raises(HeronError, match="not a heron inverted index"):
        InvertedIndex.open(small_index)
    with pytest.raises(HeronError, match="no such index directory"):
        InvertedIndex.open(tmp_path / "nowhere")


# -- input validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", ["a\nb", "trailing\r"])
def test_doc_id_with_newline_is_rejected(tmp_path, bad_id):
    matrix = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(HeronError, match="line break"):
        build([(["ok", bad_id], matrix)], tmp_path / "idx", 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no index, no partial build left behind


def test_input_errors(tmp_path, small_index):
    matrix = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(HeronError, match="2×3, expected 2 rows .* × 4 columns"):
        build([(["a", "b"], matrix)], tmp_path / "a", 4)
    shards = write_shards(tmp_path / "shards", ["a", "b"], matrix, 2)
    with pytest.raises(HeronError, match="vectors have 3 columns, the vocabulary has 4 terms"):
        build(shards, tmp_path / "a", 4)
    with pytest.raises(HeronError, match="expected 3 rows"):
        build([(["a", "b", "c"], matrix)], tmp_path / "b", 3)
    matrix.data[1] = np.nan
    with pytest.raises(HeronError, match="'a' has weight nan"):
        build([(["a", "b"], matrix)], tmp_path / "c", 3)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(HeronError, match="not a heron inverted index; refusing"):
        build([(["a"], matrix[:1])], tmp_path / "precious", 3)
    writer = SparseShardWriter(tmp_path / "partial", vocab_size=3)
    writer.add(["a"], sp.csr_matrix(np.ones((1, 3))))  # never closed: an interrupted encoding
    with pytest.raises(HeronError, match="incomplete"):
        build(tmp_path / "partial", tmp_path / "d", 3)
    with pytest.raises(HeronError, match="quantization must be one of"):
        build([], tmp_path / "e", 3, quantization="int4")


def test_empty_collection(tmp_path):
    index = InvertedIndex.open(build([], tmp_path / "idx", 4), verify=True)
    assert index.num_docs == 0 and index.nnz == 0 and index.doc_ids == [] and len(index.block_max) == 0
    assert index.search([0, 1], [1.0, 1.0], k=3)[0] == []


@pytest.mark.parametrize("memory_bytes", [None, 1])
def test_a_build_not_resumed_holds_small_input_in_memory_and_writes_the_same_index(tmp_path, monkeypatch,
                                                                                memory_bytes):
    """resume=False keeps the input chunks in memory (or, past MEMORY_INPUT_BYTES, spools them as usual): the
    published arrays are byte-identical to a resumable build's; a bad weight in a held chunk names the chunk."""
    import scipy.sparse as sp

    from heron.errors import HeronError
    from heron.indexing.inverted import builder
    from heron.indexing.inverted.builder import build_inverted_index

    if memory_bytes is not None:
        monkeypatch.setattr(builder, "MEMORY_INPUT_BYTES", memory_bytes)
    rng = np.random.default_rng(3)
    chunks = []
    for c in range(4):
        m = sp.random(50, 40, density=0.2, random_state=rng, format="csr", dtype=np.float32)
        chunks.append(([f"c{c}d{i}" for i in range(50)], m))
    vocab = [f"t{i}" for i in range(40)]
    kw = {"vocab": vocab, "encoder": {"type": "test"}, "progress": False, "approx": {"n_postings": 20}}
    a = build_inverted_index(chunks, tmp_path / "a", **kw)
    b = build_inverted_index(chunks, tmp_path / "b", resume=False, **kw)
    names = sorted(p.name for p in a.rglob("*.npy"))
    assert names == sorted(p.name for p in b.rglob("*.npy")) and "postings_words.npy" in names
    for path in a.rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path.name
    bad = chunks[2][1].copy()
    bad.data[0] = np.nan
    with pytest.raises(HeronError, match="input chunk 2" if memory_bytes is None else "spool"):
        build_inverted_index([chunks[0], chunks[1], (chunks[2][0], bad)], tmp_path / "c", resume=False, **kw)


def test_query_preparation_equals_the_numpy_reference():
    """kernels.prepare_terms (compiled, per query) gives what the former numpy code gave: ids ascending and unique,
    a repeated term's weights summed in float64 in input order then rounded to float32, terms out of range, of
    weight 0 or without postings dropped; a negative or non-finite weight is refused."""
    from heron.indexing.inverted.kernels import prepare_terms

    rng = np.random.default_rng(7)
    vocab = 50
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 3, vocab))]).astype(np.int64)  # some terms empty

    def reference(ids, weights):
        keep = (ids >= 0) & (ids < vocab) & (weights > 0)
        ids, weights = ids[keep], weights[keep]
        if len(ids):
            ids, inverse = np.unique(ids, return_inverse=True)
            weights = np.bincount(inverse, weights=weights, minlength=len(ids))
            present = np.diff(offsets)[ids] > 0
            ids, weights = ids[present], weights[present]
        return ids.astype(np.int32), weights.astype(np.float32)

    for n in (0, 1, 5, 40, 200):
        ids = rng.integers(-3, vocab + 3, n).astype(np.int64)
        weights = rng.random(n) * rng.choice([0.0, 1e-8, 1.0, 1e5], n)
        got_ids, got_w, status = prepare_terms(ids, weights, offsets, np.int64(vocab))
        want_ids, want_w = reference(ids, weights)
        assert status == 0
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_w, want_w)  # bit for bit
    for bad in (-1.0, np.nan, np.inf):
        assert prepare_terms(np.array([1, 2], np.int64), np.array([1.0, bad]), offsets, np.int64(vocab))[2] == 1


def test_batch_query_preparation_equals_the_per_query_rule():
    """``prepare_queries``: numeric (terms, weights) pairs and sparse matrices go through one compiled call
    (``kernels.prepare_terms_batch``) and give exactly what preparing each query alone gives — ids ascending
    and unique, repeated terms' weights summed in input order, ids out of range, weights of 0 and terms without
    postings dropped, empty queries kept; term strings and dicts still go query by query; a negative or NaN
    weight is a ValueError naming the query."""
    from heron.indexing.inverted.index import pack_queries, prepare_queries, prepare_query

    rng = np.random.default_rng(11)
    vocab_size = 50
    offsets = np.cumsum(np.r_[0, rng.integers(0, 3, vocab_size)]).astype(np.int64)  # some terms without postings
    pairs = []
    for _ in range(60):
        n = int(rng.integers(0, 12))
        terms = rng.integers(-3, vocab_size + 3, n)  # duplicates, out-of-range ids
        weights = np.where(rng.random(n) < 0.2, 0.0, rng.lognormal(0, 1, n)).astype(np.float32)
        pairs.append((terms.astype(rng.choice([np.int32, np.int64, np.uint16]) if n and terms.min() >= 0
                                    else np.int64), weights))
    assert sum(len(t) != len(np.unique(t)) for t, _ in pairs) > 5  # repeated terms are exercised
    want = pack_queries([prepare_query(t, w, dict, offsets, vocab_size) for t, w in pairs])
    got = prepare_queries(pairs, dict, offsets, vocab_size)
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert got[0][-1] > 0 and (np.diff(got[0]) == 0).any()  # non-empty, and some queries emptied
    keep = [(t, w) for t, w in pairs if len(t) == 0 or t.min() >= 0]  # a matrix holds no negative ids
    m = sp.lil_matrix((len(keep), vocab_size + 3), dtype=np.float32)
    for i, (t, w) in enumerate(keep):
        for term, weight in zip(t, w):
            m[i, term] += weight
    m = m.tocsr()
    want = pack_queries([prepare_query(m.indices[m.indptr[i]:m.indptr[i + 1]], m.data[m.indptr[i]:m.indptr[i + 1]],
                                       dict, offsets, vocab_size) for i in range(m.shape[0])])
    for a, b in zip(want, prepare_queries(m, dict, offsets, vocab_size)):
        assert np.array_equal(a, b)
    # dicts and term strings: the per-query path, same packing
    lookup = {f"t{i}": i for i in range(vocab_size)}
    mixed = [{"t3": 1.0, "t1": 2.0}, (["t2", "t2"], [0.5, 0.25])]
    got = prepare_queries(mixed, lambda: lookup, offsets, vocab_size)
    assert np.array_equal(got[0], [0, *np.cumsum([len(prepare_query(t, w, lambda: lookup, offsets, vocab_size)[0])
                                                  for t, w in [(mixed[0], None), mixed[1]]])])
    bad = list(pairs[:5]) + [(np.array([1, 2]), np.array([1.0, np.nan], np.float32))]
    with pytest.raises(ValueError, match="query 5: query weights must be finite and non-negative"):
        prepare_queries(bad, dict, offsets, vocab_size)
    with pytest.raises(ValueError, match="finite and non-negative"):
        prepare_queries([(np.array([1]), np.array([-1.0]))], dict, offsets, vocab_size)
