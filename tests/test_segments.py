"""Segmented indexes (heron.indexing.segments, heron.storage.commits): search across segments equals a from-scratch
build over the live documents (ids, scores, tie order), under random sequences of add / delete / upsert / commit /
merge, for inverted (exact, taat, approx with exhaustive knobs), FAISS flat and multi-vector members; conversion of
classic indexes; bad input and damaged files. Crash tests: test_segments_kill.py; concurrency:
test_segments_concurrency.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heron.errors import HeronError, IntegrityError
from heron.indexing.bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from heron.indexing.docstore import write_docstore
from heron.indexing.faiss_index import build_faiss_index
from heron.indexing.inverted.builder import build_inverted_index
from heron.indexing.multivector_store import build_multivector_index
from heron.indexing.segments import (
    IndexWriter,
    SegmentedIndex,
    convert_to_segmented,
    is_segmented,
    reader,
    segmented_problems,
)
from heron.storage import write_manifest
from heron.storage.commits import generations, latest_generation, read_commit, write_commit

VOCAB = [f"t{i}" for i in range(24)]
SCALE = 4.0  # coarse impacts (weights up to 6 → impacts ≤ 24): many exact ties in the scores
DIM = 6
MEMBERS = ("sparse", "dense", "colbert")


# -- corpora ------------------------------------------------------------------------------------------------
class Corpus:
    """Deterministic vectors per document id (and per version, for upserts): sparse rows, dense rows, token
    matrices."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _rng(self, doc_id: str, version: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(doc_id[1:]), version])

    def sparse(self, doc_id: str, version: int = 0) -> np.ndarray:
        rng = self._rng(doc_id, version)
        row = np.zeros(len(VOCAB), np.float32)
        terms = rng.choice(len(VOCAB), size=int(rng.integers(1, 5)), replace=False)
        row[terms] = rng.integers(1, 7, size=len(terms)) / 2.0  # few distinct values: ties
        return row

    def dense(self, doc_id: str, version: int = 0) -> np.ndarray:
        return self._rng(doc_id, version + 1000).standard_normal(DIM).astype(np.float32)

    def tokens(self, doc_id: str, version: int = 0) -> np.ndarray:
        rng = self._rng(doc_id, version + 2000)
        return rng.standard_normal((int(rng.integers(1, 4)), DIM)).astype(np.float32)


def build_member(kind: str, docs: list[tuple[str, int]], out: Path, corpus: Corpus, docstore: Path | None = None,
                 approx: dict | None = None) -> Path:
    """One index of ``kind`` over ``docs`` ((id, version) pairs) at ``out``."""
    ids = [d for d, _ in docs]
    if kind == "inverted":
        rows = np.stack([corpus.sparse(d, v) for d, v in docs])
        return build_inverted_index([(ids, sp.csr_matrix(rows))], out, vocab=VOCAB, encoder={"type": "test"},
                                    scale=SCALE, block_size=4, approx=approx, docstore_dir=docstore, progress=False)
    if kind == "faiss":
        rows = np.stack([corpus.dense(d, v) for d, v in docs])
        return build_faiss_index([(ids, rows)], out, dim=DIM, index_type="flat", encoder={"type": "test"},
                                 docstore_dir=docstore, progress=False)
    return build_multivector_index([(ids, [corpus.tokens(d, v) for d, v in docs])], out, dim=DIM,
                                   encoder={"type": "test"}, docstore_dir=docstore, progress=False)


KINDS = {"sparse": "inverted", "dense": "faiss", "colbert": "multivector"}


def build_bundle(docs: list[tuple[str, int]], out: Path, corpus: Corpus, members=MEMBERS) -> Path:
    """A bundle of the ``members`` over ``docs`` (with a docstore), its manifest written as the build layer does."""
    out.mkdir(parents=True)
    store = out.parent / f".{out.name}-docstore"
    write_docstore(store, [(d, f"title {d} v{v}", f"text of {d}") for d, v in docs])
    for name in members:
        build_member(KINDS[name], docs, out / name, corpus, docstore=store)
    shutil.rmtree(store)
    indexes = {name: {"path": name, "search": {}, "kind": KINDS[name], "index": {"num_docs": len(docs)}}
               for name in members}
    write_manifest(out / "manifest.json", {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION,
                                           "default": members[0], "fusion": {"method": "rrf"}, "indexes": indexes})
    return out


