"""Compressed postings (``heron.indexing.inverted.codec``): round trips against the uncompressed arrays on
random and adversarial lists, every check of a block (checksum, word range, document bounds, block
metadata), and exact / term-at-a-time search over a compressed index equal to brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_writable

from heron.errors import HeronError, IntegrityError
from heron.indexing.inverted import FORMAT_VERSION, InvertedIndex, build_inverted_index, codec
from heron.indexing.inverted import kernels as K


# -- helpers ----------------------------------------------------------------------------------------------
def lists_to_arrays(lists, dtype=np.uint8):
    """Posting lists ``[(docs, impacts), ...]`` as ``(offsets int64, docs int32, impacts)``."""
    offsets = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(d) for d, _ in lists], out=offsets[1:])
    docs = np.concatenate([np.asarray(d, np.int64) for d, _ in lists] or [np.zeros(0)]).astype(np.int32)
    impacts = np.concatenate([np.asarray(i) for _, i in lists] or [np.zeros(0)]).astype(dtype)
    return offsets, docs, impacts


def round_trip(offsets, docs, impacts, num_docs, block_size=codec.BLOCK_SIZE):
    enc = codec.encode_postings(offsets, docs, impacts, block_size)
    arrays = {"postings_offsets": offsets, **enc}
    got_docs, got_impacts = codec.decode_postings(arrays, num_docs, block_size)
    assert np.array_equal(got_docs, docs) and got_docs.dtype == np.int32
    assert np.array_equal(got_impacts, impacts) and got_impacts.dtype == impacts.dtype
    # the pruning metadata equals the plain block-max reference of the uncompressed lists
    ref = K.build_block_max(offsets, docs, impacts, block_size)
    assert np.array_equal(enc["block_offsets"], ref[0])
    assert np.array_equal(enc["block_last_doc"], ref[1]) and np.array_equal(enc["block_max"], ref[2])
    assert enc["block_words"][-1] == len(enc["postings_words"])
    assert np.array_equal(codec.decode_counts(enc["postings_counts"], len(offsets) - 1), offsets)
    derived = codec.derive_layout(offsets, enc["block_bits"], block_size)  # what an opened index computes
    assert np.array_equal(derived[0], enc["block_offsets"]) and np.array_equal(derived[1], enc["block_words"])
    return arrays


def random_lists(rng, num_terms, num_docs, max_df, dtype=np.uint8):
    top = np.iinfo(dtype).max
    lists = []
    for _ in range(num_terms):
        df = int(rng.integers(0, max_df + 1))
        docs = np.sort(rng.choice(num_docs, size=min(df, num_docs), replace=False))
        lists.append((docs, rng.integers(1, top + 1, size=len(docs))))
    return lists


# -- round trips -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("block_size", [1, 3, 128])
def test_round_trip_random(dtype, block_size):
    rng = np.random.default_rng(block_size)
    for num_docs, max_df in ((50, 50), (5000, 700), (1 << 20, 300)):
        offsets, docs, impacts = lists_to_arrays(random_lists(rng, 40, num_docs, max_df, dtype), dtype)
        round_trip(offsets, docs, impacts, num_docs, block_size)


@pytest.mark.parametrize("case", ["one", "full", "full+1", "two_full", "max_gap", "dense", "ties_u8", "top_u8",
                                  "top_u16", "mixed_widths", "empty_terms"])
def test_round_trip_adversarial(case):
    top_doc = np.iinfo(np.int32).max - 1  # the largest document index: num_docs = 2**31 - 1
    u8, u16 = np.uint8, np.uint16
    lists, dtype, num_docs = {
        "one": ([([7], [3])], u8, 8),
        "full": ([(np.arange(0, 256, 2), np.arange(1, 129))], u8, 256),
        "full+1": ([(np.arange(129) * 5, np.full(129, 9))], u8, 645),
        "two_full": ([(np.arange(256), np.arange(256) % 255 + 1)], u8, 256),
        "max_gap": ([([0, top_doc], [1, 255]), ([top_doc], [2]), ([0], [1]),
                     (np.r_[np.arange(126), top_doc - 1, top_doc], np.ones(128))], u8, top_doc + 1),
        "dense": ([(np.arange(1000), np.full(1000, 4))], u8, 1000),  # 0-bit gaps
        "ties_u8": ([(np.arange(300) * 3, np.full(300, 17)), (np.arange(300), np.full(300, 17))], u8, 900),
        "top_u8": ([(np.arange(200) * 7, np.full(200, 255)), ([5], [255])], u8, 1400),
        "top_u16": ([(np.arange(200) * 7, np.r_[np.full(199, 65535), 1]), ([5], [65535])], u16, 1400),
        "mixed_widths": ([(np.cumsum(2 ** np.arange(31)) - 1, 2 ** (np.arange(31) % 9) - (np.arange(31) % 9 == 8))],
                         u16, 2 ** 31 - 1),
        "empty_terms": ([([], []), ([3, 4], [1, 1]), ([], [])], u8, 5),
    }[case]
    offsets, docs, impacts = lists_to_arrays(lists, dtype)
    arrays = round_trip(offsets, docs, impacts, num_docs)
    if case == "dense":  # a run of consecutive documents: no gap bits, only the impacts (3 bits each)
        assert all(int(b) & 0xFF == 0 for b in arrays["block_bits"])
    if case == "max_gap":
        assert int(arrays["block_bits"][0]) & 0xFF == 31


def test_unsorted_or_duplicate_documents_are_refused():
    offsets, docs, impacts = lists_to_arrays([([1, 1], [1, 1])])
    with pytest.raises(ValueError, match="not strictly ascending"):
        codec.encode_postings(offsets, docs, impacts)


def test_pack_unpack_every_width():
    rng = np.random.default_rng(0)
    for bits in range(0, 33):
        values = rng.integers(0, 2 ** bits, size=129, dtype=np.uint64) if bits else np.zeros(129, np.uint64)
        words = np.zeros((129 * bits + 31) // 32, np.uint32)
        codec.pack(values, 129, bits, words, 0)
        out = np.zeros(129, np.uint64)
        codec.unpack_into(words, 0, 129, bits, out)
        assert np.array_equal(out, values), bits
        assert codec.bit_width(int(values.max())) <= bits


def test_pack_unpack_from_any_bit():
    rng = np.random.default_rng(5)
    for bit0 in (0, 1, 17, 31, 33):
        for bits in (1, 7, 13, 32):
            values = rng.integers(0, 2 ** bits, size=40, dtype=np.uint64)
            words = np.zeros(2 + (bit0 + 40 * bits + 31) // 32, np.uint32)
            codec.pack(values, 40, bits, words, 1, bit0)
            assert words[0] == 0 and words[-1] == 0  # nothing written outside the values' bits
            out = np.zeros(40, np.uint64)
            codec.unpack_into(words, 1, 40, bits, out, bit0)
            assert np.array_equal(out, values)


def test_posting_counts_round_trip_and_malformed_streams():
    df = np.array([0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 40, 5, 0], np.int64)
    stream = codec.encode_counts(df)
    assert stream.dtype == np.uint8 and len(stream) == 1 + 1 + 1 + 2 + 2 + 3 + 5 + 6 + 1 + 1
    assert np.array_equal(codec.decode_counts(stream, len(df)), np.r_[0, np.cumsum(df)])
    assert codec.decode_counts(stream, len(df) - 1) is None  # a byte left over
    assert codec.decode_counts(stream, len(df) + 1) is None  # one count short
    assert codec.decode_counts(stream[:-2], len(df)) is None  # truncated
    assert codec.decode_counts(np.full(7, 0xFF, np.uint8), 1) is None  # a varint that never ends
    assert codec.decode_counts(np.zeros(0, np.uint8), 0).tolist() == [0]
    with pytest.raises(ValueError, match="non-negative"):
        codec.encode_counts([3, -1])


# -- every check of a block ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoded():
    rng = np.random.default_rng(7)
    offsets, docs, impacts = lists_to_arrays(random_lists(rng, 12, 3000, 600))
    return offsets, docs, impacts, {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts)}


def _decode(arrays, num_docs=3000, verify=True):
    return codec.decode_postings(arrays, num_docs, codec.BLOCK_SIZE, root="idx", verify=verify)


def test_checksum_detects_a_flipped_bit_in_any_block(encoded):
    *_, arrays = encoded
    rng = np.random.default_rng(1)
    words, block_words = arrays["postings_words"], arrays["block_words"]
    assert len(arrays["block_bits"]) > 20
    for b in range(len(arrays["block_bits"])):
        for _ in range(2):
            damaged = words.copy()
            at = int(rng.integers(block_words[b], block_words[b + 1]))
            damaged[at] ^= np.uint32(1 << int(rng.integers(32)))
            with pytest.raises(IntegrityError, match=rf"idx/postings_words.npy: block checksum mismatch in block {b} "):
                _decode({**arrays, "postings_words": damaged})
        # a damaged checksum or width is seen too
        sums = arrays["block_checksum"].copy()
        sums[b] ^= np.uint32(1 << 5)
        with pytest.raises(IntegrityError, match=f"block checksum mismatch in block {b} "):
            _decode({**arrays, "block_checksum": sums})


def test_damaged_block_metadata_is_named(encoded):
    offsets, docs, impacts, arrays = encoded
    b = 5
    bits = arrays["block_bits"].copy()
    bits[b] += 1  # one more gap bit: the word range no longer matches
    with pytest.raises(IntegrityError, match=f"block_bits.npy: block word range .* in block {b} "):
        _decode({**arrays, "block_bits": bits})
    block_words = arrays["block_words"].copy()
    block_words[-1] += 10_000  # past the end of the words: never read out of bounds
    with pytest.raises(IntegrityError, match="block_bits.npy"):
        _decode({**arrays, "block_words": block_words}, verify=False)
    for name, match in (("block_last_doc", "block_last_doc.npy: block's last document"),
                        ("block_max", "block_max.npy: block maximum")):
        changed = arrays[name].copy()
        changed[b] ^= 1
        with pytest.raises(IntegrityError, match=f"{match} .* in block {b} "):
            _decode({**arrays, name: changed}, verify=False)
    block_offsets = arrays["block_offsets"].copy()
    block_offsets[3] += 1
    with pytest.raises(IntegrityError, match="postings_counts.npy: term's block count"):
        _decode({**arrays, "block_offsets": block_offsets})


def test_document_out_of_range_is_an_error_not_a_write(encoded):
    offsets, docs, impacts, arrays = encoded
    with pytest.raises(IntegrityError, match="postings_words.npy: decoded document index out of range"):
        _decode(arrays, num_docs=int(docs.max()))
    # a block re-encoded with a gap that runs past the corpus, checksum and metadata made consistent:
    # only the bounds check stands between it and a write past the accumulator
    bad_docs = docs.copy()
    bad_docs[offsets[1] - 1] = 10 ** 9
    forged = {"postings_offsets": offsets, **codec.encode_postings(offsets, bad_docs, impacts)}
    with pytest.raises(IntegrityError, match="decoded document index out of range"):
        _decode(forged)
    terms, weights = np.array([0], np.int32), np.array([1.0], np.float32)
    for method in ("exact", "taat"):
        with pytest.raises(IntegrityError, match="decoded document index out of range"):
            K.search_compressed(method, forged, 3000, terms, weights, 10, None, codec.BLOCK_SIZE, root="idx")
        with pytest.raises(IntegrityError, match="decoded document index out of range"):
            K.search_batch(method, forged, np.array([0, 1]), terms, weights, 10, np.zeros(0, np.int64),
                           np.zeros(0, np.int32), 1, num_docs=3000, block_size=codec.BLOCK_SIZE, root="idx")


# -- search over compressed postings ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("whole", [True, False], ids=["whole-accumulator", "windows"])
def test_compressed_search_equals_brute_force_and_uncompressed_kernels(dtype, whole, monkeypatch):
    """More than one accumulator window: MaxScore walks windows; term at a time decodes into one
    whole-collection accumulator, or (above ``WHOLE_TAAT_DOCS``, forced here) walks windows too."""
    if not whole:
        monkeypatch.setattr(K, "WHOLE_TAAT_DOCS", 0)
    assert K.accumulator_docs(K.TAAT, 70_000) == (70_000 if whole else K.WINDOW)
    rng = np.random.default_rng(11)
    num_docs, vocab = 70_000, 300  # more than one accumulator window
    matrix = sp.random(num_docs, vocab, density=0.01, format="csc", random_state=rng)
    matrix.data = rng.integers(1, np.iinfo(dtype).max + 1, matrix.nnz).astype(dtype)
    matrix.sort_indices()
    offsets, docs, impacts = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data
    block_size = 128
    arrays = {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts, block_size)}
    plain_blocks = K.build_block_max(offsets, docs, impacts, block_size)
    dense = matrix.toarray().astype(np.float64)
    q_terms, q_weights, q_indptr, scans = [], [], [0], set()
    for qi in range(12):
        size = int(rng.integers(60, 120)) if qi in (4, 9) else int(rng.integers(1, 25))
        terms = np.sort(rng.choice(vocab, size=size, replace=False)).astype(np.int32)
        # with as many postings as half the documents, term at a time scans the whole accumulator (_push_dense)
        scans.add(int(offsets[terms + 1].sum() - offsets[terms].sum()) * K.DENSE_SCAN >= num_docs)
        weights = rng.random(len(terms)).astype(np.float32) + np.float32(0.01)
        if qi % 4 == 0:
            weights[:] = 1.0  # many ties
        mask = (rng.random(num_docs) < 0.5).astype(np.uint8) if qi % 3 == 0 else None
        scores = (dense[:, terms] @ weights.astype(np.float64)).astype(np.float32)
        if mask is not None:
            scores = np.where(mask == 1, scores, 0)
        order = np.lexsort((np.arange(num_docs), -scores))[:50]
        order = order[scores[order] > 0]
        for method in ("exact", "taat"):
            for verify in (True, False):
                idx, got = K.search_compressed(method, arrays, num_docs, terms, weights, 50, mask, block_size,
                                               verify=verify)
                keep = idx >= 0
                assert np.array_equal(idx[keep], order) and np.array_equal(got[keep], scores[order])
        plain = K.search_exact(offsets, docs, impacts, *plain_blocks, num_docs, terms, weights, 50, mask)
        assert np.array_equal(plain[0], idx)
        if mask is None:
            q_terms.append(terms)
            q_weights.append(weights)
            q_indptr.append(q_indptr[-1] + len(terms))
    assert scans == {True, False}  # both ways of collecting the top-k
    for method in ("exact", "taat"):
        idx, got = K.search_batch(method, arrays, np.array(q_indptr), np.concatenate(q_terms),
                                  np.concatenate(q_weights), 50, np.zeros(0, np.int64), np.zeros(0, np.int32), 2,
                                  num_docs=num_docs, block_size=block_size)
        for qi in range(len(q_terms)):
            one = K.search_compressed(method, arrays, num_docs, q_terms[qi], q_weights[qi], 50, None, block_size)
            assert np.array_equal(idx[qi], one[0]) and np.array_equal(got[qi], one[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_single_window_search_decodes_into_the_accumulator_equal_to_brute_force(dtype):
    """A collection that fits one accumulator window is scored by decoding straight into it
    (``codec.score_query``): same answers as brute force and the uncompressed kernels, every check on."""
    rng = np.random.default_rng(12)
    num_docs, vocab = 3000, 80  # < K.WINDOW
    matrix = sp.random(num_docs, vocab, density=0.05, format="csc", random_state=rng)
    matrix.data = rng.integers(1, np.iinfo(dtype).max + 1, matrix.nnz).astype(dtype)
    matrix.sort_indices()
    offsets, docs, impacts = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data
    arrays = {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts)}
    assert any(int(b) & 0xFF and (int(b) >> 8) for b in arrays["block_bits"])  # gaps and impacts both packed
    plain_blocks = K.build_block_max(offsets, docs, impacts, codec.BLOCK_SIZE)
    dense = matrix.toarray().astype(np.float64)
    for qi in range(8):
        terms = np.sort(rng.choice(vocab, size=int(rng.integers(1, 20)), replace=False)).astype(np.int32)
        weights = np.ones(len(terms), np.float32) if qi % 3 == 0 else rng.random(len(terms)).astype(np.float32)
        mask = (rng.random(num_docs) < 0.5).astype(np.uint8) if qi % 2 else None
        scores = (dense[:, terms] @ weights.astype(np.float64)).astype(np.float32)
        if mask is not None:
            scores = np.where(mask == 1, scores, 0)
        order = np.lexsort((np.arange(num_docs), -scores))[:30]
        order = order[scores[order] > 0]
        plain = K.search_exact(offsets, docs, impacts, *plain_blocks, num_docs, terms, weights, 30, mask)
        for method in ("exact", "taat"):
            idx, got = K.search_compressed(method, arrays, num_docs, terms, weights, 30, mask, codec.BLOCK_SIZE)
            keep = idx >= 0
            assert np.array_equal(idx[keep], order) and np.array_equal(got[keep], scores[order])
            assert np.array_equal(idx, plain[0]) and np.array_equal(got, plain[1])
    # a damaged block stops the query with the file named, and leaves the scratch clean for the next one
    terms, weights = np.arange(vocab, dtype=np.int32), np.ones(vocab, np.float32)
    good = K.search_compressed("exact", arrays, num_docs, terms, weights, 10, None, codec.BLOCK_SIZE)
    b = len(arrays["block_bits"]) - 1
    words = arrays["postings_words"].copy()
    words[arrays["block_words"][b]] ^= np.uint32(1)
    last, top = arrays["block_last_doc"].copy(), arrays["block_max"].copy()
    last[b] += 1
    top[b] -= 1
    for damaged, match in (({"postings_words": words}, f"postings_words.npy: block checksum mismatch in block {b} "),
                           ({"block_last_doc": last}, f"block_last_doc.npy: block's last document .* in block {b} "),
                           ({"block_max": top}, f"block_max.npy: block maximum .* in block {b} ")):
        for method in ("exact", "taat"):
            with pytest.raises(IntegrityError, match=match):
                K.search_compressed(method, {**arrays, **damaged}, num_docs, terms, weights, 10, None,
                                    codec.BLOCK_SIZE, root="idx")
            again = K.search_compressed(method, arrays, num_docs, terms, weights, 10, None, codec.BLOCK_SIZE)
            assert np.array_equal(again[0], good[0]) and np.array_equal(again[1], good[1])


def test_a_collection_of_exactly_one_window_reaches_its_last_document():
    num_docs = K.WINDOW  # the largest collection scored by decoding into the accumulator
    lists = [([0, 5, num_docs - 1], [3, 1, 7]), ([num_docs - 2, num_docs - 1], [2, 2]), (np.arange(0, num_docs, 97),
                                                                                         np.full(676, 1))]
    offsets, docs, impacts = lists_to_arrays(lists)
    arrays = {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts)}
    terms, weights = np.arange(3, dtype=np.int32), np.array([1.0, 1.5, 0.25], np.float32)
    for method in ("exact", "taat"):
        idx, scores = K.search_compressed(method, arrays, num_docs, terms, weights, 3, None, codec.BLOCK_SIZE)
        assert idx.tolist() == [num_docs - 1, 0, num_docs - 2]
        assert scores.tolist() == [10.0, 3.25, 3.0]


def test_dense_scan_returns_only_positive_scores_and_fewer_than_k():
    """A query with more postings than documents collects its top-k by scanning the whole accumulator
    (_push_dense): documents whose postings all have impact 0 and documents past the groups of 16 are
    handled as by the bitset walk, and k larger than the matching documents returns only those."""
    num_docs = 203  # not a multiple of 16
    lists = [(np.arange(0, num_docs, 2), np.where(np.arange(0, num_docs, 2) % 3 == 0, 0, 2)),
             (np.arange(num_docs - 120, num_docs), np.full(120, 1)), ([7, 202], [0, 0])]
    offsets, docs, impacts = lists_to_arrays(lists)
    assert int(offsets[-1]) * K.DENSE_SCAN >= num_docs
    arrays = {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts)}
    terms, weights = np.arange(3, dtype=np.int32), np.array([0.5, 1.0, 4.0], np.float32)
    dense = np.zeros(num_docs)
    for (d, v), w in zip(lists, weights):
        dense[np.asarray(d)] += float(w) * np.asarray(v, np.float64)
    for mask in (None, (np.arange(num_docs) % 5 != 0).astype(np.uint8)):
        scores = dense if mask is None else np.where(mask == 1, dense, 0)
        order = np.lexsort((np.arange(num_docs), -scores))
        order = order[scores[order] > 0]
        for k in (5, 500):
            idx, got = K.search_compressed("taat", arrays, num_docs, terms, weights, k, mask, codec.BLOCK_SIZE)
            keep = idx >= 0
            assert np.array_equal(idx[keep], order[:k]) and np.array_equal(got[keep], scores[order[:k]])
            assert keep.sum() == min(k, len(order)) < num_docs


def test_buffered_top_k_of_the_dense_scan_equals_the_heap_and_brute_force():
    """From BUFFERED_K results on, the one-scan top-k selects through a buffer of keys (partitioned each time
    it fills) instead of a heap: same documents, order and scores as brute force and the heap-based
    uncompressed kernels, with heavy ties (impacts 1-3, equal weights), masks, and k up to every document."""
    rng = np.random.default_rng(21)
    num_docs, vocab = 5000, 40
    matrix = sp.random(num_docs, vocab, density=0.2, format="csc", random_state=rng)
    matrix.data = rng.integers(1, 4, matrix.nnz).astype(np.uint8)
    matrix.sort_indices()
    offsets, docs, impacts = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data
    arrays = {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts)}
    plain_blocks = K.build_block_max(offsets, docs, impacts, codec.BLOCK_SIZE)
    dense = matrix.toarray().astype(np.float64)
    for qi, k in enumerate((K.BUFFERED_K, 300, 1000, 4000, num_docs)):
        terms = np.sort(rng.choice(vocab, size=12, replace=False)).astype(np.int32)
        assert int(offsets[terms + 1].sum() - offsets[terms].sum()) * K.DENSE_SCAN >= num_docs
        weights = np.ones(len(terms), np.float32) if qi % 2 == 0 else rng.random(len(terms)).astype(np.float32)
        for mask in (None, (rng.random(num_docs) < 0.7).astype(np.uint8)):
            scores = (dense[:, terms] @ weights.astype(np.float64)).astype(np.float32)
            if mask is not None:
                scores = np.where(mask == 1, scores, 0)
            order = np.lexsort((np.arange(num_docs), -scores))[:k]
            order = order[scores[order] > 0]
            plain = K.search_exact(offsets, docs, impacts, *plain_blocks, num_docs, terms, weights, k, mask)
            for method in ("exact", "taat"):
                idx, got = K.search_compressed(method, arrays, num_docs, terms, weights, k, mask, codec.BLOCK_SIZE)
                keep = idx >= 0
                assert np.array_equal(idx[keep], order) and np.array_equal(got[keep], scores[order])
                assert np.array_equal(idx, plain[0]) and np.array_equal(got, plain[1])
                if mask is None:  # the batch kernels (two threads) select the same way
                    b_idx, b_got = K.search_batch(method, arrays, np.array([0, len(terms), 2 * len(terms)]),
                                                  np.concatenate([terms, terms]), np.concatenate([weights, weights]),
                                                  k, np.zeros(0, np.int64), np.zeros(0, np.int32), 2,
                                                  num_docs=num_docs, block_size=codec.BLOCK_SIZE)
                    assert all(np.array_equal(b_idx[r], idx) and np.array_equal(b_got[r], got) for r in (0, 1))


def test_an_exception_part_way_leaves_no_partial_scores_in_the_reused_scratch(monkeypatch):
    """The single-query kernels reuse a per-thread accumulator that they leave zeroed; if the compiled call
    raises part-way (say a MemoryError after scoring), the wrapper clears it, so the next query is not summed
    on top of the partial scores."""
    num_docs = 3000
    lists = [(np.arange(0, num_docs, 3), np.full(1000, 2)), (np.arange(1, num_docs, 2), np.full(1500, 1))]
    offsets, docs, impacts = lists_to_arrays(lists)
    arrays = {"postings_offsets": offsets, **codec.encode_postings(offsets, docs, impacts)}
    terms, weights = np.arange(2, dtype=np.int32), np.array([1.0, 0.5], np.float32)
    good = K.search_compressed("taat", arrays, num_docs, terms, weights, 10, None, codec.BLOCK_SIZE)
    real = K._compressed_query

    def fails_after_scoring(*args):
        assert args[24].shape[0] >= num_docs  # the accumulator and its bitset, by position
        args[24][:] = 7.0
        args[25][:] = ~np.uint64(0)
        raise MemoryError("simulated")

    monkeypatch.setattr(K, "_compressed_query", fails_after_scoring)
    with pytest.raises(MemoryError):
        K.search_compressed("taat", arrays, num_docs, terms, weights, 10, None, codec.BLOCK_SIZE)
    monkeypatch.setattr(K, "_compressed_query", real)
    again = K.search_compressed("taat", arrays, num_docs, terms, weights, 10, None, codec.BLOCK_SIZE)
    assert np.array_equal(again[0], good[0]) and np.array_equal(again[1], good[1])


# -- the index: no forward index by default, rows decoded from postings, old versions refused ------------------
def _build(tmp_path, name, matrix, **kw):
    ids = [f"d{i}" for i in range(matrix.shape[0])]
    return build_inverted_index([(ids, matrix)], tmp_path / name, vocab=[f"t{i}" for i in range(matrix.shape[1])],
                                encoder={"type": "test"}, progress=False, **kw)


def test_index_rows_without_forward_index_equal_the_stored_forward_index(tmp_path):
    rng = np.random.default_rng(3)
    matrix = sp.random(400, 120, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    plain = InvertedIndex.open(_build(tmp_path, "plain", matrix))
    with_approx = InvertedIndex.open(_build(tmp_path, "approx", matrix, approx={}))
    assert not plain.has_forward_index and with_approx.has_forward_index
    assert not any(name.startswith(("forward_", "postings_docs", "postings_impacts"))
                   for name in plain.manifest["files"])
    assert plain.manifest["format_version"] == FORMAT_VERSION == 3
    assert plain.manifest["postings"]["codec"] == codec.CODEC_NAME and plain.block_size == codec.BLOCK_SIZE
    a, b = plain.forward_matrix(), with_approx.forward_matrix()
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)
    positions = [0, 17, 399, 17]
    assert (plain.vectors(positions) != with_approx.vectors(positions)).nnz == 0
    rows = list(plain.iter_rows())
    assert len(rows) == 400 and all(np.array_equal(t, b.indices[b.indptr[i]:b.indptr[i + 1]])
                                    for i, (t, _) in enumerate(rows))
    assert np.array_equal(plain.row(17)[0], with_approx.row(17)[0])
    assert 0 < plain.bytes_per_posting == with_approx.bytes_per_posting  # the exact-search structures only
    assert {"forward_terms.npy", "forward_impacts.npy", "forward_offsets.npy"} <= set(with_approx.manifest["files"])
    queries = sp.random(6, 120, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    for mode in ("exact", "taat"):
        x, y = plain.search_batch(queries, k=10, mode=mode), with_approx.search_batch(queries, k=10, mode=mode)
        assert x[0] == y[0] and all(np.array_equal(s, t) for s, t in zip(x[1], y[1]))


@pytest.mark.parametrize("old", [1, 2])
def test_older_format_versions_are_refused_with_a_rebuild_hint(tmp_path, old):
    rng = np.random.default_rng(4)
    path = make_writable(_build(tmp_path, "idx", sp.random(20, 10, density=0.3, format="csr", random_state=rng)))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = old
    manifest.pop("checksum", None)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HeronError, match=rf"format version {old} is not supported \(this heron reads version 3; "
                                         r"rebuild it with `heron build-index"):
        InvertedIndex.open(path)
