"""Exact search over several inverted indexes at once — the segments of a segmented index — in one compiled
call per group of queries, sharing one top-k heap (and so one pruning threshold) across the segments.

The segments are searched one after the other in their (global) order by the per-query kernel of
:mod:`heron.indexing.inverted.kernels` (``_compressed_query``: the same decoding, checks and MaxScore /
term-at-a-time scoring as a single index). The heap is *not* reset between segments: a segment starts with the
k-th best score of the segments before it as its threshold, as a single index over all their documents would at
that point (Lucene passes the minimum competitive score from segment to segment the same way).

**Ties.** The kernels rank by score, then by the lower document index, and admit a document only when its
score is strictly above the heap's k-th: documents arrive in ascending order, so an equal score never displaces
an earlier document. Across segments that holds too — every document of a later segment comes after every
document of an earlier one — provided the heap compares entries of different segments by global position. After
each segment the heap's entries of that segment are therefore renamed to ``global position - total`` (negative,
below every local index of the next segment, in global order among themselves); the heap's ``worse`` order then
is the global order, and the result equals one index over all documents (same ids, scores, tie order).

**Filters.** A segment's ``mask`` (uint8 over its documents; empty: none) drops documents before they reach
the heap: the live documents of a segment with deletions (built once per snapshot, not per query), and/or an
allow-list. No over-fetching, no second pass.

Costs and measurements: docs/LIFECYCLE.md ("Measurements").
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from heron.indexing.inverted import codec, kernels
from heron.indexing.inverted.topk import INT32_MAX, heap_finish, heap_reset, outputs, readonly, run_groups, scratch

#: the arrays of a segment, in the order of the table's columns: the compressed postings
#: (:func:`codec.compressed_arrays`), the document mask
_COLUMNS = ("po", "bo", "bl", "bm", "bw", "bb", "bc", "words", "mask")


class SegmentArrays:
    """The compressed-posting arrays of several inverted indexes (same vocabulary, block size and impact type),
    given to the compiled search as a table of addresses and lengths (``int64[segments, columns]``), with each
    segment's first global position (``bases``) and document ``masks`` (uint8; empty: every document may be
    returned). Built once per snapshot; the arrays (memory maps) stay referenced here, so the addresses stay
    valid as long as this object lives.

    (A table of addresses rather than numba typed lists: building typed lists from Python compiles their
    methods in every process — seconds before a first search — and a tuple of arrays compiles the search once
    per number of segments.)"""

    def __init__(self, parts: list, masks: list[np.ndarray | None]):
        if not parts:
            raise ValueError("no segments")
        self.block_size = int(parts[0].block_size)
        self.vocab_size = int(parts[0].vocab_size)
        self.impact = np.dtype(parts[0].arrays["block_max"].dtype)
        self.arrays: list[tuple[np.ndarray, ...]] = []
        for part in parts:
            if int(part.block_size) != self.block_size or int(part.vocab_size) != self.vocab_size:
                raise ValueError(f"{part.path}: another block size or vocabulary than the first segment")
            arrays = codec.compressed_arrays(part.arrays)
            if arrays[3].dtype != self.impact:
                raise ValueError(f"{part.path}: impacts of another type than the first segment")
            if len(arrays[0]) != self.vocab_size + 1:
                raise ValueError(f"{part.path}: {len(arrays[0]) - 1} posting lists for {self.vocab_size} terms")
            self.arrays.append(arrays)
        self.num_docs = np.array([int(p.num_docs) for p in parts], dtype=np.int64)
        self.bases = np.concatenate([[0], np.cumsum(self.num_docs)[:-1]]).astype(np.int64)
        self.total = int(self.num_docs.sum())
        if self.total >= INT32_MAX:
            raise ValueError(f"{self.total} documents: more than int32 positions")
        self.table = self.with_masks(masks)

    def with_masks(self, masks: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The ``(addresses, lengths, arrays)`` table of the segments with document ``masks`` (per segment: a
        bool / uint8 array over its documents, or None); keep the returned tuple while searching with it."""
        held = []
        addresses = np.zeros((len(self.arrays), len(_COLUMNS)), np.int64)
        lengths = np.zeros((len(self.arrays), len(_COLUMNS)), np.int64)
        for s, (arrays, n, mask) in enumerate(zip(self.arrays, self.num_docs.tolist(), masks)):
            if mask is None:
                mask = np.zeros(0, np.uint8)
            else:
                mask = np.ascontiguousarray(mask)
                if mask.shape != (n,):
                    raise ValueError(f"a mask of {mask.shape} for a segment of {n} documents")
                mask = np.ascontiguousarray(mask.view(np.uint8) if mask.dtype == np.bool_ else mask, np.uint8)
            for c, array in enumerate(arrays + (mask,)):
                held.append(array)
                lengths[s, c] = len(array)
                addresses[s, c] = array.ctypes.data if len(array) else 0
        return addresses, lengths, held


