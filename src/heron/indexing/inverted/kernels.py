"""Numba search kernels over heron's inverted index (arrays as described in ``format.py``).

Every function takes plain NumPy arrays (memory-mapped ones included) and returns plain arrays:

* :func:`build_block_max` — block-max metadata of posting lists (same output as
  ``builder.block_max_reference``).
* :func:`search_exact` — search method ``exact``: exact top-k with dynamic pruning, **windowed block-max
  MaxScore** (below); the default from ``InvertedIndex.search`` to ``heron eval``.
* :func:`search_taat` — method ``taat``: exhaustive term-at-a-time scoring, then a top-k heap (the
  baseline; the same results as ``exact``).
* :func:`search_batch` — many queries on a thread pool, by any method of :data:`MODES` (``exact``,
  ``taat`` or ``approx``, the last in :mod:`heron.indexing.inverted.approx`).
* :func:`search_compressed` — one query, ``exact`` or ``taat``, over compressed postings
  (:mod:`heron.indexing.inverted.codec`); :func:`search_batch` takes compressed arrays too.

**Compressed postings.** The kernels above read uncompressed arrays. Over a compressed index a query
works on per-thread scratch arrays laid out as a small uncompressed index of its terms only (query-local
term ids ``0..n-1``): it decodes its terms' whole lists into them (every block's checksum, bounds, last
document and maximum checked, so the pruning below never trusts unchecked metadata) and runs
:func:`_taat` or :func:`_maxscore` unchanged. A collection of at most ``WINDOW`` documents is one
window, where MaxScore cannot prune (its threshold starts at the empty heap's) and both methods score
every posting: there the lists are decoded straight into the accumulator (:func:`codec.score_query`,
the same sums in the same order), with no decoded lists in between. Term at a time does the same on larger
collections, with one whole-collection accumulator (up to :data:`WHOLE_TAAT_DOCS` documents,
:func:`accumulator_docs`; windows beyond), as PISA's exhaustive ``ranked_or_taat`` does. A query with at
least half as many postings as the collection has documents (:data:`DENSE_SCAN`: long SPLADE queries on
every corpus measured) marks no touched-document bitset while it adds and then finds its top-k in one
scan of the accumulator (:func:`_push_dense`; from :data:`BUFFERED_K` results on through a buffer of
candidate keys rather than the heap, :func:`_select_dense`); shorter queries walk the bitset. A failed check
stops the query and is raised as an IntegrityError naming the file. A MaxScore that decoded only the
blocks it reads (with page checksums over the metadata of the blocks it skips) was built and measured
slower than decoding everything on every collection measured (MaxScore skipped too few blocks there to
repay its bookkeeping), and was dropped. Costs: docs/BENCHMARKS.md, "Compressed postings".

The top-k heap and the input checks the kernels share are in :mod:`heron.indexing.inverted.topk`.

**Scores and ties.** ``score(d) = sum_t w_t * impact(t, d)``: each product of a float32 weight and an
integer impact is exact in float64 and the sum is accumulated in float64, then rounded once to
float32. Results are ranked by that float32 score, descending, ties broken by the lower document index,
and only documents with a score > 0 are returned; ``idx`` is padded with -1 and ``scores`` with -inf up
to ``k``. The three methods rank with the same rule, so the exact methods return identical lists (the
sums are bit-identical unless query weights span more than ~2^8 in magnitude, where float64 rounding
in a different addition order could move a score by one float32 ulp in rare cases).

**Windows.** Both exact methods walk the documents in windows of ``WINDOW`` documents: the postings of
a window are added term at a time into a window-sized float64 accumulator (cache-resident, unlike a
``num_docs`` one) and a bitset of touched documents, which are then visited in ascending order. A
document enters the heap only if its score is strictly greater than the k-th: as documents arrive in
ascending order this is exactly the lower-index tie rule, so ties at the threshold are safe.

**Exact search** (``exact``: block-max MaxScore, windowed as in Lucene's MaxScoreBulkScorer). In each window every
query term gets the bound ``w_t * (largest block maximum of its blocks overlapping the window)``; a
window whose bounds sum to at most the current k-th score is skipped. Otherwise the terms are sorted by
bound and the longest prefix whose bounds sum to at most the threshold is *non-essential*: a document
matching only those cannot enter. If that prefix holds less than ``_MIN_SKIP`` of the window's postings
the window is scored exhaustively (the bookkeeping would cost more than it saves). Else only the
essential terms are accumulated; each touched document is kept as a candidate if its partial score plus
the non-essential block-max bound of its 64-document word can beat the threshold; then the
non-essential terms, largest bound first, are added to the candidates (merging the term's postings with
the candidate list when they are dense, else skipping blocks and binary-searching inside one), and after
each term the candidates that the remaining terms cannot lift above the threshold are dropped. Bounds
carry a 1e-9 relative slack against float rounding and are compared in float64 with the float32
threshold (``x <= theta`` implies ``float32(x) <= theta``).
"""

from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import njit
from numba.extending import intrinsic

from heron.indexing.inverted import approx, codec
from heron.indexing.inverted.topk import (
    INT32_MAX,
    SLACK,
    begin_query,
    end_query,
    heap_replace_root,
    outputs,
    prepare_query,
    readonly,
    run_groups,
    scratch,
    search_one,
)

#: the search methods, by the one name each has from these kernels to the CLI: ``exact`` (block-max
#: pruned exact top-k, the default), ``taat`` (exhaustive term-at-a-time: the same results, the baseline)
#: and ``approx`` (approximate, :mod:`heron.indexing.inverted.approx`)
MODES = ("exact", "taat", "approx")
WINDOW = 1 << 16  # documents per accumulator window (a multiple of 64): 512 KiB of float64 scratch
#: term at a time over compressed postings uses one whole-collection accumulator up to this many documents
#: (32 MiB of float64 per searching thread at the cap), windows beyond it
WHOLE_TAAT_DOCS = 1 << 22
#: a query over a whole-collection accumulator with at least ``num_docs / DENSE_SCAN`` postings scans the
#: accumulator for its top-k instead of marking each touched document in a bitset (:func:`_push_dense`)
DENSE_SCAN = 2
#: from this many results on, that scan selects the top-k through a buffer of candidate keys, not a heap
BUFFERED_K = 128
_MIN_SKIP = 0.3  # an exact-search window uses MaxScore only if it skips at least this fraction of its postings
# how a query over compressed postings is scored once its lists are decoded: term at a time or MaxScore
TAAT, EAGER = 0, 1


