"""Inverted search over every segment in one compiled call (heron.indexing.inverted.multisegment): ties across
segments resolved by global position, deleted documents and allow-lists as masks, a damaged block of a later
segment named in the error. Random sequences against fresh builds: test_segments.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from heron.errors import IntegrityError
from heron.indexing.inverted.builder import build_inverted_index
from heron.indexing.registry import open_index
from heron.indexing.segments import IndexWriter, SegmentedIndex, convert_to_segmented, reader

VOCAB = [f"t{i}" for i in range(6)]


def build(rows: dict[str, np.ndarray], ids: list[str], out):
    return build_inverted_index([(ids, sp.csr_matrix(np.stack([rows[d] for d in ids])))], out, vocab=VOCAB,
                                encoder={}, scale=4.0, block_size=4, progress=False)


def segmented(tmp_path, rows, parts: list[list[str]], deleted=()):
    path = build(rows, parts[0], tmp_path / "ix")
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        for i, ids in enumerate(parts[1:]):
            writer.add_segment(build(rows, ids, tmp_path / f"part{i}"))
        if deleted:
            writer.delete(list(deleted))
    return SegmentedIndex.open(path)


def same(got, want):
    assert got[0] == want[0]
    assert all(np.array_equal(a, b) for a, b in zip(got[1], want[1]))


@pytest.mark.parametrize("mode", ["exact", "taat"])
def test_ties_across_segments_go_to_the_lower_global_position(tmp_path, monkeypatch, mode):
    """Every document scores the same: the top k are the first k live documents in global order, as in one index
    over them (the heap compares entries of earlier segments by global position, not by local index)."""
    monkeypatch.setattr(reader, "ONE_CALL", True)
    one, two = np.eye(len(VOCAB), dtype=np.float32)[0], np.eye(len(VOCAB), dtype=np.float32)[1]
    rows = {f"d{i}": one + (two if i % 4 == 0 else 0) for i in range(40)}
    parts = [[f"d{i}" for i in range(0, 14)], [f"d{i}" for i in range(14, 20)], [f"d{i}" for i in range(20, 40)]]
    index = segmented(tmp_path, rows, parts, deleted=["d1", "d2", "d16"])
    member = index.member(index.members[0])
    assert len({id(part.vocab) for part in member.parts}) == 1  # one parsed vocabulary for every segment
    live = index.doc_ids
    fresh = open_index(build(rows, live, tmp_path / "fresh"))
    qs = [{"t0": 1.0}, {"t0": 1.0, "t1": 1.0}, {"t1": 2.0}, {"t5": 1.0}]
    for k in (1, 5, 13, 37, 100):
        got = member.search_batch(qs, k, mode=mode)
        same(got, fresh.search_batch(qs, k, mode=mode))
        assert got[0][0] == live[:k]  # all tied: global order
    allow = live[::2]
    same(member.search_batch(qs, 7, mode=mode, allow=allow), fresh.search_batch(qs, 7, mode=mode, allow=allow))
    same(member.search_batch(qs, 7, mode=mode, allow=["d1", "zz"]), ([[]] * 4, [np.zeros(0, np.float32)] * 4))
    same(member.search_batch(sp.csr_matrix(np.stack([one, one + two])), 9, mode=mode),
         fresh.search_batch(sp.csr_matrix(np.stack([one, one + two])), 9, mode=mode))
    with pytest.raises(ValueError, match="non-negative"):
        member.search_batch([{"t0": -1.0}], 3, mode=mode)


@pytest.mark.parametrize("mode", ["exact", "taat"])
def test_large_k_across_segments_equals_one_index(tmp_path, monkeypatch, mode):
    """k of kernels.BUFFERED_K and more: a segment's top-k is selected through a buffer of keys and merged into
    the heap the earlier segments filled: the same ids, scores and tie order as one index over the live
    documents (ties everywhere: scores take three values)."""
    monkeypatch.setattr(reader, "ONE_CALL", True)
    rng = np.random.default_rng(5)
    rows = {f"d{i}": (rng.random(len(VOCAB)) < 0.7) * rng.integers(1, 3, len(VOCAB)).astype(np.float32) / 2
            for i in range(400)}
    parts = [[f"d{i}" for i in range(0, 140)], [f"d{i}" for i in range(140, 200)],
             [f"d{i}" for i in range(200, 400)]]
    index = segmented(tmp_path, rows, parts, deleted=["d3", "d150", "d399"] + [f"d{i}" for i in range(210, 260)])
    member = index.member(index.members[0])
    fresh = open_index(build(rows, index.doc_ids, tmp_path / "fresh"))
    qs = [{"t0": 1.0}, {t: 1.0 for t in VOCAB}, {"t1": 2.0, "t4": 0.5}]
    for k in (128, 150, 250, 1000):
        same(member.search_batch(qs, k, mode=mode), fresh.search_batch(qs, k, mode=mode))
    allow = index.doc_ids[::3]
    same(member.search_batch(qs, 130, mode=mode, allow=allow), fresh.search_batch(qs, 130, mode=mode, allow=allow))


def test_an_exception_part_way_leaves_no_partial_scores_in_the_reused_scratch(tmp_path, monkeypatch):
    """The segments' compiled search reuses a per-thread accumulator; if it raises part-way the wrapper clears it,
    so the next search is not summed on top of partial scores."""
    from heron.indexing.inverted import multisegment

    monkeypatch.setattr(reader, "ONE_CALL", True)
    rng = np.random.default_rng(8)
    rows = {f"d{i}": (rng.random(len(VOCAB)) < 0.6) * rng.integers(1, 8, len(VOCAB)).astype(np.float32) / 2
            for i in range(60)}
    index = segmented(tmp_path, rows, [[f"d{i}" for i in range(0, 30)], [f"d{i}" for i in range(30, 60)]])
    member = index.member(index.members[0])
    qs = [{"t0": 1.0, "t2": 0.5}]
    good = member.search_batch(qs, 10, mode="taat")
    real = multisegment._group

    def fails_part_way(*args):
        args[18][:] = 7.0  # the accumulator and its bitset, by position
        args[19][:] = ~np.uint64(0)
        raise MemoryError("simulated")

    monkeypatch.setattr(multisegment, "_group", fails_part_way)
    with pytest.raises(MemoryError):
        member.search_batch(qs, 10, mode="taat")
    monkeypatch.setattr(multisegment, "_group", real)
    same(member.search_batch(qs, 10, mode="taat"), good)


def test_a_damaged_block_of_a_later_segment_is_named(tmp_path, monkeypatch):
    """A block whose checksum fails in the third segment stops the search with the IntegrityError of that
    segment's file, not a wrong answer."""
    monkeypatch.setattr(reader, "ONE_CALL", True)
    rng = np.random.default_rng(0)
    rows = {f"d{i}": (rng.random(len(VOCAB)) < 0.6) * rng.integers(1, 8, len(VOCAB)).astype(np.float32) / 2
            for i in range(30)}
    index = segmented(tmp_path, rows, [[f"d{i}" for i in range(s, s + 10)] for s in (0, 10, 20)])
    member = index.member(index.members[0])
    part = member.parts[2]
    words = np.array(part.arrays["postings_words"])
    words[len(words) // 2] ^= 0x10
    part.arrays = {**part.arrays, "postings_words": words}
    with pytest.raises(IntegrityError, match=r"postings_words\.npy") as caught:
        member.search_batch([{t: 1.0 for t in VOCAB}], 10)
    assert str(part.path) in str(caught.value)
