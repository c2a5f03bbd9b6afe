"""Approximate-search summaries stored as one-byte term gaps: encoding, decoding in the kernel, bounds.

The search over gap-coded summaries is compared with a plain-Python re-implementation of the search
that reads the decoded summaries (same visited blocks, same results), and hand-made summaries with
adversarial gaps (0, 255, 256, 510, a term near the vocabulary's end, more than 65,535, an empty
summary) decide a block visit whose outcome flips if a single term id is decoded wrongly.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from test_forward_index import N, V, build, corpus, damaged_copy, reseal, visit_everything
from test_kernels import EMPTY_MASK, approx, index_arrays, topical_corpus

from heron.errors import HeronError, IntegrityError
from heron.indexing.inverted import InvertedIndex
from heron.indexing.inverted import approx as A
from heron.indexing.inverted import format as fmt
from heron.indexing.inverted.topk import INT32_MAX, SLACK


def encode(blocks: list[list[int]], values: list[list[int]] | None = None):
    """The stored ``(offsets, gaps, values)`` of summaries given as ascending term-id lists."""
    lengths = np.array([len(b) for b in blocks], np.int64)
    terms = np.array([t for b in blocks for t in b], np.int64)
    vals = np.array([v for vs in values for v in vs] if values else [1 + i % 255 for i in range(len(terms))],
                    np.int32)
    stored = np.zeros(len(blocks), np.int64)
    count = A._gap_counts(terms, lengths, stored)
    gaps, out = np.empty(count, np.uint8), np.empty(count, np.uint8)
    A._gap_encode(terms, vals, lengths, gaps, out)
    offsets = np.zeros(len(blocks) + 1, np.int64)
    np.cumsum(stored, out=offsets[1:])
    return offsets, gaps, out, vals


ADVERSARIAL = [[0], [255], [256], [510], [511], [0, 255, 511, 1021, 1022], [65535], [1, 65535], [],
               [3, 259, 260, 515, 65280, 65534]]


def test_gap_encoding_round_trips_with_fillers():
    offsets, gaps, values, vals = encode(ADVERSARIAL)
    arrays = {"summary_offsets": offsets, "summary_terms": gaps, "summary_values": values}
    o = 0
    for b, want in enumerate(ADVERSARIAL):
        terms, got = A.decode_summary(arrays, b)
        assert terms.tolist() == want
        assert got.tolist() == vals[o:o + len(want)].tolist()
        o += len(want)
    # fillers (gap 255, value 0): (g - 1) // 255 before a gap g above 255
    want_fillers = [0, 0, 1, 1, 2, 0 + 0 + 1 + 1 + 0, 65534 // 255, 0 + 65533 // 255, 0,
                    0 + 1 + 0 + 0 + 64764 // 255 + 0]
    stored = np.diff(offsets) - np.array([len(b) for b in ADVERSARIAL])
    assert stored.tolist() == want_fillers
    assert np.count_nonzero(values == 0) == sum(want_fillers)
    assert np.all(gaps[values == 0] == 255)
    assert gaps[offsets[2]:offsets[3]].tolist() == [255, 1] and values[offsets[2]] == 0  # 256 = filler + 1
    assert gaps[offsets[4]:offsets[5]].tolist() == [255, 255, 1]  # 511
    assert gaps[offsets[1]:offsets[2]].tolist() == [255] and values[offsets[1]] > 0  # 255: no filler
    # a gap beyond 65,535 (int32 vocabularies)
    offsets, gaps, values, _ = encode([[0, 200_000]])
    assert gaps.tolist() == [0] + [255] * 784 + [200_000 - 784 * 255] and np.count_nonzero(values == 0) == 784
    assert A.decode_summary({"summary_offsets": offsets, "summary_terms": gaps, "summary_values": values},
                            0)[0].tolist() == [0, 200_000]


def hand_made(vocab_size: int, summary: list[int], list_term: int):
    """Two documents in two blocks of ``list_term``'s list: block 0 holds document 0 (impact 10 on the list
    term), block 1 document 1 (impact 20) and carries ``summary`` (values 1, 2, ...)."""
    fwd = sp.csr_matrix((np.array([10, 20], np.uint8), (np.array([0, 1]), np.array([list_term, list_term]))),
                        shape=(2, vocab_size))
    lb = np.zeros(vocab_size + 1, np.int64)
    lb[list_term + 1:] = 2
    offsets, gaps, values, _ = encode([[list_term], summary], [[10], list(range(1, len(summary) + 1))])
    structures = {"list_blocks": lb, "block_doc_offsets": np.array([0, 1, 2], np.int64),
                  "block_docs": np.array([0, 1], np.int32), "summary_offsets": offsets, "summary_terms": gaps,
                  "summary_values": values, "summary_scales": np.ones(2, np.float32)}
    arrays = {"forward_offsets": fwd.indptr.astype(np.int64),
              "forward_terms": fwd.indices.astype(np.uint16 if vocab_size <= 65536 else np.int32),
              "forward_impacts": fwd.data}
    return arrays, structures


@pytest.mark.parametrize("vocab_size, summary", [(65536, s) for s in ADVERSARIAL] +
                         [(200_001, [0, 70_000, 200_000]), (200_001, [199_999, 200_000])])
def test_kernel_decodes_every_term_of_a_summary(vocab_size, summary):
    list_term = 40_000 if 40_000 not in summary else 40_001
    arrays, structures = hand_made(vocab_size, summary, list_term)
    # the list term heaviest (visited first, alone with query_cut 1); every summary term weighted 2^-i
    terms = np.array(sorted({list_term, *summary}), np.int32)
    weights = np.array([100.0 if t == list_term else 2.0 ** -(1 + summary.index(t)) for t in terms], np.float32)
    dot = sum((2.0 ** -(1 + i)) * (i + 1) for i in range(len(summary))) + (100.0 * 20 if list_term in summary else 0)
    threshold = 100.0 * 10  # document 0's score: block 1 is visited when dot * heap_factor reaches it
    for factor, visited in ((1.001, True), (0.999, False)):
        heap_factor = threshold / dot * factor / SLACK if dot else 1.0
        idx, scores = approx(arrays, structures, 2, terms, weights, 1, 1, heap_factor)
        want = 1 if visited and dot else 0  # an empty summary scores 0: never visited once the heap is full
        assert idx.tolist() == [want] and scores.tolist() == [1000.0 * (want + 1)]
    idx, _ = approx(arrays, structures, 2, terms, weights, 2, 1, 1.0)  # heap not full (threshold 0): visited
    assert idx.tolist() == [1, 0]


def test_corrupt_gap_is_an_integrity_error_never_an_out_of_range_read():
    arrays, structures = hand_made(65536, [1, 65535], 7)
    terms, weights = np.array([1, 7], np.int32), np.array([1.0, 5.0], np.float32)
    approx(arrays, structures, 2, terms, weights, 1, 1, 1.0)
    bad = structures["summary_terms"].copy()
    assert bad[-1] == 65534 - 256 * 255
    bad[-1] = 255  # the last term becomes 65,536 = the vocabulary size
    with pytest.raises(IntegrityError, match=r"approx/summary_terms.npy: approximate block 1's summary decodes a "
                                              r"term id out of range"):
        approx(arrays, {**structures, "summary_terms": bad}, 2, terms, weights, 1, 1, 1.0)
    bad[:] = 255  # far past the vocabulary from the second entry on: the reads stay inside the query vector
    with pytest.raises(IntegrityError, match="out of range"):
        approx(arrays, {**structures, "summary_terms": bad}, 2, terms, weights, 1, 1, 1.0)
    with pytest.raises(IntegrityError, match="summary_offsets.npy: summary offsets end at"):
        approx(arrays, {**structures, "summary_values": structures["summary_values"][:-1]}, 2, terms, weights,
               1, 1, 1.0)


def test_old_layout_is_refused_with_a_rebuild_error():
    arrays, structures = hand_made(65536, [1, 65535], 7)
    old = {**structures, "summary_terms": np.array([7, 1, 65535], np.uint16)}
    with pytest.raises(HeronError, match=r"^approx/summary_terms.npy holds uint16 term ids, an older layout .*"
                                         r"rebuild the index$"):
        approx(arrays, old, 2, np.array([7], np.int32), np.array([1.0], np.float32), 1, 1, 1.0)


def reference_search(structures, fwd: sp.csr_matrix, terms, weights, k, query_cut, heap_factor):
    """The approximate search in plain Python on the decoded summaries (``approx._approx``'s rules: heaviest
    terms first, a block skipped when its summary score × scale × heap_factor is below the k-th score, the
    float64 summary sum in ascending term order) and the number of blocks it visited."""
    qdense = np.zeros(fwd.shape[1])
    qdense[terms] = np.asarray(weights, np.float64)
    lb, bdo, bd, ss = (structures[n] for n in ("list_blocks", "block_doc_offsets", "block_docs", "summary_scales"))
    heap = [(np.float32(0.0), INT32_MAX)] * k  # (score, doc) sentinels; heap[0] the k-th best
    seen, visited = set(), 0
    order = np.argsort(-np.asarray(weights, np.float64), kind="mergesort")
    for r in range(min(query_cut, len(terms))):
        t = int(terms[order[r]])
        if weights[order[r]] <= 0:
            continue
        for b in range(lb[t], lb[t + 1]):
            ids, values = A.decode_summary(structures, b)
            dot = 0.0
            for u, v in zip(ids.tolist(), values.tolist()):
                dot += qdense[u] * v
            if dot * np.float64(ss[b]) * heap_factor * SLACK < heap[0][0]:
                continue
            visited += 1
            for d in bd[bdo[b]:bdo[b + 1]].tolist():
                if d in seen:
                    continue
                seen.add(d)
                row = slice(fwd.indptr[d], fwd.indptr[d + 1])
                s = 0.0
                for u, v in zip(fwd.indices[row].tolist(), fwd.data[row].tolist()):
                    s += qdense[u] * v
                s = np.float32(s)
                if s > 0 and (s > heap[0][0] or (s == heap[0][0] and d < heap[0][1])):
                    heap[0] = (s, d)
                    heap.sort(key=lambda e: (e[0], -e[1]))  # worst first
    best = sorted((e for e in heap if e[1] != INT32_MAX), key=lambda e: (-e[0], e[1]))
    return [d for _, d in best], [s for s, _ in best], visited


@pytest.mark.parametrize("vocab_size", [65536, 200_000])
def test_search_matches_the_reference_on_spread_vocabularies(vocab_size):
    """Term ids spread over a large vocabulary (gaps of 0 to thousands, terms 0 and V - 1 used): the
    kernel's results equal the reference's on the decoded summaries, with blocks skipped."""
    fwd, queries = topical_corpus(11, n=600, vocab_size=400)
    rng = np.random.default_rng(12)
    spread = np.sort(rng.choice(np.arange(1, vocab_size - 1), 398, replace=False))
    spread = np.concatenate([[0], spread, [vocab_size - 1]]).astype(np.int64)
    fwd = sp.csr_matrix((fwd.data, spread[fwd.indices], fwd.indptr), shape=(fwd.shape[0], vocab_size))
    fwd.sort_indices()
    arrays = index_arrays(fwd, 64)
    arrays["forward_terms"] = arrays["forward_terms"].astype(np.uint16 if vocab_size <= 65536 else np.int32)
    n = fwd.shape[0]
    for energy in (1.0, 0.5):
        s = A.build_approx(arrays["postings_offsets"], arrays["postings_docs"], arrays["postings_impacts"],
                           arrays["forward_offsets"], arrays["forward_terms"], arrays["forward_impacts"], n,
                           n_postings=60, summary_energy=energy, centroid_fraction=0.2, threads=2)
        assert s["summary_terms"].dtype == np.uint8 and np.count_nonzero(s["summary_values"] == 0) > 0  # fillers
        skipped = 0
        for terms, weights in queries[:25]:
            terms = spread[terms].astype(np.int32)
            for k, cut, hf in ((10, 4, 0.8), (5, 12, 1.0)):
                idx, scores = approx(arrays, s, n, terms, weights, k, cut, hf, EMPTY_MASK)
                want, want_scores, visited = reference_search(s, fwd, terms, weights, k, cut, hf)
                got = idx[idx >= 0]
                assert got.tolist() == want and scores[:len(got)].tolist() == want_scores
                lb = s["list_blocks"]
                order = np.argsort(-weights.astype(np.float64), kind="mergesort")[:cut]
                skipped += sum(int(lb[t + 1] - lb[t]) for t in terms[order]) - visited
        assert skipped > 0


# -- in an index ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    m = corpus()
    return m, build(tmp_path_factory.mktemp("summaries"), "idx", m)


def test_index_damage_in_the_summaries_is_found_and_named(built, tmp_path, monkeypatch):
    """A gap raised past the vocabulary is an IntegrityError naming the damaged file (the re-hash after the
    kernel's check); a gap changed within range moves the summary score only — the returned scores are
    still the documents' exact ones."""
    _, index = built
    monkeypatch.setenv("HERON_OPEN_HASH_BYTES", "0")  # check sizes, headers and ends only at open
    gaps, so = np.asarray(index.approx["summary_terms"]), np.asarray(index.approx["summary_offsets"])
    last = [A.decode_summary(index.approx, b)[0][-1] for b in range(len(so) - 1)]
    block = int(np.argmax(last))  # its last id + 255 - its last gap >= V: past the vocabulary
    position = int(so[block + 1]) - 1
    assert last[block] - gaps[position] + 255 >= V
    damaged = damaged_copy(index, tmp_path, "terms", "approx/summary_terms.npy", position, 255)
    with pytest.raises(IntegrityError) as info:
        visit_everything(damaged)
    assert str(info.value).startswith(f"{damaged.path / 'approx/summary_terms.npy'}: checksum mismatch")
    assert "\n" not in str(info.value)

    position = int(so[1]) - 1  # the last entry of block 0: one more is still in range (terms end below V - 1)
    assert A.decode_summary(index.approx, 0)[0][-1] < V - 1
    damaged = damaged_copy(index, tmp_path, "gap", "approx/summary_terms.npy", position, lambda g: g + 1)
    terms = np.arange(0, V, 7, dtype=np.int32)
    weights = np.linspace(0.5, 2, len(terms)).astype(np.float32)
    ids, scores = damaged.search(terms, weights, k=10, mode="approx", query_cut=20, heap_factor=1.0)
    every_id, every_score = index.search(terms, weights, k=N, mode="exact")  # each document's exact score
    exact = dict(zip(every_id, every_score.tolist()))
    assert len(ids) == 10 and scores.tolist() == [exact[d] for d in ids]


def test_index_with_the_older_summary_layout_is_refused(built, tmp_path):
    _, index = built
    old = tmp_path / "old"
    shutil.copytree(index.path, old)
    rel = "approx/summary_terms.npy"
    (old / rel).chmod(0o644)
    np.save(old / rel, np.zeros(len(index.approx["summary_terms"]), np.uint16))
    reseal(old, lambda m: m["files"].update({rel: fmt.describe_file(old, rel)}))
    opened = InvertedIndex.open(old)
    with pytest.raises(HeronError, match=r"summary_terms.npy holds uint16 term ids, an older layout .*rebuild"):
        opened.search({"t1": 1.0, "t2": 0.5}, k=5, mode="approx", preset="recall95")
    with pytest.raises(HeronError, match="older layout"):
        opened.search_batch([{"t1": 1.0}], k=5, mode="approx", preset="recall95")