def queries(kind: str, n: int = 6, seed: int = 7):
    rng = np.random.default_rng(seed)
    if kind == "inverted":
        out = []
        for _ in range(n):
            terms = rng.choice(len(VOCAB), size=int(rng.integers(1, 6)), replace=False)
            out.append({VOCAB[t]: float(rng.integers(1, 3)) for t in terms})  # integer weights: ties stay ties
        return out
    if kind == "faiss":
        return rng.standard_normal((n, DIM)).astype(np.float32)
    return [rng.standard_normal((int(rng.integers(1, 4)), DIM)).astype(np.float32) for _ in range(n)]


def assert_same(got, want, what="", exact=True):
    """Same ids in the same order and the same float32 scores (``exact=False``: scores equal to float32 rounding,
    for the BLAS-scored FAISS and multi-vector members, whose sums depend on the matrix shapes)."""
    assert len(got[0]) == len(want[0])
    for q, (gi, gs, wi, ws) in enumerate(zip(got[0], got[1], want[0], want[1])):
        assert gi == wi, f"{what} query {q}: ids {gi} != {wi}"
        gs, ws = np.asarray(gs, np.float32), np.asarray(ws, np.float32)
        same = np.array_equal(gs, ws) if exact else np.allclose(gs, ws, rtol=1e-6, atol=1e-6)
        assert same, f"{what} query {q}: scores {gs} != {ws}"


def check_against_scratch(path: Path, model: dict[str, int], corpus: Corpus, tmp: Path, members=None,
                          ks=(1, 3, 50), generation=None) -> SegmentedIndex:
    """The latest snapshot at ``path`` holds exactly ``model``'s live documents (id → version) and every member's
    search equals a from-scratch build over them, in the snapshot's global order."""
    index = SegmentedIndex.open(path, generation=generation, device="cpu")
    assert sorted(index.doc_ids) == sorted(model)
    assert index.num_docs == len(model)
    if not model:
        return index
    docs = [(d, model[d]) for d in index.doc_ids]
    scratch = tmp / f"scratch-{len(list(tmp.iterdir()))}"
    for name, kind in (members or KINDS).items():
        fresh = build_member(kind, docs, scratch / name, corpus)
        from heron.indexing.registry import open_index

        ref = open_index(fresh, **({"device": "cpu"} if kind == "faiss" else {}))
        member = index.member(name)
        modes = [{"mode": "exact"}, {"mode": "taat"}] if kind == "inverted" else [{}]
        for k in ks:
            for opts in modes:
                assert_same(member.search_batch(queries(kind), k, **opts), ref.search_batch(queries(kind), k, **opts),
                            f"{name} k={k} {opts}", exact=kind == "inverted")
        allow = index.doc_ids[::3]
        for opts in modes:
            assert_same(member.search_batch(queries(kind), 5, allow=allow, **opts),
                        ref.search_batch(queries(kind), 5, allow=allow, **opts), f"{name} allow {opts}",
                        exact=kind == "inverted")
        if kind == "inverted":  # queries dealt to several groups of the one-call search
            assert_same(member.search_batch(queries(kind), 3, threads=3), ref.search_batch(queries(kind), 3),
                        f"{name} threads=3", exact=True)
        got, want = member.vectors([len(docs) - 1, 0]), ref.vectors([len(docs) - 1, 0])
        if kind == "inverted":
            assert (got != want).nnz == 0
        elif kind == "faiss":
            assert np.array_equal(got, want)
        else:
            assert all(np.array_equal(a, b) for a, b in zip(got, want))
    shutil.rmtree(scratch)
    return index


# -- the property test ----------------------------------------------------------------------------------------
OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 6), st.integers(0, 3)),   # n new docs, of which up to m upserts
    st.tuples(st.just("delete"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("commit"), st.just(0), st.just(0)),
    st.tuples(st.just("merge"), st.integers(1, 3), st.just(0)),
), min_size=1, max_size=7)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS, seed=st.integers(0, 3), overfetch=st.booleans(), tiered=st.booleans(), threads=st.sampled_from([1, 3]),
       share=st.sampled_from([(1.5, 16), (0.3, 0)]), one_call=st.booleans())
