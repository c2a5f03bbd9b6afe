"""Approximate-search summaries stored by term per chunk of a posting list: for each of a chunk's summary
terms, the (block, value) pairs of the blocks whose summary holds it. Layout, lookups in the kernel, bounds.

The search over stored summaries is compared with a plain-Python re-implementation of the search that
reads the decoded summaries (same visited blocks, same results), and hand-made summaries with awkward
term ids (0, 255, 65,535, ids beyond 65,535, an empty summary) decide a block visit whose outcome flips if
a single term is looked up wrongly.
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

AWKWARD = [[0], [255], [256], [510], [511], [0, 255, 511, 1021, 1022], [65535], [1, 65535], [],
           [3, 259, 260, 515, 65280, 65534]]


def test_summaries_stored_per_chunk_round_trip():
    """Summaries of three lists (one with no blocks) stored by term per chunk and read back block by block;
    each chunk's terms ascending, each term's blocks ascending, one pair per summary entry."""
    rng = np.random.default_rng(3)
    lb = np.array([0, 4, 4, 10, 10], np.int64)  # lists 0..3 of a 65,536-term vocabulary, padded below
    lb = np.concatenate([lb, np.full(65536 - 4, 10, np.int64)])
    summaries = [(t, rng.integers(1, 256, len(t)).tolist()) for t in AWKWARD]
    s = A.transpose_summaries(lb, summaries)
    assert s["component_terms"].dtype == np.uint16 and s["component_ends"].dtype == np.uint16
    assert s["pair_blocks"].dtype == np.uint8 and s["pair_values"].dtype == np.uint8
    assert s["list_chunks"][:5].tolist() == [0, 1, 1, 2, 2] and s["chunk_blocks"].tolist() == [0, 4, 10]
    s = {**s, "list_blocks": lb}
    for b, (terms, values) in enumerate(summaries):
        got_terms, got_values = A.decode_summary(s, b)
        assert got_terms.tolist() == terms and got_values.tolist() == values
    cc, ct, cp = s["chunk_components"], s["component_terms"].astype(np.int64), s["chunk_pairs"]
    assert cc[1] == len({t for b in range(4) for t in summaries[b][0]})
    assert cp[-1] == len(s["pair_values"]) == sum(len(t) for t, _ in summaries)
    for c in (0, 1):
        assert np.all(np.diff(ct[cc[c]:cc[c + 1]]) > 0)
        ends = s["component_ends"][cc[c]:cc[c + 1]].astype(np.int64)
        assert ends[-1] == cp[c + 1] - cp[c]
        for a, z in zip(np.concatenate([[0], ends[:-1]]), ends):
            assert np.all(np.diff(s["pair_blocks"][cp[c] + a:cp[c] + z].astype(np.int64)) > 0)
    wide = A.transpose_summaries(np.array([0, 1] + [1] * 199_999, np.int64), [([0, 70_000, 199_999], [1, 2, 3])])
    assert wide["component_terms"].dtype == np.int32
    assert wide["component_terms"].tolist() == [0, 70_000, 199_999]
    with pytest.raises(ValueError, match=r"summary term ids must lie in \[0, 3\)"):
        A.transpose_summaries(np.array([0, 1, 1, 1]), [([0, 3], [1, 1])])


def test_long_lists_are_cut_into_chunks():
    """A list of 600 blocks is cut at 256 blocks; one whose summaries hold more than 65,535 entries in all is
    cut before the block that would overflow; a single summary of 70,000 entries (an int32 vocabulary) is a
    chunk of its own and widens the pair ends to uint32. Every block reads back the same."""
    rng = np.random.default_rng(5)
    many = [(np.sort(rng.choice(1000, 3, replace=False)).tolist(), [1, 2, 3]) for _ in range(600)]
    s = A.transpose_summaries(np.array([0, 600] + [600] * 999, np.int64), many)
    assert s["chunk_blocks"].tolist() == [0, 256, 512, 600] and s["list_chunks"][:2].tolist() == [0, 3]
    assert s["pair_blocks"].max() == 255
    big = [(list(range(t, 30_000, 2)), [7] * len(range(t, 30_000, 2))) for t in (0, 1, 0, 1, 0)]  # 15k each
    lb = np.array([0, 5] + [5] * 29_999, np.int64)
    s = {**A.transpose_summaries(lb, big), "list_blocks": lb}
    assert s["chunk_blocks"].tolist() == [0, 4, 5] and s["component_ends"].dtype == np.uint16
    for b, (terms, _) in enumerate(big):
        assert A.decode_summary(s, b)[0].tolist() == terms
    huge = [(list(range(70_000)), [9] * 70_000), ([5], [1])]
    lb = np.array([0, 2] + [2] * 69_999, np.int64)
    s = {**A.transpose_summaries(lb, huge), "list_blocks": lb}
    assert s["chunk_blocks"].tolist() == [0, 1, 2] and s["component_ends"].dtype == np.uint32
    assert A.decode_summary(s, 0)[0].tolist() == list(range(70_000)) and A.decode_summary(s, 1)[0].tolist() == [5]


def hand_made(vocab_size: int, summary: list[int], list_term: int):
    """Two documents in two blocks of ``list_term``'s list: block 0 holds document 0 (impact 10 on the list
    term), block 1 document 1 (impact 20) and carries ``summary`` (values 1, 2, ...)."""
    fwd = sp.csr_matrix((np.array([10, 20], np.uint8), (np.array([0, 1]), np.array([list_term, list_term]))),
                        shape=(2, vocab_size))
    lb = np.zeros(vocab_size + 1, np.int64)
    lb[list_term + 1:] = 2
    stored = A.transpose_summaries(lb, [([list_term], [10]), (summary, list(range(1, len(summary) + 1)))])
    structures = {"list_blocks": lb, "block_doc_offsets": np.array([0, 1, 2], np.int64),
                  "block_docs": np.array([0, 1], np.int32), "summary_scales": np.ones(2, np.float32), **stored}
    arrays = {"forward_offsets": fwd.indptr.astype(np.int64),
              "forward_terms": fwd.indices.astype(np.uint16 if vocab_size <= 65536 else np.int32),
              "forward_impacts": fwd.data}
    return arrays, structures


@pytest.mark.parametrize("vocab_size, summary", [(65536, s) for s in AWKWARD] +
                         [(200_001, [0, 70_000, 200_000]), (200_001, [199_999, 200_000])])
def test_kernel_scores_every_term_of_a_summary(vocab_size, summary):
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


def test_corrupt_summaries_are_an_integrity_error_never_an_out_of_range_read():
    arrays, structures = hand_made(65536, [1, 65535], 7)
    terms, weights = np.array([1, 7, 65535], np.int32), np.array([1.0, 5.0, 0.5], np.float32)
    approx(arrays, structures, 2, terms, weights, 1, 1, 1.0)
    t = structures["component_terms"].tolist()
    assert t == [1, 7, 65535]  # list 7's one chunk: 1 (block 1), 7 (block 0), 65535 (block 1)
    bad = structures["pair_blocks"].copy()
    bad[0] = 2  # a block past the chunk's two
    with pytest.raises(IntegrityError, match=r"approx/pair_blocks.npy: the summaries of posting list 7 hold a "
                                             r"block or pair offset out of range"):
        approx(arrays, {**structures, "pair_blocks": bad}, 2, terms, weights, 1, 1, 1.0)
    for ends in ([1, 2, 4], [1, 9, 3], [1, 2, 2]):  # past the chunk's pairs, then short of them
        with pytest.raises(IntegrityError, match="out of range"):
            approx(arrays, {**structures, "component_ends": np.array(ends, np.uint16)}, 2, terms, weights, 1, 1,
                   1.0)
    for name, position, value in (("chunk_components", 1, 2), ("chunk_blocks", 1, 5), ("list_blocks", 8, 1),
                                  ("list_chunks", 8, 0)):
        damaged = structures[name].copy()
        damaged[position] = value
        if name == "list_chunks":  # list 7 has no chunk left, list 8 one: nothing visited, nothing read
            idx, _ = approx(arrays, {**structures, name: damaged}, 2, terms, weights, 1, 1, 1.0)
            assert idx.tolist() == [-1]
            continue
        # fewer terms or more blocks than the chunk holds (the ends checked at search), the chunk's blocks
        # beyond its list's (checked by the kernel)
        with pytest.raises(IntegrityError, match=rf"approx/{'pair_blocks' if name == 'list_blocks' else name}.npy"
                                                 r": .*(out of range|corrupt file)"):
            approx(arrays, {**structures, name: damaged}, 2, terms, weights, 1, 1, 1.0)
    with pytest.raises(IntegrityError, match=r"approx/pair_values.npy: 2 entries, not 3 \(corrupt file\)"):
        approx(arrays, {**structures, "pair_values": structures["pair_values"][:-1]}, 2, terms, weights, 1, 1, 1.0)
    with pytest.raises(IntegrityError, match=r"approx/pair_blocks.npy: holds uint16, not uint8"):
        approx(arrays, {**structures, "pair_blocks": structures["pair_blocks"].astype(np.uint16)}, 2, terms,
               weights, 1, 1, 1.0)
    # a term id changed in range or past the vocabulary is only compared, never used as an index: the
    # visited blocks may change, the scores are still the documents' exact ones
    for damaged in ([1, 7, 65534], [1, 7, 9], [1, 50_000, 65535]):
        idx, scores = approx(arrays, {**structures, "component_terms": np.array(damaged, np.uint16)}, 2, terms,
                             weights, 2, 1, 1.0)
        assert sorted(zip(idx.tolist(), scores.tolist())) == [(0, 50.0), (1, 100.0)]


def test_old_layout_is_refused_with_a_rebuild_error():
    arrays, structures = hand_made(65536, [1, 65535], 7)
    old = {name: structures[name] for name in ("list_blocks", "block_doc_offsets", "block_docs", "summary_scales")}
    old.update(summary_offsets=np.array([0, 1, 3]), summary_terms=np.array([7, 1, 255], np.uint8),
               summary_values=np.array([10, 1, 2], np.uint8))
    with pytest.raises(HeronError, match=r"^approx/summary_terms.npy: an older layout .*rebuild the index$"):
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
    """Term ids spread over a large vocabulary (terms 0 and V - 1 used): the kernel's results equal the
    reference's on the decoded summaries, with blocks skipped."""
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
        assert s["component_terms"].dtype == (np.uint16 if vocab_size <= 65536 else np.int32)
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
    """A pair's block raised past its list's blocks is an IntegrityError naming the damaged file (the re-hash
    after the kernel's check); a summary value changed within range moves a summary score only — the
    returned scores are still the documents' exact ones."""
    _, index = built
    monkeypatch.setenv("HERON_OPEN_HASH_BYTES", "0")  # check sizes, headers and ends only at open
    assert index.approx["pair_blocks"].dtype == np.uint8
    damaged = damaged_copy(index, tmp_path, "blocks", "approx/pair_blocks.npy", 0, 255)
    with pytest.raises(IntegrityError) as info:
        visit_everything(damaged)
    assert str(info.value).startswith(f"{damaged.path / 'approx/pair_blocks.npy'}: checksum mismatch")
    assert "\n" not in str(info.value)

    damaged = damaged_copy(index, tmp_path, "value", "approx/pair_values.npy", 3, lambda v: 255 - v)
    terms = np.arange(0, V, 7, dtype=np.int32)
    weights = np.linspace(0.5, 2, len(terms)).astype(np.float32)
    ids, scores = damaged.search(terms, weights, k=10, mode="approx", query_cut=20, heap_factor=1.0)
    every_id, every_score = index.search(terms, weights, k=N, mode="exact")  # each document's exact score
    exact = dict(zip(every_id, every_score.tolist()))
    assert len(ids) == 10 and scores.tolist() == [exact[d] for d in ids]