@intrinsic
def _pointer(typingctx, address):
    """The int64 ``address`` as a void pointer (for :func:`numba.carray`)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@intrinsic
def _frozen(typingctx, array):
    """``array`` typed read-only (the same data model): the kernels are then the specialisations a single index
    already compiled (and cached), not a second set."""
    if not isinstance(array, types.Array) or array.mutable is False:
        return None
    frozen = array.copy(readonly=True)

    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, frozen, args[0])

    return frozen(array), codegen


@njit(cache=True, nogil=True, inline="always")
def _column(addresses, lengths, s, c, dtype):
    """Column ``c`` of segment ``s`` as a read-only array of ``dtype`` (an empty one for a zero length)."""
    return _frozen(carray(_pointer(addresses[s, c] if lengths[s, c] > 0 else 0), lengths[s, c], dtype))


@njit(cache=True, nogil=True)
def _needs(addresses, lengths, q_indptr, q_terms, g, groups):
    """The largest decoded scratch (postings, blocks) one query of group ``g`` needs in any segment."""
    most_p = 1
    most_b = 1
    for s in range(addresses.shape[0]):
        po = _column(addresses, lengths, s, 0, np.int64)
        bo = _column(addresses, lengths, s, 1, np.int64)
        for q in range(g, q_indptr.shape[0] - 1, groups):
            p = 0
            b = 0
            for j in range(q_indptr[q], q_indptr[q + 1]):
                t = q_terms[j]
                p += po[t + 1] - po[t]
                b += bo[t + 1] - bo[t]
            most_p = max(most_p, p)
            most_b = max(most_b, b)
    return most_p, most_b


@njit(cache=True, nogil=True)
def _group(addresses, lengths, num_docs, bases, total, block_size, verify, method, q_indptr, q_terms, q_weights, g,
           groups, window, lpd, lpi, lbl, lbm, wacc, wbits, cand_d, cand_s, wcum, out_idx, out_scores, err,
           failed):
    """Queries ``g, g + groups, …``: each over every segment in order with one heap (module docstring); the
    result rows hold global positions (``bases[s] + local``). Stops at the first failed check: ``err`` set,
    ``failed[0]`` the segment."""
    nq = q_indptr.shape[0] - 1
    kk = min(out_idx.shape[1], total)
    longest = 0
    for q in range(g, nq, groups):
        longest = max(longest, q_indptr[q + 1] - q_indptr[q])
    lpo = np.zeros(longest + 1, np.int64)
    lbo = np.zeros(longest + 1, np.int64)
    lterms = np.arange(longest).astype(np.int32)
    lt = np.empty(longest, np.int32)
    lw = np.empty(longest, np.float32)
    hs = np.empty(kk, np.float32)
    hd = np.empty(kk, np.int32)
    impact = lbm.dtype
    for q in range(g, nq, groups):
        heap_reset(hs, hd)
        if kk > 0:
            for s in range(addresses.shape[0]):
                po = _column(addresses, lengths, s, 0, np.int64)
                n = 0  # the query's terms with postings in this segment
                for j in range(q_indptr[q], q_indptr[q + 1]):
                    t = q_terms[j]
                    if po[t + 1] > po[t]:
                        lt[n] = t
                        lw[n] = q_weights[j]
                        n += 1
                if n == 0:
                    continue
                if not kernels._compressed_query(
                        po, _column(addresses, lengths, s, 1, np.int64), _column(addresses, lengths, s, 2, np.int32),
                        _column(addresses, lengths, s, 3, impact), _column(addresses, lengths, s, 4, np.int64),
                        _column(addresses, lengths, s, 5, np.uint16), _column(addresses, lengths, s, 6, np.uint32),
                        _column(addresses, lengths, s, 7, np.uint32),
                        block_size, verify, method, num_docs[s], _frozen(lt), _frozen(lw), np.int64(0), n,
                        carray(_pointer(addresses[s, 8]), lengths[s, 8], np.uint8), lpo, lpd, lpi, lbo, lbl, lbm,
                        lterms, wacc, wbits, cand_d, cand_s, wcum, hs, hd, window, err):
                    failed[0] = s
                    return
                shift = bases[s] - total  # this segment's entries: global position - total (< 0)
                for i in range(kk):
                    if hd[i] >= 0 and hd[i] != INT32_MAX:
                        hd[i] = np.int32(hd[i] + shift)
        heap_finish(hs, hd, out_idx, out_scores, q)
        for i in range(out_idx.shape[1]):
            if out_scores[q, i] != -np.inf:
                out_idx[q, i] += total


def search_batch(segments: SegmentArrays, masks, method: str, q_indptr, q_terms, q_weights, k: int, threads: int = 1,
                 verify: bool = True, roots=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (``method`` ``"exact"`` or ``"taat"``) of many queries over every segment:
    ``(positions int32[Q, k], scores float32[Q, k])`` — global positions (segment base + local index, -1
    padding) and impact-scale scores (-inf padding). Query ``q`` is ``q_terms[q_indptr[q]:q_indptr[q+1]]``
    (int32 term ids, ascending and unique) with its float32 weights. ``masks``: a table from
    :meth:`SegmentArrays.with_masks` (or None: ``segments.table``, the masks given at construction). A failed
    block check raises the IntegrityError naming the file under ``roots[segment]``."""
    if method not in ("exact", "taat"):
        raise ValueError(f"method must be 'exact' or 'taat', not {method!r}")
    q_indptr = readonly(q_indptr, np.int64)
    q_terms = readonly(q_terms, np.int32)
    q_weights = readonly(q_weights, np.float32)
    nq, k = len(q_indptr) - 1, int(k)
    if nq < 0 or q_indptr[0] != 0 or q_indptr[-1] != len(q_terms) or len(q_weights) != len(q_terms):
        raise ValueError("q_indptr does not describe q_terms")
    if len(q_terms) and (q_terms.min() < 0 or q_terms.max() >= segments.vocab_size):
        raise ValueError(f"query term ids must lie in [0, {segments.vocab_size})")
    out_idx, out_scores = outputs(max(nq, 0), max(k, 0))
    if nq <= 0 or k <= 0:
        return out_idx, out_scores
    addresses, lengths, _held = segments.table if masks is None else masks
    how = kernels._method_code(method)
    threads = max(1, int(threads or 1))
    groups = min(nq, threads * 4 if threads > 1 else 1)
    errors = np.zeros((groups, 2), np.int64)
    failed = np.full((groups, 1), -1, np.int64)
    window = kernels.WINDOW
    acc = kernels.accumulator_docs(how, int(np.max(segments.num_docs))) if len(segments.num_docs) else window
    where = "window" if acc == window else "whole"  # a whole-collection accumulator for term at a time
    longest = int(np.diff(q_indptr).max())
    impact = segments.impact

    def run(g):
        need_p, need_b = _needs(addresses, lengths, q_indptr, q_terms, np.int64(g), np.int64(groups))
        wacc = scratch(f"{where}_acc", acc, np.float64, grow=True)
        wbits = scratch(f"{where}_bits", (acc + 63) // 64, np.uint64, grow=True)
        try:
            _group(addresses, lengths, segments.num_docs, segments.bases, np.int64(segments.total),
                   np.int64(segments.block_size), bool(verify), how, q_indptr, q_terms, q_weights, np.int64(g),
                   np.int64(groups), np.int64(window),
                   scratch("multi_docs", need_p, np.int32, grow=True),
                   scratch(f"multi_impacts_{impact}", need_p, impact, grow=True),
                   scratch("multi_last", need_b, np.int32, grow=True),
                   scratch(f"multi_max_{impact}", need_b, impact, grow=True),
                   wacc, wbits,
                   scratch("cand_docs", window, np.int64), scratch("cand_scores", window, np.float64),
                   scratch("word_bounds", (max(64, longest) + 2) * (window // 64), np.float64, grow=True),
                   out_idx, out_scores, errors[g], failed[g])
        except BaseException:  # e.g. a MemoryError part-way: the reused scratch must not keep partial scores
            wacc[:] = 0.0
            wbits[:] = 0
            raise

    run_groups(run, groups, threads)
    for err, seg in zip(errors, failed[:, 0]):
        if err[0]:
            codec.raise_error("" if roots is None else roots[int(seg)], err)
    return out_idx, out_scores


__all__ = ["SegmentArrays", "search_batch"]