def test_random_changes_search_like_a_fresh_build(tmp_path_factory, ops, seed, overfetch, tiered, threads, share,
                                                  one_call):
    """Random add / upsert / delete / commit / merge sequences on a bundle of an inverted, a FAISS flat and a
    multi-vector member; after each commit, every member's search == a from-scratch build over the live docs."""
    tmp = tmp_path_factory.mktemp("prop")
    corpus = Corpus(seed)
    rng = np.random.default_rng(seed)
    model = {f"d{i}": 0 for i in range(5)}
    path = build_bundle(list(model.items()), tmp / "index", corpus)
    convert_to_segmented(path)
    policy = {"segments_per_tier": 2, "min_docs": 2} if tiered else {"enabled": False}
    next_id, version, batch = 5, 1, 0
    old = (reader.OVERFETCH_MIN, reader.OVERFETCH_FACTOR, reader.SEGMENT_THREADS, reader.SHARE_SLACK, reader.SHARE_MIN,
           reader.ONE_CALL)
    reader.ONE_CALL = one_call  # inverted members: one compiled call over every segment, or per segment and merged
    reader.SEGMENT_THREADS = threads  # segments searched one after the other, or on a thread pool
    reader.SHARE_SLACK, reader.SHARE_MIN = share  # (0.3, 0): segments first asked for too few hits, then again
    if not overfetch:  # every segment with deletions searched through the live-document filter
        reader.OVERFETCH_MIN, reader.OVERFETCH_FACTOR = 0, 0
    try:
        committed = dict(model)
        with IndexWriter(path, merge_policy=policy) as writer:
            for op, n, m in ops:
                if op == "add":
                    old_ids = sorted(model)
                    upserts = list(rng.choice(old_ids, size=min(m, len(old_ids)), replace=False)) if old_ids else []
                    docs = [(str(d), version) for d in upserts] + [(f"d{next_id + i}", version) for i in range(n)]
                    next_id += n
                    version += 1
                    batch += 1
                    writer.add_segment(build_bundle(docs, tmp / f"new{batch}", corpus), upsert=bool(upserts))
                    model.update(docs)
                elif op == "delete" and model:
                    gone = list(rng.choice(sorted(model), size=min(n, len(model)), replace=False))
                    assert writer.delete(gone + ["never-there"]) == len(gone)
                    for d in gone:
                        del model[d]
                elif op == "commit":
                    writer.commit()
                    committed = dict(model)
                    check_against_scratch(path, committed, corpus, tmp)
                elif op == "merge":
                    writer.merge(n)
                    committed = dict(model)
                    assert len(SegmentedIndex.open(path, device="cpu").segments) <= max(n, 1)
            assert SegmentedIndex.open(path, device="cpu").doc_ids is not None
        check_against_scratch(path, model, corpus, tmp)  # the with block committed the rest
    finally:
        (reader.OVERFETCH_MIN, reader.OVERFETCH_FACTOR, reader.SEGMENT_THREADS, reader.SHARE_SLACK,
         reader.SHARE_MIN, reader.ONE_CALL) = old


def test_approximate_search_per_segment_merged_into_a_global_top_k(tmp_path):
    """mode=approx on every segment (each has approx structures), merged: with exhaustive knobs it equals exact
    search; with a preset, deleted documents never appear and the hits are real (their exact scores)."""
    corpus = Corpus(3)
    approx = {"n_postings": 10**6, "summary_energy": 1.0, "threads": 1}
    path = build_member("inverted", [(f"d{i}", 0) for i in range(40)], tmp_path / "ix", corpus, approx=approx)
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        for b in range(3):
            docs = [(f"d{i}", 0) for i in range(40 + 30 * b, 70 + 30 * b)]
            writer.add_segment(build_member("inverted", docs, tmp_path / f"n{b}", corpus, approx=approx))
        writer.delete([f"d{i}" for i in range(0, 130, 7)])
    index = SegmentedIndex.open(path)
    member = index.member("ix")
    assert len(index.segments) == 4
    qs = queries("inverted", 10)
    exact = member.search_batch(qs, 10, mode="exact")
    assert_same(member.search_batch(qs, 10, mode="approx", query_cut=100, heap_factor=1.0), exact, "approx")
    ids, scores = member.search_batch(qs, 10, mode="approx", preset="recall90")
    live = set(index.doc_ids)
    exact_all = member.search_batch(qs, 200, mode="taat")
    for q, (row, row_scores) in enumerate(zip(ids, scores)):
        assert set(row) <= live
        truth = dict(zip(exact_all[0][q], exact_all[1][q].tolist()))
        assert [truth[d] for d in row] == row_scores.tolist()