def test_index_with_the_older_summary_layout_is_refused(built, tmp_path):
    """An index written before the summaries were stored per list (per-block one-byte term gaps)."""
    _, index = built
    old = tmp_path / "old"
    shutil.copytree(index.path, old)
    new_names = ("list_chunks", "chunk_blocks", "chunk_components", "chunk_pairs", "component_terms",
                 "component_ends", "pair_blocks", "pair_values")
    for name in new_names:
        (old / fmt.APPROX_DIR / f"{name}.npy").unlink()
    blocks = len(index.approx["summary_scales"])
    np.save(old / "approx/summary_offsets.npy", np.arange(blocks + 1, dtype=np.int64))
    np.save(old / "approx/summary_terms.npy", np.ones(blocks, np.uint8))
    np.save(old / "approx/summary_values.npy", np.ones(blocks, np.uint8))

    def as_old(manifest):
        for name in new_names:
            del manifest["files"][f"approx/{name}.npy"]
        for name in ("summary_offsets", "summary_terms", "summary_values"):
            manifest["files"][f"approx/{name}.npy"] = fmt.describe_file(old, f"approx/{name}.npy")
        manifest["approx"]["arrays"] = sorted(["list_blocks", "block_doc_offsets", "block_docs", "summary_scales",
                                               "summary_offsets", "summary_terms", "summary_values"])

    reseal(old, as_old)
    opened = InvertedIndex.open(old)
    with pytest.raises(HeronError, match=r"summary_terms.npy: an older layout .*rebuild the index$"):
        opened.search({"t1": 1.0, "t2": 0.5}, k=5, mode="approx", preset="recall95")
    with pytest.raises(HeronError, match="older layout"):
        opened.search_batch([{"t1": 1.0}], k=5, mode="approx", preset="recall95")