# -- small helpers -----------------------------------------------------------------------------------
@intrinsic
def _cttz(typingctx, x):
    """Count of trailing zero bits (LLVM ``cttz``)."""
    sig = x(x)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


# -- block maxima ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _block_max(offsets, docs, impacts, block_size, last, bmax):
    b = 0
    for t in range(offsets.shape[0] - 1):
        p = offsets[t]
        hi = offsets[t + 1]
        while p < hi:
            e = min(p + block_size, hi)
            m = impacts[p]
            for q in range(p + 1, e):
                if impacts[q] > m:
                    m = impacts[q]
            last[b] = docs[e - 1]
            bmax[b] = m
            b += 1
            p = e


def build_block_max(offsets, docs, impacts, block_size):
    """``(block_offsets int64[len(offsets)], block_last_doc int32[B], block_max[B])`` of posting lists.

    Term ``t`` holds postings ``docs[offsets[t]:offsets[t+1]]`` (offsets need not start at 0) and has
    ``ceil(df / block_size)`` blocks of consecutive postings; a block records its last document and
    its largest impact (in the impacts' dtype).
    """
    offsets = readonly(offsets, np.int64)
    impacts = np.asarray(impacts)
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be positive, not {block_size}")
    block_offsets = np.zeros(len(offsets), dtype=np.int64)
    if len(offsets) < 2:
        return block_offsets, np.zeros(0, np.int32), np.zeros(0, impacts.dtype)
    np.cumsum((np.diff(offsets) + block_size - 1) // block_size, out=block_offsets[1:])
    total = int(block_offsets[-1])
    last = np.empty(total, dtype=np.int32)
    bmax = np.empty(total, dtype=impacts.dtype)
    if total:
        _block_max(offsets, readonly(docs, np.int32), readonly(impacts), np.int64(block_size), last, bmax)
    return block_offsets, last, bmax


# -- term-at-a-time ----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _scan_term(pd, pi, p, e, hi, lo, w, wacc, wbits):
    """Add ``w * impact`` of postings ``p, p+1, ...`` with documents < ``hi`` into the window; the next p."""
    while p < e:
        d = pd[p]
        if d >= hi:
            break
        off = d - lo
        wacc[off] += w * pi[p]
        wbits[off >> 6] |= np.uint64(1) << np.uint64(off & 63)
        p += 1
    return p


@njit(cache=True, nogil=True)
def _push_window(wacc, wbits, nwords, lo, mask, hs, hd):
    """Offer every document of the window (ascending; complete scores) to the heap; clear the window."""
    theta = hs[0]
    has_mask = mask.shape[0] > 0
    for word in range(nwords):
        bits = wbits[word]
        if bits == 0:
            continue
        wbits[word] = 0
        while bits != 0:
            off = (word << 6) + np.int64(_cttz(bits))
            bits &= bits - np.uint64(1)
            s = wacc[off]
            wacc[off] = 0.0
            if s <= theta:  # then float32(s) <= theta too
                continue
            d = lo + off
            if has_mask and mask[d] == 0:
                continue
            f = np.float32(s)
            if f > theta:  # ascending documents: an equal score never beats a lower index
                heap_replace_root(hs, hd, f, d)
                theta = hs[0]


@njit(cache=True, nogil=True)
def _push_dense(wacc, n, mask, hs, hd):
    """:func:`_push_window` over a whole accumulator of ``n`` documents without a touched bitset: 16
    documents at a time, a group is looked into only if its largest score beats the k-th (a comparison
    the compiler vectorises; only documents with a score > 0 can, as in :func:`_push_window`), then the
    accumulator is cleared in one pass. From :data:`BUFFERED_K` results on, :func:`_select_dense`."""
    if hs.shape[0] >= BUFFERED_K:
        _select_dense(wacc, n, mask, hs, hd)
        wacc[:n] = 0.0
        return
    full = n - n % 16  # whole groups, then the tail: a fixed 16-wide max measured ~7 % faster on the
    for c in range(0, full, 16):  # dictionary corpus than _select_dense's variable-width form
        top = wacc[c]
        for j in range(1, 16):
            x = wacc[c + j]
            top = x if x > top else top
        if top > hs[0]:
            _push_range(wacc, c, c + 16, mask, hs, hd)
    _push_range(wacc, full, n, mask, hs, hd)
    wacc[:n] = 0.0


@njit(cache=True, nogil=True)
def _select_dense(wacc, n, mask, hs, hd):
    """The heap ``hs`` / ``hd`` (``k`` entries) updated with the documents of a whole accumulator as
    :func:`_push_range` would, without heap operations while scanning: each candidate is one uint64 key, its
    float32 score's bits (positive floats order as their bits) above ``2^32 - 1 - doc`` (a lower document ranks
    higher at an equal score), appended to a buffer of ``2k`` while its score beats the k-th so far; a full
    buffer keeps its ``k`` largest keys (a partition) and the k-th so far rises to the smallest of them. Then the
    ``k`` largest, sorted: written as the heap when it held nothing (a sorted array is a valid heap), else
    offered to it best first (the segments of a segmented index share one heap; their documents come after
    every document already in it). The same result as the heap alone (a score > 0, strictly above the k-th,
    the lower index on ties) in far fewer operations when ``k`` is large."""
    k = hs.shape[0]
    cap = 2 * k
    buf = np.empty(cap + 16, np.uint64)
    one = np.empty(1, np.float32)
    bits = one.view(np.uint32)
    low = np.uint64(0xFFFFFFFF)
    empty = True
    for i in range(k):
        if hd[i] != INT32_MAX:
            empty = False
            break
    kth = hs[0]  # a candidate's float32 score must exceed this (every document here comes after the heap's)
    theta = np.float64(kth)  # ... so its float64 score must too
    m = 0
    has_mask = mask.shape[0] > 0
    for c in range(0, n, 16):
        hi = min(c + 16, n)
        top = wacc[c]
        for j in range(c + 1, hi):
            x = wacc[j]
            top = x if x > top else top
        if top <= theta:
            continue
        for d in range(c, hi):
            s = wacc[d]
            if s <= theta or (has_mask and mask[d] == 0):
                continue
            f = np.float32(s)
            if f > kth:
                one[0] = f
                buf[m] = (np.uint64(bits[0]) << np.uint64(32)) | (low - np.uint64(d))
                m += 1
        if m >= cap:
            m = _keep_largest(buf, m, k)
            bits[0] = np.uint32(buf[0] >> np.uint64(32))
            kth = max(kth, one[0])
            theta = np.float64(kth)
    if m > k:
        m = _keep_largest(buf, m, k)
    found = np.sort(buf[:m])  # ascending: the worst first
    if empty:  # a sorted array is a valid heap; sentinels (worse still) before
        for i in range(k - m):
            hs[i] = np.float32(0.0)
            hd[i] = INT32_MAX
        for i in range(m):
            bits[0] = np.uint32(found[i] >> np.uint64(32))
            hs[k - m + i] = one[0]
            hd[k - m + i] = np.int32(low - (found[i] & low))
        return
    for i in range(m - 1, -1, -1):  # best first
        bits[0] = np.uint32(found[i] >> np.uint64(32))
        f = one[0]
        if f <= hs[0]:  # the rest are no better; an equal score comes after the heap's documents
            break
        heap_replace_root(hs, hd, f, np.int32(low - (found[i] & low)))


@njit(cache=True, nogil=True)
def _keep_largest(buf, m, k):
    """Move the ``k`` largest of ``buf[:m]`` to ``buf[:k]``, the smallest of them first; returns ``k``."""
    part = np.partition(buf[:m], m - k)
    buf[0] = part[m - k]
    j = 1
    for i in range(m - k + 1, m):
        buf[j] = part[i]
        j += 1
    return k


@njit(cache=True, nogil=True)
def _push_range(wacc, lo, hi, mask, hs, hd):
    """Offer documents ``lo .. hi - 1`` (ascending; complete scores) to the heap."""
    has_mask = mask.shape[0] > 0
    for d in range(lo, hi):
        s = wacc[d]
        if s <= hs[0] or (has_mask and mask[d] == 0):  # s <= theta: float32(s) <= theta too
            continue
        f = np.float32(s)
        if f > hs[0]:  # ascending documents: an equal score never beats a lower index
            heap_replace_root(hs, hd, f, d)


@njit(cache=True, nogil=True)
def _taat(po, pd, pi, num_docs, q_terms, q_weights, qlo, qhi, mask, wacc, wbits, hs, hd, window):
    """Score the query ``q_terms[qlo:qhi]`` exhaustively and fill the heap.

    Term at a time inside windows of ``window`` documents (a cache-sized accumulator and a bitset of the
    documents touched, left zeroed), windows in document order, touched documents ascending.
    """
    n = qhi - qlo
    pos = np.empty(n, np.int64)
    lo = num_docs
    for i in range(n):
        t = q_terms[qlo + i]
        pos[i] = po[t]
        if po[t] < po[t + 1] and pd[po[t]] < lo:
            lo = np.int64(pd[po[t]])
    while lo < num_docs:
        hi = min(lo + window, num_docs)
        next_lo = num_docs
        for i in range(n):
            t = q_terms[qlo + i]
            p = _scan_term(pd, pi, pos[i], po[t + 1], hi, lo, np.float64(q_weights[qlo + i]), wacc, wbits)
            pos[i] = p
            if p < po[t + 1] and pd[p] < next_lo:
                next_lo = pd[p]
        _push_window(wacc, wbits, (hi - lo + 63) >> 6, lo, mask, hs, hd)
        lo = max(hi, next_lo)


# -- windowed block-max MaxScore ---------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _lower_bound(pd, lo, hi, target):
    """The first position in ``[lo, hi)`` whose document is >= ``target`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if pd[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _next_block(bl, base, j, nblocks, target):
    """From block ``j`` on, the first of a term's ``nblocks`` blocks (at ``base`` in ``bl``) whose last
    document is >= ``target`` (``nblocks`` if none)."""
    while j < nblocks and bl[base + j] < target:
        j += 1
    return j


@njit(cache=True, nogil=True)
def _maxscore(po, pd, pi, bo, bl, bm, num_docs, q_terms, q_weights, qlo, qhi, mask, wacc, wbits, cand_d, cand_s,
              wcum, hs, hd, window):
    """Exact top-k of ``q_terms[qlo:qhi]`` by windowed block-max MaxScore (see the module docstring).

    Scratch: ``wacc``/``wbits`` (window accumulator and bitset, left zeroed), ``cand_d``/``cand_s``
    (``window`` entries) and ``wcum`` (at least ``(n + 2) * window / 64`` entries for ``n`` terms).
    """
    n = qhi - qlo
    # per term: its postings [start, end), blocks [b0, b0 + nb) of bsz postings, current block and posting,
    # first document (block j > 0 starts after block j-1's last), postings estimated in the window
    state = np.zeros((9, n), np.int64)
    start, end, b0, nb, bsz, blk, pos, first0, est = (state[0], state[1], state[2], state[3], state[4], state[5],
                                                      state[6], state[7], state[8])
    w = np.empty(n, np.float64)  # weight
    wub = np.zeros(n, np.float64)  # bound in the window
    nwords_max = (window + 63) >> 6
    wtmp = wcum[(n + 1) * nwords_max:(n + 2) * nwords_max]
    order = np.arange(n)
    for i in range(n):
        t = q_terms[qlo + i]
        w[i] = np.float64(q_weights[qlo + i])
        start[i] = po[t]
        end[i] = po[t + 1]
        b0[i] = bo[t]
        nb[i] = bo[t + 1] - bo[t]
        pos[i] = start[i]
        first0[i] = pd[start[i]] if nb[i] > 0 else num_docs
        if nb[i] >= 2:  # block size = position of the first block's last document + 1
            bsz[i] = _lower_bound(pd, start[i], end[i], bl[b0[i]]) - start[i] + 1
        else:
            bsz[i] = max(1, end[i] - start[i])
    has_mask = mask.shape[0] > 0
    theta = hs[0]
    lo = 0
    while lo < num_docs:
        hi = min(lo + window, num_docs)
        total = 0.0
        alive = False
        next_lo = num_docs
        for i in range(n):
            base = b0[i]
            j = blk[i] = _next_block(bl, base, blk[i], nb[i], lo)
            m = 0
            if j < nb[i]:
                alive = True
                first = bl[base + j - 1] + 1 if j > 0 else first0[i]
                if first < next_lo:
                    next_lo = first
            count = 0
            while j < nb[i]:
                if j > 0 and bl[base + j - 1] >= hi - 1:  # the block starts after the window
                    break
                v = bm[base + j]
                if v > m:
                    m = v
                count += 1
                if bl[base + j] >= hi - 1:
                    break
                j += 1
            wub[i] = w[i] * m
            total += wub[i]
            est[i] = count * bsz[i]  # about how many postings the term has in the window
        if not alive:
            break
        if total == 0.0:  # no posting in this window: jump to the next window holding one
            lo = max(hi, next_lo)
            continue
        if total * SLACK <= theta:
            lo = hi
            continue
        # order terms by window bound (insertion sort; the order barely changes between windows)
        for r in range(1, n):
            x = order[r]
            v = wub[x]
            q = r - 1
            while q >= 0 and wub[order[q]] > v:
                order[q + 1] = order[q]
                q -= 1
            order[q + 1] = x
        ne = 0
        ne_total = 0.0
        for r in range(n):
            c = ne_total + wub[order[r]]
            if c * SLACK <= theta:
                ne_total = c
                ne = r + 1
            else:
                break
        skipped = 0
        for r in range(ne):
            skipped += est[order[r]]
        all_est = 0
        for i in range(n):
            all_est += est[i]
        if skipped < _MIN_SKIP * all_est:  # too little to skip: score the window exhaustively
            ne = 0
        # essential terms: accumulate the window
        for r in range(ne, n):
            i = order[r]
            if wub[i] == 0.0:
                continue
            p = pos[i]
            bstart = start[i] + blk[i] * bsz[i]
            if p < bstart:
                p = bstart
            e = end[i]
            while p < e and pd[p] < lo:
                p += 1
            pos[i] = _scan_term(pd, pi, p, e, hi, lo, w[i], wacc, wbits)
        nwords = (hi - lo + 63) >> 6
        if ne == 0:
            _push_window(wacc, wbits, nwords, lo, mask, hs, hd)
            theta = hs[0]
            lo = hi
            continue
        # cumulative bounds of the non-essential terms on each 64-document word (from their block maxima):
        # wcum[r, word] bounds what terms order[0:r] can add to a document of that word
        for word in range(nwords):
            wcum[word] = 0.0
        for r in range(ne):
            i = order[r]
            for word in range(nwords):
                wtmp[word] = 0.0
            base = b0[i]
            for j in range(blk[i], nb[i]):
                first = np.int64(bl[base + j - 1] + 1 if j > 0 else first0[i])
                if first >= hi:
                    break
                bound = w[i] * bm[base + j]
                for word in range((max(first, lo) - lo) >> 6, ((min(np.int64(bl[base + j]), hi - 1) - lo) >> 6) + 1):
                    if bound > wtmp[word]:
                        wtmp[word] = bound
                if bl[base + j] >= hi - 1:
                    break
            for word in range(nwords):
                wcum[(r + 1) * nwords_max + word] = wcum[r * nwords_max + word] + wtmp[word]
        # candidates (ascending) that the non-essential terms could still lift above the threshold
        nc = 0
        for word in range(nwords):
            bits = wbits[word]
            if bits == 0:
                continue
            wbits[word] = 0
            word_ne = wcum[ne * nwords_max + word]
            while bits != 0:
                off = (word << 6) + np.int64(_cttz(bits))
                bits &= bits - np.uint64(1)
                sc = wacc[off]
                wacc[off] = 0.0
                if (sc + word_ne) * SLACK <= theta:
                    continue
                if has_mask and mask[lo + off] == 0:
                    continue
                cand_d[nc] = lo + off
                cand_s[nc] = sc
                nc += 1
        # non-essential terms, largest bound first, each by a merge with the candidates or by seeks;
        # after each, drop the candidates that the remaining terms cannot lift above the threshold
        for r in range(ne - 1, -1, -1):
            if nc == 0:
                break
            i = order[r]
            wi = w[i]
            e = end[i]
            if est[i] <= 8 * nc:  # dense: walk the term's postings in the window
                p = pos[i]
                bstart = start[i] + blk[i] * bsz[i]
                if p < bstart:
                    p = bstart
                while p < e and pd[p] < lo:
                    p += 1
                c = 0
                while p < e and c < nc:
                    d = pd[p]
                    if d >= hi:
                        break
                    cd = cand_d[c]
                    if d < cd:
                        p += 1
                    elif d > cd:
                        c += 1
                    else:
                        cand_s[c] += wi * pi[p]
                        p += 1
                        c += 1
                pos[i] = p
            else:  # sparse: skip blocks, binary search inside one
                base = b0[i]
                for c in range(nc):
                    d = cand_d[c]
                    j = blk[i] = _next_block(bl, base, blk[i], nb[i], d)
                    if j == nb[i]:
                        break
                    bstart = start[i] + j * bsz[i]
                    p = pos[i]
                    if p < bstart:
                        p = bstart
                    if pd[p] < d:  # the first posting >= d in the block, else its last one
                        p = _lower_bound(pd, p, min(bstart + bsz[i], e) - 1, d)
                    pos[i] = p
                    if pd[p] == d:
                        cand_s[c] += wi * pi[p]
            kept = 0
            for c in range(nc):
                sc = cand_s[c]
                if (sc + wcum[r * nwords_max + ((cand_d[c] - lo) >> 6)]) * SLACK > theta:
                    cand_d[kept] = cand_d[c]
                    cand_s[kept] = sc
                    kept += 1
            nc = kept
        for c in range(nc):
            f = np.float32(cand_s[c])
            if f > theta:  # ascending documents: an equal score never beats a lower index
                heap_replace_root(hs, hd, f, cand_d[c])
                theta = hs[0]
        lo = hi


# -- batches -----------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _exact_group(po, pd, pi, bo, bl, bm, maxscore, num_docs, q_indptr, q_terms, q_weights, allow_indptr,
                 allow_docs, g, groups, window, out_idx, out_scores):
    """Queries ``g, g + groups, …`` of a batch by block-max MaxScore (``maxscore``) or term at a time,
    with the group's own scratch (the block arrays are not read by term-at-a-time)."""
    nq = q_indptr.shape[0] - 1
    kk = min(out_idx.shape[1], num_docs)
    wacc = np.zeros(window, np.float64)
    wbits = np.zeros(window // 64, np.uint64)
    longest = 0
    if maxscore:
        for q in range(g, nq, groups):
            longest = max(longest, q_indptr[q + 1] - q_indptr[q])
    cand_d = np.empty(window if maxscore else 0, np.int64)
    cand_s = np.empty(window if maxscore else 0, np.float64)
    wcum = np.empty((longest + 2) * (window // 64) if maxscore else 0, np.float64)
    mask = np.zeros(num_docs if allow_indptr.shape[0] > 0 else 0, np.uint8)
    hs = np.empty(kk, np.float32)
    hd = np.empty(kk, np.int32)
    for q in range(g, nq, groups):
        begin_query(hs, hd, mask, allow_indptr, allow_docs, q)
        if kk > 0 and maxscore:
            _maxscore(po, pd, pi, bo, bl, bm, num_docs, q_terms, q_weights, q_indptr[q], q_indptr[q + 1], mask,
                      wacc, wbits, cand_d, cand_s, wcum, hs, hd, window)
        elif kk > 0:
            _taat(po, pd, pi, num_docs, q_terms, q_weights, q_indptr[q], q_indptr[q + 1], mask, wacc, wbits, hs, hd,
                  window)
        end_query(hs, hd, out_idx, out_scores, mask, allow_indptr, allow_docs, q)


# -- compressed postings -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _compressed_query(po, bo, bl, bm, bw, bb, bc, words, block_size, verify, method, num_docs, q_terms, q_weights,
                      qlo, qhi, mask, lpo, lpd, lpi, lbo, lbl, lbm, lterms, wacc, wbits, cand_d, cand_s, wcum, hs, hd,
                      window, err):
    """One query over compressed postings: decode every block of its terms into query-local arrays
    (``lterms`` = ``0, 1, ...``), then score term at a time (``method`` ``TAAT``) or by MaxScore
    (``EAGER``). False (``err`` set) on a failed check (before any scoring: the scratch stays clean)."""
    n = qhi - qlo
    if num_docs <= window or (method == TAAT and num_docs <= wacc.shape[0]):
        # one window (MaxScore cannot prune: its threshold starts at the heap's, so both methods score every
        # posting), or term at a time with a whole-collection accumulator: decode straight into the
        # accumulator (codec.score_query); with about as many postings as documents, scan the whole
        # accumulator afterwards rather than mark the touched documents (_push_dense)
        postings = 0
        for i in range(qlo, qhi):
            postings += po[q_terms[i] + 1] - po[q_terms[i]]
        dense = postings * DENSE_SCAN >= num_docs
        if not codec.score_query(po, bo, bl, bm, bw, bb, bc, words, num_docs, block_size, q_terms, q_weights, qlo,
                                 qhi, verify, wacc, wbits, not dense, err):
            wacc[:] = 0.0  # stopped part-way: leave the scratch clean
            wbits[:] = 0
            return False
        if dense:
            _push_dense(wacc, num_docs, mask, hs, hd)
        else:
            _push_window(wacc, wbits, (num_docs + 63) >> 6, 0, mask, hs, hd)
        return True
    if not codec.decode_query(po, bo, bl, bm, bw, bb, bc, words, num_docs, block_size, q_terms, qlo, qhi, verify,
                              lpo, lpd, lpi, lbo, lbl, lbm, err):
        return False
    lw = q_weights[qlo:qhi]
    if method == EAGER:
        _maxscore(lpo, lpd, lpi, lbo, lbl, lbm, num_docs, lterms, lw, 0, n, mask, wacc, wbits, cand_d, cand_s, wcum,
                  hs, hd, window)
    else:
        _taat(lpo, lpd, lpi, num_docs, lterms, lw, 0, n, mask, wacc, wbits, hs, hd, window)
    return True


@njit(cache=True, nogil=True)
def _compressed_group(po, bo, bl, bm, bw, bb, bc, words, block_size, verify, method, num_docs, q_indptr, q_terms,
                      q_weights, allow_indptr, allow_docs, g, groups, window, acc, lpd, lpi, lbl, lbm, out_idx,
                      out_scores, err):
    """Queries ``g, g + groups, …`` of a batch over compressed postings, with the group's own scratch
    (``lpd``/``lpi``/``lbl``/``lbm`` sized by the caller for the group's largest query; an accumulator of
    ``acc`` documents, :func:`accumulator_docs`). Stops at the first failed check (``err`` set)."""
    nq = q_indptr.shape[0] - 1
    kk = min(out_idx.shape[1], num_docs)
    longest = 0
    for q in range(g, nq, groups):
        longest = max(longest, q_indptr[q + 1] - q_indptr[q])
    wacc = np.zeros(acc, np.float64)
    wbits = np.zeros((acc + 63) // 64, np.uint64)
    maxscore = method != TAAT
    cand_d = np.empty(window if maxscore else 0, np.int64)
    cand_s = np.empty(window if maxscore else 0, np.float64)
    wcum = np.empty((longest + 2) * (window // 64) if maxscore else 0, np.float64)
    lpo = np.zeros(longest + 1, np.int64)
    lbo = np.zeros(longest + 1, np.int64)
    lterms = np.arange(longest).astype(np.int32)
    mask = np.zeros(num_docs if allow_indptr.shape[0] > 0 else 0, np.uint8)
    hs = np.empty(kk, np.float32)
    hd = np.empty(kk, np.int32)
    for q in range(g, nq, groups):
        begin_query(hs, hd, mask, allow_indptr, allow_docs, q)
        if kk > 0 and q_indptr[q + 1] > q_indptr[q]:
            if not _compressed_query(po, bo, bl, bm, bw, bb, bc, words, block_size, verify, method, num_docs, q_terms,
                                     q_weights, q_indptr[q], q_indptr[q + 1], mask, lpo, lpd, lpi, lbo, lbl, lbm,
                                     lterms, wacc, wbits, cand_d, cand_s, wcum, hs, hd, window, err):
                return
        end_query(hs, hd, out_idx, out_scores, mask, allow_indptr, allow_docs, q)


def _local_sizes(po, block_size: int, q_indptr, q_terms) -> tuple[np.ndarray, np.ndarray]:
    """Per query: its terms' postings and blocks (the sizes of its decoded scratch)."""
    df = po[q_terms + 1] - po[q_terms]
    blocks = (df + block_size - 1) // block_size
    cp = np.concatenate([[0], np.cumsum(df)])
    cb = np.concatenate([[0], np.cumsum(blocks)])
    return cp[q_indptr[1:]] - cp[q_indptr[:-1]], cb[q_indptr[1:]] - cb[q_indptr[:-1]]


def _method_code(method: str) -> int:
    return TAAT if method == "taat" else EAGER


def accumulator_docs(how: int, num_docs: int) -> int:
    """Documents the score accumulator of a query over compressed postings must hold: the whole collection
    for term at a time up to :data:`WHOLE_TAAT_DOCS` documents, else one window (``how``: ``TAAT`` or
    ``EAGER``)."""
    return int(num_docs) if how == TAAT and WINDOW < num_docs <= WHOLE_TAAT_DOCS else WINDOW


@njit(cache=True, nogil=True)
def _query_sizes(po, terms, block_size, out):
    """``out = (postings, blocks)`` of the terms' lists: the sizes of a query's decoded scratch."""
    out[0] = 0
    out[1] = 0
    for t in terms:
        df = po[t + 1] - po[t]
        out[0] += df
        out[1] += (df + block_size - 1) // block_size


class _QueryScratch:
    """One thread's scratch for single queries over compressed postings (made once, grown as needed: a
    query spends no time allocating). The window arrays are zero on entry and left zeroed by the kernels."""

    def __init__(self, impact: np.dtype):
        self.impact = impact
        self.sizes = np.zeros(2, np.int64)
        self.err = np.zeros(2, np.int64)
        self.lpo = self.lbo = self.lterms = np.zeros(0, np.int64)
        self.lpd = self.lbl = np.zeros(0, np.int32)
        self.lpi = self.lbm = np.zeros(0, impact)
        self.wacc = np.zeros(WINDOW, np.float64)
        self.wbits = np.zeros(WINDOW // 64, np.uint64)
        self.whole_acc = np.zeros(0, np.float64)  # term at a time's whole-collection accumulator, made on first use
        self.whole_bits = np.zeros(0, np.uint64)
        self.cand_d = np.zeros(WINDOW, np.int64)
        self.cand_s = np.zeros(WINDOW, np.float64)
        self.wcum = np.zeros(0, np.float64)

    def accumulator(self, docs: int) -> tuple[np.ndarray, np.ndarray]:
        """The zeroed accumulator and bitset for ``docs`` documents (the window's, or a grown whole one)."""
        if docs <= WINDOW:
            return self.wacc, self.wbits
        if len(self.whole_acc) < docs:
            self.whole_acc = np.zeros(docs, np.float64)
            self.whole_bits = np.zeros((docs + 63) // 64, np.uint64)
        return self.whole_acc, self.whole_bits

    def fit(self, n: int, postings: int, blocks: int) -> None:
        """Grow the arrays for a query of ``n`` terms, ``postings`` postings and ``blocks`` blocks."""
        if len(self.lpo) < n + 1:
            size = max(n + 1, 2 * len(self.lpo))
            self.lpo, self.lbo = np.zeros(size, np.int64), np.zeros(size, np.int64)
            self.lterms = np.arange(size, dtype=np.int32)
            self.wcum = np.zeros((max(64, size) + 2) * (WINDOW // 64), np.float64)
        if len(self.lpd) < postings:
            size = max(postings, 2 * len(self.lpd))
            self.lpd, self.lpi = np.zeros(size, np.int32), np.zeros(size, self.impact)
        if len(self.lbl) < blocks:
            size = max(blocks, 2 * len(self.lbl))
            self.lbl, self.lbm = np.zeros(size, np.int32), np.zeros(size, self.impact)


_scratch_local = threading.local()


def _query_scratch(impact: np.dtype) -> _QueryScratch:
    cache = getattr(_scratch_local, "by_dtype", None)
    if cache is None:
        cache = _scratch_local.by_dtype = {}
    got = cache.get(impact)
    if got is None:
        got = cache[impact] = _QueryScratch(impact)
    return got


@njit(cache=True, nogil=True)
def prepare_terms(ids, weights, offsets, vocab_size):
    """One query's term ids and weights as the kernels take them: ``(int32 ids ascending and unique, float32
    weights, status)``. Terms outside ``[0, vocab_size)``, of weight 0 or with no postings (``offsets``) are
    dropped; a repeated term's weights are summed in float64 in input order (as ``np.bincount`` sums), then
    rounded to float32. ``status`` 1: a weight is negative or not finite (nothing else is computed)."""
    n = ids.shape[0]
    for i in range(n):
        w = weights[i]
        if not np.isfinite(w) or w < 0:
            return np.empty(0, np.int32), np.empty(0, np.float32), 1
    kept = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if 0 <= ids[i] < vocab_size and weights[i] > 0:
            kept[m] = i
            m += 1
    kept = kept[:m]
    order = np.argsort(ids[kept], kind="mergesort")  # stable: equal ids keep their input order
    out_ids = np.empty(m, np.int32)
    out_w = np.empty(m, np.float32)
    j = 0
    r = 0
    while r < m:
        t = ids[kept[order[r]]]
        acc = 0.0
        while r < m and ids[kept[order[r]]] == t:
            acc += weights[kept[order[r]]]
            r += 1
        if offsets[t + 1] > offsets[t]:
            out_ids[j] = t
            out_w[j] = acc
            j += 1
    return out_ids[:j], out_w[:j], 0


@njit(cache=True, nogil=True)
def prepare_terms_batch(indptr, ids, weights, offsets, vocab_size):
    """:func:`prepare_terms` for many queries at once (query ``q``: ``ids[indptr[q]:indptr[q + 1]]``):
    ``(q_indptr int64, q_terms int32, q_weights float32, bad)`` packed as the batch kernels take them;
    ``bad`` is the first query with a negative or non-finite weight, -1 if none."""
    nq = indptr.shape[0] - 1
    q_indptr = np.zeros(nq + 1, np.int64)
    q_terms = np.empty(ids.shape[0], np.int32)
    q_weights = np.empty(ids.shape[0], np.float32)
    for q in range(nq):
        t, w, status = prepare_terms(ids[indptr[q]:indptr[q + 1]], weights[indptr[q]:indptr[q + 1]], offsets,
                                     vocab_size)
        if status:
            return q_indptr, q_terms[:0], q_weights[:0], q
        start = q_indptr[q]
        q_terms[start:start + t.shape[0]] = t
        q_weights[start:start + t.shape[0]] = w
        q_indptr[q + 1] = start + t.shape[0]
    return q_indptr, q_terms[:q_indptr[nq]], q_weights[:q_indptr[nq]], -1


def search_compressed(method, arrays, num_docs, terms, weights, k, mask, block_size, root="", verify=True):
    """Exact top-``k`` of one query over compressed postings by ``method`` ``"exact"`` or ``"taat"``:
    ``(idx int32[k], scores float32[k])``, the same as :func:`search_exact` / :func:`search_taat` on the
    decoded arrays. ``arrays``: the index arrays by name (``format.ARRAYS``, with the ``postings_offsets``,
    ``block_offsets`` and ``block_words`` derived at open); a failed block check raises IntegrityError
    naming the file under ``root``."""
    if method not in ("exact", "taat"):
        raise ValueError(f"method must be 'exact' or 'taat', not {method!r}")
    args = codec.compressed_arrays(arrays)
    po, block_size = args[0], np.int64(block_size)
    how = _method_code(method)

    def kernel(terms, weights, mask, hs, hd):
        n = len(terms)
        sc = _query_scratch(args[3].dtype)
        _query_sizes(po, terms, block_size, sc.sizes)
        sc.fit(n, int(sc.sizes[0]), int(sc.sizes[1]))
        sc.err[0] = 0
        wacc, wbits = sc.accumulator(accumulator_docs(how, num_docs))
        try:
            ok = _compressed_query(*args, block_size, bool(verify), how, np.int64(num_docs), terms, weights,
                                   np.int64(0), np.int64(n), mask, sc.lpo, sc.lpd, sc.lpi, sc.lbo, sc.lbl, sc.lbm,
                                   sc.lterms, wacc, wbits, sc.cand_d, sc.cand_s, sc.wcum, hs, hd, np.int64(WINDOW),
                                   sc.err)
        except BaseException:  # e.g. a MemoryError part-way: the reused scratch must not keep partial scores
            wacc[:] = 0.0
            wbits[:] = 0
            raise
        if not ok:  # decoding precedes scoring: the scratch is still clean
            codec.raise_error(root, sc.err)

    return search_one(len(po) - 1, num_docs, terms, weights, k, mask, kernel)


# -- Python wrappers ---------------------------------------------------------------------------------
def search_taat(postings_offsets, postings_docs, postings_impacts, num_docs, terms, weights, k, mask):
    """Exact top-``k`` by exhaustive term-at-a-time scoring: ``(idx int32[k], scores float32[k])``."""
    po = readonly(postings_offsets, np.int64)

    def kernel(terms, weights, mask, hs, hd):
        _taat(po, readonly(postings_docs, np.int32), readonly(postings_impacts), np.int64(num_docs), terms, weights,
              np.int64(0), np.int64(len(terms)), mask, scratch("window_acc", WINDOW, np.float64),
              scratch("window_bits", WINDOW // 64, np.uint64), hs, hd, np.int64(WINDOW))

    return search_one(len(po) - 1, num_docs, terms, weights, k, mask, kernel)


def search_exact(postings_offsets, postings_docs, postings_impacts, block_offsets, block_last_doc, block_max,
                 num_docs, terms, weights, k, mask):
    """Exact top-``k`` with windowed block-max MaxScore pruning; same answer as :func:`search_taat`."""
    po = readonly(postings_offsets, np.int64)

    def kernel(terms, weights, mask, hs, hd):
        _maxscore(po, readonly(postings_docs, np.int32), readonly(postings_impacts), readonly(block_offsets, np.int64),
                  readonly(block_last_doc, np.int32), readonly(block_max), np.int64(num_docs), terms, weights,
                  np.int64(0), np.int64(len(terms)), mask, scratch("window_acc", WINDOW, np.float64),
                  scratch("window_bits", WINDOW // 64, np.uint64), scratch("cand_docs", WINDOW, np.int64),
                  scratch("cand_scores", WINDOW, np.float64),
                  scratch("word_bounds", (max(64, len(terms)) + 2) * (WINDOW // 64), np.float64, grow=True), hs, hd,
                  np.int64(WINDOW))

    return search_one(len(po) - 1, num_docs, terms, weights, k, mask, kernel)


def _compressed_batch(method, arrays, num_docs, q_indptr, q_terms, q_weights, allow_indptr, allow_docs, groups,
                      out_idx, out_scores, block_size, root="", verify=True):
    """The ``run(g)`` of a batch over compressed postings, and a check that raises the first group error."""
    args = codec.compressed_arrays(arrays)
    po, block_size = args[0], int(block_size)
    impact = args[3].dtype
    how = _method_code(method)
    postings, blocks = _local_sizes(po, block_size, q_indptr, q_terms)
    errors = np.zeros((groups, 2), np.int64)

    def run(g):
        need_p = int(postings[g::groups].max()) if len(postings[g::groups]) else 0
        need_b = int(blocks[g::groups].max()) if len(blocks[g::groups]) else 0
        _compressed_group(*args, np.int64(block_size), bool(verify), how, np.int64(num_docs), q_indptr, q_terms,
                          q_weights, allow_indptr, allow_docs, np.int64(g), np.int64(groups), np.int64(WINDOW),
                          np.int64(accumulator_docs(how, num_docs)), np.empty(max(1, need_p), np.int32),
                          np.empty(max(1, need_p), impact), np.empty(max(1, need_b), np.int32),
                          np.empty(max(1, need_b), impact), out_idx, out_scores, errors[g])

    def check():
        for err in errors:
            if err[0]:
                codec.raise_error(root, err)

    return run, check


def _num_docs(arrays: dict, extra: dict) -> int:
    if "num_docs" in extra:
        return int(extra.pop("num_docs"))
    if "forward_offsets" in arrays:
        return len(arrays["forward_offsets"]) - 1
    docs = arrays["postings_docs"]
    return int(np.max(docs)) + 1 if len(docs) else 0


def search_batch(method, arrays, q_indptr, q_terms, q_weights, k, allow_indptr, allow_docs, threads, **extra):
    """Top-``k`` of many queries in parallel: ``(idx int32[Q, k], scores float32[Q, k])``.

    ``method``: one of :data:`MODES` — ``"exact"``, ``"taat"`` or ``"approx"`` (``extra``: ``query_cut``,
    ``heap_factor``). ``arrays``: the index arrays by name (plus the ``approx/`` arrays for ``"approx"``).
    Query ``q`` is ``q_terms[q_indptr[q]:q_indptr[q+1]]`` with its weights. ``allow_indptr`` empty means no
    filter, otherwise query ``q`` may only return ``allow_docs[allow_indptr[q]:allow_indptr[q+1]]``.
    With compressed postings in ``arrays`` (``postings_words``; ``extra``: ``num_docs``, ``block_size``
    and optionally ``root`` / ``verify``) the exact methods decode each query's lists first (module
    docstring). ``threads`` is the number of worker threads: queries are dealt round-robin to ``4 * threads`` groups,
    each run by a GIL-free compiled kernel on a thread pool, and each group owns its scratch (a
    ``WINDOW``-document accumulator for the exact methods, ``num_docs`` int32 stamps plus a
    vocabulary-sized query vector for ``approx``), so at most ``threads`` scratch sets are live. (A thread
    pool over ``nogil`` kernels rather than numba ``prange``: the same parallelism, and
    parallel-accelerator compilation, which took ~6-10 s per method and impact dtype on a cold cache, is
    avoided.)
    """
    if method not in MODES:
        raise ValueError(f"method must be one of {', '.join(map(repr, MODES))}, not {method!r}")
    extra = dict(extra)
    num_docs = _num_docs(arrays, extra)
    po = readonly(arrays["postings_offsets"], np.int64)
    q_indptr = readonly(q_indptr, np.int64)
    nq, k = len(q_indptr) - 1, int(k)
    q_terms, q_weights = prepare_query(q_terms, q_weights, len(po) - 1)
    if nq < 0 or q_indptr[0] != 0 or q_indptr[-1] != len(q_terms) or np.any(np.diff(q_indptr) < 0):
        raise ValueError("q_indptr does not describe q_terms")
    allow_indptr = readonly(allow_indptr, np.int64)
    allow_docs = readonly(allow_docs, np.int32)
    if len(allow_indptr):
        if len(allow_indptr) != nq + 1 or allow_indptr[-1] != len(allow_docs):
            raise ValueError("allow_indptr does not describe allow_docs for every query")
        if len(allow_docs) and (allow_docs.min() < 0 or allow_docs.max() >= num_docs):
            raise ValueError(f"allow_docs holds a document index outside [0, {num_docs})")
    compressed = method != "approx" and "postings_words" in arrays
    codec_args = {}
    if compressed:
        codec_args = {"block_size": int(extra.pop("block_size")), "root": extra.pop("root", ""),
                      "verify": bool(extra.pop("verify", True))}
    else:
        extra.pop("root", None)
        extra.pop("verify", None)
    if method != "approx" and extra:
        raise TypeError(f"method {method!r} takes no extra arguments, got {sorted(extra)}")
    out_idx, out_scores = outputs(max(nq, 0), max(k, 0))
    if nq <= 0 or k <= 0:
        return out_idx, out_scores
    threads = max(1, int(threads or 1))
    groups = min(nq, threads * 4 if threads > 1 else 1)
    check = None
    if compressed:
        run, check = _compressed_batch(method, arrays, num_docs, q_indptr, q_terms, q_weights, allow_indptr, allow_docs,
                                       groups, out_idx, out_scores, **codec_args)
    elif method == "approx":
        run = approx.batch_runner(arrays, num_docs, q_indptr, q_terms, q_weights, allow_indptr, allow_docs, groups,
                                  out_idx, out_scores, **extra)
    else:
        pd, pi = readonly(arrays["postings_docs"], np.int32), readonly(arrays["postings_impacts"])
        maxscore = method == "exact"
        if maxscore:
            bo, bl, bm = (readonly(arrays["block_offsets"], np.int64), readonly(arrays["block_last_doc"], np.int32),
                          readonly(arrays["block_max"]))
        else:  # term at a time reads no block arrays: empty read-only ones of the same types (one specialisation)
            bo, bl, bm = (readonly(np.zeros(0, np.int64)), readonly(np.zeros(0, np.int32)),
                          readonly(np.zeros(0, pi.dtype)))

        def run(g):
            _exact_group(po, pd, pi, bo, bl, bm, maxscore, np.int64(num_docs), q_indptr, q_terms, q_weights,
                         allow_indptr, allow_docs, np.int64(g), np.int64(groups), np.int64(WINDOW), out_idx,
                         out_scores)
    run_groups(run, groups, threads)
    if check is not None:
        check()
    return out_idx, out_scores


__all__ = ["MODES", "WHOLE_TAAT_DOCS", "WINDOW", "accumulator_docs", "build_block_max", "search_batch",
           "search_compressed", "search_exact", "search_taat"]