# -- conversion, commits, layout --------------------------------------------------------------------------------
def test_convert_in_place_keeps_answers_and_open_readers(tmp_path):
    from heron.indexing.registry import open_index

    corpus = Corpus(1)
    path = build_member("inverted", [(f"d{i}", 0) for i in range(30)], tmp_path / "ix", corpus)
    before = open_index(path)
    qs = queries("inverted")
    want = before.search_batch(qs, 10)
    assert not is_segmented(path)
    convert_to_segmented(path)
    assert is_segmented(path) and sorted(p.name for p in path.iterdir()) == ["commit-1.json", "live", "segments"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # nothing left beside it
    assert_same(before.search_batch(qs, 10), want)  # the open classic index keeps answering
    index = SegmentedIndex.open(path)
    assert index.layout == "index" and index.members == ["ix"] and index.generation == 1
    assert_same(index.member("ix").search_batch(qs, 10), want)
    convert_to_segmented(path)  # already segmented: nothing happens
    assert generations(path) == [1]


def test_convert_a_bundle_and_read_its_documents(tmp_path):
    corpus = Corpus(2)
    path = build_bundle([(f"d{i}", 0) for i in range(8)], tmp_path / "b", corpus)
    convert_to_segmented(path)
    index = SegmentedIndex.open(path, device="cpu")
    assert index.layout == "bundle" and index.members == list(MEMBERS)
    assert index.document("d3") == {"title": "title d3 v0", "text": "text of d3"}
    assert index.document("nope") is None
    assert index.bundle_manifest()["default"] == "sparse"
    with IndexWriter(path) as writer:
        writer.add_segment(build_bundle([("d3", 1), ("d9", 1)], tmp_path / "n", corpus), upsert=True)
    index = index.refresh()
    assert index.generation == 2 and index.document("d3")["title"] == "title d3 v1"
    assert index.refresh() is None
    info = index.describe()
    assert info["num_docs"] == 9 and info["deleted_docs"] == 1 and info["generation"] == 2
    assert [s["live"] for s in info["segments"]] == [7, 2] and info["bytes_per_posting"] > 0
    with IndexWriter(path) as writer:
        writer.merge(1)
    merged = SegmentedIndex.open(path, device="cpu")
    assert len(merged.segments) == 1 and merged.document("d3")["title"] == "title d3 v1"
    assert merged.bundle_manifest()["default"] == "sparse"
    check_against_scratch(path, {**{f"d{i}": 0 for i in range(8)}, "d3": 1, "d9": 1}, corpus, tmp_path)


def test_commit_files_are_sealed_and_checked(tmp_path):
    write_commit(tmp_path, 1, {"segments": []})
    assert latest_generation(tmp_path) == 1 and read_commit(tmp_path)["format"] == "heron-commit"
    with pytest.raises(HeronError, match="already exists"):
        write_commit(tmp_path, 1, {"segments": []})
    where = tmp_path / "commit-1.json"
    where.chmod(0o644)
    where.write_text(where.read_text().replace('"segments": []', '"segments": [1]'))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        read_commit(tmp_path)
    with pytest.raises(HeronError, match="no such commit"):
        read_commit(tmp_path, 5)
    with pytest.raises(HeronError, match="no commit point"):
        read_commit(tmp_path / "nothing")


def test_damaged_live_bitmap_and_replaced_segment_are_integrity_errors(tmp_path):
    corpus = Corpus(4)
    path = build_member("inverted", [(f"d{i}", 0) for i in range(20)], tmp_path / "ix", corpus)
    convert_to_segmented(path)
    with IndexWriter(path) as writer:
        writer.delete(["d1", "d2"])
    bitmap = next((path / "live").iterdir())
    data = bytearray(bitmap.read_bytes())
    data[-1] ^= 0xFF
    bitmap.chmod(0o644)
    bitmap.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        SegmentedIndex.open(path)
    problems = segmented_problems(path)
    assert len(problems) == 1 and "live" in str(problems[0].path)
    assert segmented_problems(path, generation=1) == []
    other = build_member("inverted", [(f"d{i}", 1) for i in range(20)], tmp_path / "other", corpus)
    segment = path / "segments" / "s000001"
    shutil.rmtree(segment)
    shutil.copytree(other, segment)
    with pytest.raises(IntegrityError, match="not the segment the commit records"):
        SegmentedIndex.open(path, generation=1)
    assert "not the segment" in str(segmented_problems(path, generation=1)[0])


def test_bad_input_is_one_line_errors(tmp_path):
    corpus = Corpus(5)
    path = build_member("inverted", [(f"d{i}", 0) for i in range(10)], tmp_path / "ix", corpus)
    with pytest.raises(HeronError, match="not a segmented index"):
        IndexWriter(path)
    convert_to_segmented(path)
    with IndexWriter(path) as writer:
        with pytest.raises(HeronError, match="another build of this segmented index is running"):
            IndexWriter(path)
        clash = build_member("inverted", [("d1", 1), ("d50", 1)], tmp_path / "clash", corpus)
        with pytest.raises(HeronError, match=r"1 document ids are in the index already \(e.g. 'd1'\)"):
            writer.add_segment(clash)
        rows = sp.csr_matrix(np.ones((1, len(VOCAB)), np.float32))
        wrong_scale = build_inverted_index([(["x1"], rows)], tmp_path / "scale", vocab=VOCAB, encoder={},
                                           scale=2.0, progress=False)
        with pytest.raises(HeronError, match="scale=2.0, the index as uint8 with scale=4.0"):
            writer.add_segment(wrong_scale)
        wrong_vocab = build_inverted_index([(["x2"], rows)], tmp_path / "vocab", vocab=[v + "x" for v in VOCAB],
                                           encoder={}, scale=SCALE, progress=False)
        with pytest.raises(HeronError, match="another vocabulary"):
            writer.add_segment(wrong_vocab)
        dense = build_member("faiss", [("x3", 0)], tmp_path / "dense", corpus)
        with pytest.raises(HeronError, match="a faiss index; this index holds a inverted index"):
            writer.add_segment(dense)
        with pytest.raises(HeronError, match="not one string"):
            writer.delete("d1")
        with pytest.raises(HeronError, match="max_segments"):
            writer.merge(0)
        assert not writer.pending
    with pytest.raises(HeronError, match="merge_policy: unknown key 'tiers'"):
        IndexWriter(path, merge_policy={"tiers": 3})
    with pytest.raises(HeronError, match="no member 'nope'"):
        SegmentedIndex.open(path).member("nope")
    assert SegmentedIndex.open(path).generation == 1  # nothing was committed
    assert clash.is_dir()  # a refused segment is left where it was


def test_rollback_and_exceptions_drop_pending_changes(tmp_path):
    corpus = Corpus(6)
    path = build_member("faiss", [(f"d{i}", 0) for i in range(10)], tmp_path / "ix", corpus)
    convert_to_segmented(path)
    with pytest.raises(RuntimeError), IndexWriter(path) as writer:
        writer.add_segment(build_member("faiss", [("d20", 0)], tmp_path / "n", corpus))
        writer.delete(["d1"])
        raise RuntimeError("the caller failed")
    index = SegmentedIndex.open(path, device="cpu")
    assert index.generation == 1 and index.num_docs == 10
    assert [p.name for p in (path / "segments").iterdir()] == ["s000001"]  # the added segment was removed


def test_deleting_everything_and_adding_again(tmp_path):
    corpus = Corpus(7)
    path = build_member("multivector", [(f"d{i}", 0) for i in range(6)], tmp_path / "ix", corpus)
    convert_to_segmented(path)
    with IndexWriter(path) as writer:
        assert writer.delete([f"d{i}" for i in range(6)]) == 6
    index = SegmentedIndex.open(path)
    assert index.num_docs == 0 and index.segments == []
    with pytest.raises(HeronError, match="holds no documents"):
        index.member("ix")
    with IndexWriter(path) as writer:
        writer.add_segment(build_member("multivector", [("d2", 1), ("d8", 1)], tmp_path / "n", corpus))
    check_against_scratch(path, {"d2": 1, "d8": 1}, corpus, tmp_path, members={"ix": "multivector"})


def test_old_commits_and_unreferenced_files_are_removed(tmp_path):
    corpus = Corpus(8)
    path = build_member("inverted", [(f"d{i}", 0) for i in range(10)], tmp_path / "ix", corpus)
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        for b in range(4):
            writer.add_segment(build_member("inverted", [(f"d{10 + b}", 0)], tmp_path / f"n{b}", corpus))
            writer.delete([f"d{b}"])
            writer.commit()
        writer.merge(1)
    assert generations(path) == [5, 6]
    kept = {e["name"] for g in (5, 6) for e in read_commit(path, g)["segments"]}
    assert {p.name for p in (path / "segments").iterdir()} == kept
    lives = {e["live"] for g in (5, 6) for e in read_commit(path, g)["segments"] if e["live"]}
    assert {f"live/{p.name}" for p in (path / "live").iterdir()} == lives
    json.loads((path / "commit-6.json").read_text())  # plain JSON, readable by any tool


def test_new_segments_built_inside_the_index_and_their_settings(tmp_path):
    corpus = Corpus(9)
    path = build_bundle([(f"d{i}", 0) for i in range(6)], tmp_path / "b", corpus, members=("sparse", "dense"))
    convert_to_segmented(path)
    with IndexWriter(path) as writer:
        settings = writer.build_settings()
        assert settings["sparse"]["scale"] == SCALE and settings["sparse"]["quantization"] == "uint8"
        assert settings["dense"]["index_type"] == "flat" and settings["dense"]["store_vectors"]
        target = writer.new_build_dir()
        assert target.parent == path / "incoming" and not target.exists()
        writer.add_segment(build_bundle([("d7", 0)], target, corpus, members=("sparse", "dense")))
        left = writer.new_build_dir()
        left.mkdir()  # a build abandoned by a caller
    assert SegmentedIndex.open(path, device="cpu").num_docs == 7
    with IndexWriter(path):
        pass
    assert not (path / "incoming").exists()  # removed when the next writer opened


def test_member_attributes_span_every_segment_or_are_refused(tmp_path):
    corpus = Corpus(10)
    path = build_member("inverted", [(f"d{i}", 0) for i in range(12)], tmp_path / "ix", corpus)
    convert_to_segmented(path)
    with IndexWriter(path) as writer:
        writer.add_segment(build_member("inverted", [(f"d{i}", 0) for i in range(12, 20)], tmp_path / "n", corpus))
        writer.delete(["d0"])
    member = SegmentedIndex.open(path).member("ix")
    fresh = build_member("inverted", [(f"d{i}", 0) for i in range(20)], tmp_path / "all", corpus)
    from heron.indexing.registry import open_index

    whole = open_index(fresh)
    assert np.array_equal(member.df(), whole.df()) and member.nnz == whole.nnz  # d0 counts until merged
    assert member.vocab == VOCAB and member.scale == SCALE and member.manifest["num_docs"] == 19 == member.num_docs
    with pytest.raises(AttributeError, match="not available on a segmented inverted member"):
        member.arrays  # noqa: B018
    assert member.doc_index("d5") == 4 and member.positions_of(["d19", "d1", "zz"]).tolist() == [0, 18]


def test_segments_asked_for_a_share_of_k_are_searched_again_when_it_may_be_short(tmp_path, monkeypatch):
    """One segment holds every good document: asked first for its share of k, it must be asked again, and the
    result is the fresh build's all the same."""
    rows = {f"d{i}": np.eye(len(VOCAB), dtype=np.float32)[0] * (1 + i % 3) for i in range(60)}
    rows.update({f"d{i}": np.eye(len(VOCAB), dtype=np.float32)[1] for i in range(60, 120)})

    def build(ids, out):
        return build_inverted_index([(ids, sp.csr_matrix(np.stack([rows[d] for d in ids])))], out, vocab=VOCAB,
                                    encoder={}, scale=SCALE, progress=False)

    path = build([f"d{i}" for i in range(60, 120)], tmp_path / "ix")  # no document of term t0 here
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        writer.add_segment(build([f"d{i}" for i in range(60)], tmp_path / "n"))
    calls = []
    original = reader.SegmentedMember._run
    def counted(tasks, q, o):
        calls.append([t.share for t in tasks])
        return original(tasks, q, o)

    monkeypatch.setattr(reader.SegmentedMember, "_run", staticmethod(counted))
    monkeypatch.setattr(reader, "SHARE_MIN", 0)
    monkeypatch.setattr(reader, "ONE_CALL", False)  # the per-segment path (FAISS, multi-vector, approx)
    member = SegmentedIndex.open(path).member("ix")
    got = member.search_batch([{"t0": 1.0}], 40)
    assert calls == [[30, 30], [40]]  # each asked for 40 · 60/120 · 1.5 = 30 hits, then t0's segment for 40
    from heron.indexing.registry import open_index

    fresh = build([f"d{i}" for i in range(60, 120)] + [f"d{i}" for i in range(60)], tmp_path / "all")
    assert_same(got, open_index(fresh).search_batch([{"t0": 1.0}], 40))


@pytest.mark.parametrize("fallback", [False, True, None])
def test_deleted_documents_at_the_top_make_a_segment_search_again(tmp_path, monkeypatch, fallback):
    """The 30 best documents of a query are deleted: the first over-fetch (k + a few) finds no live hit, the
    segment is searched again (over-fetching every deleted document, or filtering by the live ones); in one call
    (``fallback`` None) the live documents are a mask."""
    monkeypatch.setattr(reader, "ONE_CALL", fallback is None)
    rows = {f"d{i}": np.eye(len(VOCAB), dtype=np.float32)[0] * (6 - i / 20) for i in range(60)}

    def build(ids, out):
        return build_inverted_index([(ids, sp.csr_matrix(np.stack([rows[d] for d in ids])))], out, vocab=VOCAB,
                                    encoder={}, scale=SCALE, progress=False)

    path = build([f"d{i}" for i in range(60)], tmp_path / "ix")
    convert_to_segmented(path)
    with IndexWriter(path) as writer:
        writer.delete([f"d{i}" for i in range(30)])
    if fallback:
        monkeypatch.setattr(reader, "OVERFETCH_MIN", 0)
        monkeypatch.setattr(reader, "OVERFETCH_FACTOR", 0)
    got = SegmentedIndex.open(path).member("ix").search_batch([{"t0": 1.0}], 5, mode="exact")
    from heron.indexing.registry import open_index

    want = open_index(build([f"d{i}" for i in range(30, 60)], tmp_path / "fresh")).search_batch([{"t0": 1.0}], 5)
    assert got[0][0] == [f"d{i}" for i in range(30, 35)]
    assert_same(got, want)


@pytest.mark.parametrize("name", ["heron.indexing.segments", "heron.storage.commits"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_hnsw_segments_filter_tombstones_at_search_time(tmp_path):
    """HNSW members skip deleted documents inside FAISS's search (the live bitmap as an IDSelectorBitmap, with the
    segment's own ef_search): deleted documents never come back, every query gets k live hits, and with a search
    beam as wide as the segments the results are the exact ones."""
    corpus = Corpus(14)

    def build(docs, out):
        rows = np.stack([corpus.dense(d, v) for d, v in docs])
        return build_faiss_index([([d for d, _ in docs], rows)], out, dim=DIM, index_type="hnsw",
                                 params={"m": 8, "ef_search": 16}, progress=False)

    path = build([(f"d{i}", 0) for i in range(80)], tmp_path / "ix")
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        writer.add_segment(build([(f"d{i}", 0) for i in range(80, 140)], tmp_path / "n"))
        writer.delete([f"d{i}" for i in range(0, 140, 3)])
    index = SegmentedIndex.open(path, device="cpu")
    member = index.member("ix")
    live = set(index.doc_ids)
    qs = queries("faiss", 8)
    for row in member.search_batch(qs, 10)[0]:
        assert len(row) == 10 and set(row) <= live
    member.set_search_params(ef_search=200)  # every segment, not only the first
    assert all(part.index.hnsw.efSearch == 200 for part in member.parts)
    exact = build_faiss_index([(index.doc_ids, member.vectors(range(index.num_docs)))], tmp_path / "flat", dim=DIM,
                              index_type="flat", progress=False)
    from heron.indexing.registry import open_index

    want = open_index(exact, device="cpu").search_batch(qs, 10)
    assert_same(member.search_batch(qs, 10), want, "hnsw", exact=False)
