"""Approximate top-k search in the spirit of Seismic (Bruch, Nardini, Rulli, Venturini, SIGIR 2024).

**Structure** (``build_approx``; stored by the builder as ``approx/<name>.npy``):

1. *Static pruning.* Each posting list keeps its ``n_postings`` largest impacts (``prune="fixed"``,
   Seismic's λ; ties go to lower document indices), or every posting at or above one global impact
   threshold chosen so that about ``n_postings`` postings per non-empty list are kept overall, capped at
   ``max_fraction * n_postings`` per list (``prune="global"``). ``n_postings=None`` picks
   ``max(1000, ceil(0.2 * nnz / non-empty lists))``. A value ≥ the longest list disables pruning.
2. *Blocking.* A kept list of ``n`` postings is split into ``ceil(centroid_fraction * n)`` blocks.
   ``clustering="kmeans"`` is Seismic's one-shot random k-means: that many member documents are drawn
   at random (seeded per term) as centroids and every document joins the centroid with the largest
   inner product, computed on the ``doc_cut`` largest components of both vectors (the list's own term
   left out: every member has it). ``clustering="docid"`` cuts the doc-sorted list into equal runs
   instead (cheaper, no geometry). Blocks are ordered by their largest impact on the list's term,
   largest first; documents inside a block are ascending.
3. *Summaries.* A block's summary is the component-wise maximum of its documents' forward vectors,
   reduced to the largest components holding ``summary_energy`` of its total mass (for uint16 impacts
   the components are ranked in buckets of 64 impact levels, inside a bucket by first appearance), and
   quantised to uint8 with a per-block scale, rounded **up** (``value * scale >= impact``) — every
   value ≥ 1. Summaries are stored **by term, per chunk of a posting list** (Seismic's transposed layout):
   a chunk is a run of at most 256 consecutive blocks of one list holding at most 65,535 summary entries
   (one longer summary is a chunk of its own); for each term in any of its summaries, ascending, the
   (block within the chunk, value) pairs of the summaries holding it, blocks ascending — so a query reads
   only its own terms' entries (SPLADE summaries hold a few hundred terms, of which a query shares 1–3 %),
   in one byte for the block and one for the value. :func:`decode_summary` gathers one block's summary.

Arrays: ``list_blocks`` int64[V+1] (blocks of term t), ``block_doc_offsets`` int64[B+1], ``block_docs``
int32, ``summary_scales`` float32[B]; ``list_chunks`` int64[V+1] (chunks of term t), ``chunk_blocks``
int64[C+1] (a chunk's first block; the last entry is B); per chunk ``c`` its summary terms
``component_terms[chunk_components[c]:chunk_components[c+1]]`` (uint16 when the vocabulary fits, else
int32) and for the ``j``-th of them the pairs ``chunk_pairs[c] + component_ends[j-1] .. chunk_pairs[c] +
component_ends[j]`` (``component_ends`` relative to the chunk's first pair: uint16, uint32 only when a
chunk holds more than 65,535 pairs) of ``pair_blocks`` uint8 and ``pair_values`` uint8. An index with the
older per-block layout (``summary_terms``, ``summary_offsets``) is refused at search with a one-line
"rebuild the index" error.

**Search** (``search_approx``). The query's ``query_cut`` heaviest terms are visited, heaviest first;
for each, chunk by chunk, the summary scores of the chunk's blocks are computed first (each query term
looked up among the chunk's summary terms — galloping, the query's terms ascending — and its pairs added:
a dot product with the full query, summed in ascending term order), then its blocks are taken in stored
order: a block whose summary score times ``heap_factor`` is below the current k-th score is skipped,
otherwise each of its documents not seen yet (a per-thread generation stamp) is scored exactly from the
forward index with the full query and offered to the top-k heap (summed vectorised, in any order: when the
query's float64 sums are exact — ``sums_exact``, always for SPLADE queries — that is the exact score; otherwise
only a document that may enter the heap is summed again in ascending term order; on a forward index of
``PREFETCH_MIN_BYTES`` or more the offsets and rows of the next documents of the block are prefetched). A
chunk's pairs of the query's terms are prefetched as they are found and added after all the lookups.
Scores and the tie rule are those of the exact kernels (float64 sums in ascending term order, rounded to
float32, ties to the lower document index), so with no static pruning, ``summary_energy=1``,
``heap_factor=1`` and ``query_cut`` ≥ the query's length the answer is exactly the exhaustive one
(summaries are then upper bounds).

**Forward rows** (:mod:`.forward`): term ids are uint16 when the vocabulary fits (int32 otherwise; the
kernels are compiled for either), and a visited document's chunk of 64 rows is checked — offsets and
term ids in bounds, checksum — the first time the reader visits it (``checked`` flags kept by the
index), so a damaged row is an IntegrityError, never an out-of-bounds read or a silently wrong score.
A block's documents are bounds-checked too, and so are the summaries' offsets and pair blocks (an
IntegrityError naming ``approx/pair_blocks.npy`` and the list, never an out-of-range read); a summary term
id is only compared with the query's, never used as an index. A corrupt term id or value that stays in range
can only change which blocks are visited (as a worse summary would), never a document's score, which comes
from the checked forward rows; the approx files are also covered by the manifest's xxh3 checksums when the
index is opened with ``verify``.

``heap_factor`` > 0: below 1 skips more blocks (faster, lower recall), above 1 fewer (energy-pruned
summaries underestimate block scores). ``PRESETS`` name ``(query_cut, heap_factor)`` pairs by the
recall@10 against exact search they reach with the default build on SciFact, NFCorpus and the dictionary
corpus (splade-tiny; tuned on dev queries, reported on test queries: see the comment above ``PRESETS``).
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
from numba import njit

from heron.errors import HeronError, IntegrityError
from heron.indexing.inverted import forward
from heron.indexing.inverted.forward import CHUNK_SHIFT, check_doc
from heron.indexing.inverted.prefetch import prefetch
from heron.indexing.inverted.topk import (
    INT32_MAX,
    SLACK,
    begin_query,
    end_query,
    heap_offer,
    readonly,
    run_groups,
    scratch,
    search_one,
)

ARRAY_NAMES = ("list_blocks", "block_doc_offsets", "block_docs", "summary_scales", "list_chunks", "chunk_blocks",
               "chunk_components", "chunk_pairs", "component_terms", "component_ends", "pair_blocks", "pair_values")

# Calibrated with the default build on three real splade-tiny corpora — SciFact (5,183 documents), NFCorpus (3,633)
# and the dictionary corpus (118,415 GCIDE entries) — on dev queries (SciFact: its train queries; NFCorpus and the
# dictionary corpus: dev) and reported on their test queries (docs/BENCHMARKS.md, "Approximate presets on every
# real corpus"; bench/approx_presets.py regenerates it). Each pair is the cheapest of a (query_cut, heap_factor) grid
# — cost: summary plus forward-index entries read, summed over the corpora — whose mean dev recall@10 against exact
# search is at least the target plus a margin (0.02 for recall90 / recall95, 0.004 for recall99) on every corpus.
# Test recall@10 (SciFact / NFCorpus / dictionary): recall90 0.973 / 0.976 / 0.935, recall95 0.988 / 0.991 / 0.977,
# recall99 0.997 / 0.997 / 0.997. heap_factor > 1 visits blocks whose summary score is below the threshold:
# energy-pruned summaries underestimate (the dictionary corpus needs it most). Recall depends on the data and the
# build: on small slices a low query_cut loses more (docs/BENCHMARKS.md): re-check on your own collection.
PRESETS: dict[str, dict[str, float | int]] = {
    "recall90": {"query_cut": 6, "heap_factor": 1.2},
    "recall95": {"query_cut": 7, "heap_factor": 1.4},
    "recall99": {"query_cut": 8, "heap_factor": 2.0},
}

DEFAULT_MIN_POSTINGS = 1000
DEFAULT_POSTING_FRACTION = 0.2
_SUMMARY_LIMIT = 1 << 24  # summary entries computed per chunk (bounds the build's scratch memory)


# -- build: static pruning -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _histogram(values, out):
    for i in range(values.shape[0]):
        out[values[i]] += 1


@njit(cache=True, nogil=True)
def _count_at_least(po, pi, tau, out):
    for t in range(po.shape[0] - 1):
        c = 0
        for p in range(po[t], po[t + 1]):
            if pi[p] >= tau:
                c += 1
        out[t] = c


@njit(cache=True, nogil=True)
def _select_group(po, pd, pi, ko, order, g, groups, max_impact, kept_docs, kept_imp):
    hist = np.zeros(max_impact + 1, np.int64)
    for r in range(g, order.shape[0], groups):
        t = order[r]
        a = po[t]
        b = po[t + 1]
        o = ko[t]
        kc = ko[t + 1] - o
        if kc == 0:
            continue
        if kc >= b - a:
            for p in range(a, b):
                kept_docs[o] = pd[p]
                kept_imp[o] = pi[p]
                o += 1
            continue
        top = 0
        for p in range(a, b):
            v = np.int64(pi[p])
            hist[v] += 1
            if v > top:
                top = v
        cum = 0
        tau = top
        while cum + hist[tau] < kc:
            cum += hist[tau]
            tau -= 1
        need = kc - cum  # how many postings with impact == tau to keep (lowest documents first)
        for v in range(top + 1):
            hist[v] = 0
        for p in range(a, b):
            v = np.int64(pi[p])
            if v > tau or (v == tau and need > 0):
                if v == tau:
                    need -= 1
                kept_docs[o] = pd[p]
                kept_imp[o] = pi[p]
                o += 1


# -- build: blocking -----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _doc_cut_group(fo, ft, fi, g, groups, cut_terms, cut_vals):
    n = fo.shape[0] - 1
    c = cut_terms.shape[1]
    for d in range(g, n, groups):
        a = fo[d]
        b = fo[d + 1]
        m = b - a
        if m <= c:
            for j in range(m):
                cut_terms[d, j] = ft[a + j]
                cut_vals[d, j] = fi[a + j]
            continue
        vals = np.empty(m, np.int64)
        for j in range(m):
            vals[j] = -np.int64(fi[a + j])
        idx = np.argsort(vals, kind="mergesort")  # largest impacts, ties to the lower term
        for j in range(c):
            cut_terms[d, j] = ft[a + idx[j]]
            cut_vals[d, j] = fi[a + idx[j]]


@njit(cache=True, nogil=True)
def _cut_length(cut_terms, d):
    """How many of document ``d``'s cut terms are set (a row is padded with -1)."""
    m = 0
    while m < cut_terms.shape[1] and cut_terms[d, m] >= 0:
        m += 1
    return m


@njit(cache=True, nogil=True)
def _cluster_group(ko, kept_docs, kept_imp, co, order, g, groups, kmeans, cut_terms, cut_vals, seed, vocab_size,
                   max_n, max_nb, out_docs, slot_sizes):
    doc_cut = cut_terms.shape[1]
    head = np.full(vocab_size if kmeans else 0, -1, np.int64)
    ent_c = np.empty(max_nb * doc_cut if kmeans else 0, np.int64)
    ent_v = np.empty(max_nb * doc_cut if kmeans else 0, np.float64)
    ent_next = np.empty(max_nb * doc_cut if kmeans else 0, np.int64)
    acc = np.zeros(max_nb, np.float64)
    touched = np.empty(max_nb, np.int64)
    label = np.empty(max_n, np.int64)
    cpos = np.empty(max_n, np.int64)
    cnt = np.zeros(max_nb, np.int64)
    cmax = np.zeros(max_nb, np.float64)
    fill = np.zeros(max_nb, np.int64)
    for r in range(g, order.shape[0], groups):
        t = order[r]
        a = ko[t]
        n = ko[t + 1] - a
        nbt = co[t + 1] - co[t]
        if n == 0:
            continue
        if kmeans and nbt > 1:
            for i in range(n):
                cpos[i] = i
            x = np.int64(seed) * np.int64(2654435761) + np.int64(t) * np.int64(40503) + np.int64(1)
            for c in range(nbt):  # partial Fisher-Yates: nbt distinct members as centroids
                x = x * np.int64(6364136223846793005) + np.int64(1442695040888963407)
                pick = c + ((x >> np.int64(33)) & np.int64(0x7FFFFFFF)) % (n - c)
                tmp = cpos[c]
                cpos[c] = cpos[pick]
                cpos[pick] = tmp
            ne = 0
            for c in range(nbt):  # index the centroids' cut terms (the list's own term left out)
                dc = kept_docs[a + cpos[c]]
                for j in range(_cut_length(cut_terms, dc)):
                    u = cut_terms[dc, j]
                    if u != t:
                        ent_c[ne] = c
                        ent_v[ne] = cut_vals[dc, j]
                        ent_next[ne] = head[u]
                        head[u] = ne
                        ne += 1
            for i in range(n):
                d = kept_docs[a + i]
                nt = 0
                for j in range(_cut_length(cut_terms, d)):
                    u = cut_terms[d, j]
                    if u == t:
                        continue
                    xv = np.float64(cut_vals[d, j])
                    e = head[u]
                    while e >= 0:
                        c = ent_c[e]
                        if acc[c] == 0.0:
                            touched[nt] = c
                            nt += 1
                        acc[c] += xv * ent_v[e]
                        e = ent_next[e]
                best = -1
                if nt > 0:
                    bv = -1.0
                    for j in range(nt):
                        c = touched[j]
                        if acc[c] > bv or (acc[c] == bv and c < best):
                            bv = acc[c]
                            best = c
                        acc[c] = 0.0
                else:  # nothing in common: the centroid closest in the list's own impact
                    own = np.float64(kept_imp[a + i])
                    bd = np.inf
                    for c in range(nbt):
                        diff = abs(np.float64(kept_imp[a + cpos[c]]) - own)
                        if diff < bd:
                            bd = diff
                            best = c
                label[i] = best
            for c in range(nbt):  # clear the centroid index
                dc = kept_docs[a + cpos[c]]
                for j in range(_cut_length(cut_terms, dc)):
                    head[cut_terms[dc, j]] = -1
        else:
            size = (n + nbt - 1) // nbt
            for i in range(n):
                label[i] = i // size
        # order clusters by their largest impact on the list's term (then by cluster id)
        for c in range(nbt):
            cnt[c] = 0
            cmax[c] = 0.0
        for i in range(n):
            c = label[i]
            cnt[c] += 1
            v = np.float64(kept_imp[a + i])
            if v > cmax[c]:
                cmax[c] = v
        keys = np.empty(nbt, np.float64)
        for c in range(nbt):
            keys[c] = -cmax[c] if cnt[c] > 0 else 1.0
        corder = np.argsort(keys, kind="mergesort")
        pos = a
        base = co[t]
        for rank in range(nbt):
            c = corder[rank]
            fill[c] = pos
            pos += cnt[c]
            slot_sizes[base + rank] = cnt[c]
        for i in range(n):  # stable: documents stay ascending inside a block
            c = label[i]
            out_docs[fill[c]] = kept_docs[a + i]
            fill[c] += 1


# -- build: summaries ----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _summary_group(bdo, bd, fo, ft, fi, b_lo, b_hi, bound_off, g, groups, energy, shift, nbuckets, vocab_size,
                   out_terms, out_vals, out_len, out_scale):
    dense = np.zeros(vocab_size, fi.dtype)  # impacts are >= 1: zero means untouched
    touched = np.empty(vocab_size, np.int32)
    mass = np.zeros(nbuckets, np.float64)
    for b in range(b_lo + g, b_hi, groups):
        nt = 0
        for p in range(bdo[b], bdo[b + 1]):
            d = bd[p]
            for i in range(fo[d], fo[d + 1]):
                u = ft[i]
                v = fi[i]
                if dense[u] == 0:
                    touched[nt] = u
                    nt += 1
                    dense[u] = v
                elif v > dense[u]:
                    dense[u] = v
        total = 0.0
        for j in range(nt):
            v = np.int64(dense[touched[j]])
            total += v
            mass[v >> shift] += v
        cut_bucket = -1  # keep every bucket above it, and part of it
        partial = 0.0
        if energy < 1.0:
            target = energy * total
            cum = 0.0
            bucket = nbuckets - 1
            while bucket >= 0:
                if cum + mass[bucket] >= target:
                    break
                cum += mass[bucket]
                bucket -= 1
            cut_bucket = bucket
            partial = target - cum
        o = bound_off[b - b_lo]
        m = 0
        top = 0
        for j in range(nt):  # (three simple passes compile to much faster code than one fused pass)
            u = touched[j]
            v = np.int64(dense[u])
            if (v >> shift) > cut_bucket:
                out_terms[o + m] = u
                out_vals[o + m] = v
                m += 1
                if v > top:
                    top = v
        if partial > 0:
            for j in range(nt):
                u = touched[j]
                v = np.int64(dense[u])
                if (v >> shift) == cut_bucket:
                    out_terms[o + m] = u
                    out_vals[o + m] = v
                    m += 1
                    if v > top:
                        top = v
                    partial -= v
                    if partial <= 0:
                        break
        for j in range(nt):
            u = touched[j]
            mass[np.int64(dense[u]) >> shift] = 0.0
            dense[u] = 0
        if m > 1:  # ascending term ids (``_transpose`` keeps each list's terms ascending)
            idx = np.argsort(out_terms[o:o + m])
            st = out_terms[o:o + m][idx]
            sv = out_vals[o:o + m][idx]
            out_terms[o:o + m] = st
            out_vals[o:o + m] = sv
        scale = 1.0
        if top > 255:
            scale = np.float64(np.float32(top / 255.0 * (1.0 + 1e-6)))
            for j in range(m):
                q = math.ceil(out_vals[o + j] / scale)
                out_vals[o + j] = min(q, 255)
        out_len[b - b_lo] = m
        out_scale[b - b_lo] = scale


CHUNK_BLOCKS = 256  # blocks of a list summarised together at most (a block within a chunk is one byte)
CHUNK_PAIRS = 65535  # (block, value) pairs of a chunk at most, unless one block's summary alone is longer


@njit(cache=True, nogil=True)
def _chunk_starts(lb, t_lo, t_hi, b_lo, out_len):
    """Lists ``t_lo..t_hi`` cut into chunks — runs of consecutive blocks of one list, at most
    ``CHUNK_BLOCKS`` blocks and ``CHUNK_PAIRS`` summary entries (a longer single summary is a chunk of its
    own) — as each chunk's first block, then the end, and the number of chunks of each list."""
    starts = np.empty(lb[t_hi] - lb[t_lo] + 1, np.int64)
    per_list = np.zeros(t_hi - t_lo, np.int64)
    n = 0
    for t in range(t_lo, t_hi):
        b = lb[t]
        while b < lb[t + 1]:
            starts[n] = b
            n += 1
            per_list[t - t_lo] += 1
            blocks = 0
            pairs = 0
            while b < lb[t + 1] and blocks < CHUNK_BLOCKS and (pairs == 0 or pairs + out_len[b - b_lo] <= CHUNK_PAIRS):
                pairs += out_len[b - b_lo]
                blocks += 1
                b += 1
    starts[n] = lb[t_hi]
    return starts[:n + 1], per_list


@njit(cache=True, nogil=True)
def _transpose(starts, b_lo, bound_off, out_len, out_terms, out_vals, vocab_size):
    """Chunks' summaries (chunk ``c``: blocks ``starts[c]..starts[c+1]``; block ``b``'s ascending terms and
    values at ``bound_off[b - b_lo]``, ``out_len[b - b_lo]`` of them) turned around: per chunk, its distinct
    summary terms ascending and for each the (block within the chunk, value) pairs of the summaries holding
    it, blocks ascending. Returns the terms, each term's pairs' end relative to its chunk's first pair, the
    pairs' blocks and values, and per chunk its number of terms and of pairs."""
    count = np.zeros(vocab_size, np.int64)
    nc = starts.shape[0] - 1
    chunk_terms = np.zeros(nc, np.int64)
    chunk_pairs = np.zeros(nc, np.int64)
    for c in range(nc):
        k = 0
        for b in range(starts[c], starts[c + 1]):
            o = bound_off[b - b_lo]
            for j in range(o, o + out_len[b - b_lo]):
                u = out_terms[j]
                if count[u] == 0:
                    k += 1
                count[u] += 1
            chunk_pairs[c] += out_len[b - b_lo]
        chunk_terms[c] = k
        for b in range(starts[c], starts[c + 1]):
            o = bound_off[b - b_lo]
            for j in range(o, o + out_len[b - b_lo]):
                count[out_terms[j]] = 0
    terms = np.empty(chunk_terms.sum(), np.int32)
    ends = np.empty(terms.shape[0], np.int64)
    pair_blocks = np.empty(chunk_pairs.sum(), np.uint8)
    pair_values = np.empty(pair_blocks.shape[0], np.uint8)
    touched = np.empty(vocab_size, np.int32)
    pos = np.zeros(vocab_size, np.int64)
    c_base = 0
    p_base = 0
    for c in range(nc):
        nt = 0
        for b in range(starts[c], starts[c + 1]):
            o = bound_off[b - b_lo]
            for j in range(o, o + out_len[b - b_lo]):
                u = out_terms[j]
                if count[u] == 0:
                    touched[nt] = u
                    nt += 1
                count[u] += 1
        ids = np.sort(touched[:nt])
        run = 0
        for k in range(nt):
            u = ids[k]
            pos[u] = p_base + run
            run += count[u]
            terms[c_base + k] = u
            ends[c_base + k] = run
            count[u] = 0
        for b in range(starts[c], starts[c + 1]):
            o = bound_off[b - b_lo]
            for j in range(o, o + out_len[b - b_lo]):
                u = out_terms[j]
                pair_blocks[pos[u]] = b - starts[c]
                pair_values[pos[u]] = out_vals[j]
                pos[u] += 1
        c_base += nt
        p_base += run
    return terms, ends, pair_blocks, pair_values, chunk_terms, chunk_pairs


def _chunked(list_blocks, t_lo, t_hi, b_lo, bound_off, out_len, out_terms, out_vals, vocab_size) -> tuple:
    """``(t_lo, chunks per list, chunk starts without the end, _transpose's result)`` for lists
    ``t_lo..t_hi`` (``_stored_summaries`` joins them)."""
    starts, per_list = _chunk_starts(list_blocks, t_lo, t_hi, b_lo, out_len)
    return t_lo, per_list, starts[:-1], _transpose(starts, b_lo, bound_off, out_len, out_terms, out_vals,
                                                   vocab_size)


def _stored_summaries(list_blocks, parts) -> dict[str, np.ndarray]:
    """The summary arrays as stored, from ``_chunked``'s results for runs of consecutive lists (lists in no
    run have no blocks): term ids as the forward index stores them (``forward.term_dtype``), pair ends uint16
    unless a chunk holds more than 65,535 pairs (a single summary that long), else uint32."""
    vocab_size = len(list_blocks) - 1
    list_chunks = np.zeros(vocab_size + 1, np.int64)
    for t_lo, per_list, *_ in parts:
        list_chunks[t_lo + 1:t_lo + 1 + len(per_list)] = per_list
    np.cumsum(list_chunks, out=list_chunks)

    def joined(pick, dtype):
        return np.concatenate([pick(p) for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)

    starts = np.append(joined(lambda p: p[2], np.int64), list_blocks[-1])
    counts = [np.zeros(len(starts), np.int64) for _ in range(2)]
    for i, c in enumerate(counts):
        c[1:] = joined(lambda p, i=i: p[3][4 + i], np.int64)
        np.cumsum(c, out=c)
    ends = joined(lambda p: p[3][1], np.int64)
    wide = len(ends) and int(ends.max()) > np.iinfo(np.uint16).max
    return {"list_chunks": list_chunks, "chunk_blocks": starts, "chunk_components": counts[0],
            "chunk_pairs": counts[1],
            "component_terms": joined(lambda p: p[3][0], forward.term_dtype(vocab_size)),
            "component_ends": ends.astype(np.uint32 if wide else np.uint16),
            "pair_blocks": joined(lambda p: p[3][2], np.uint8), "pair_values": joined(lambda p: p[3][3], np.uint8)}


def transpose_summaries(list_blocks, summaries) -> dict[str, np.ndarray]:
    """The stored summary arrays of blocks whose summaries are given as ``(ascending term ids, values)``
    pairs, one per block (values 1..255), ``list_blocks`` the blocks of each list: what ``build_approx``
    stores for the summaries it computes (used to build summaries by hand)."""
    lb = np.asarray(list_blocks, np.int64)
    lengths = np.array([len(t) for t, _ in summaries], np.int64)
    bound_off = np.zeros(len(summaries) + 1, np.int64)
    np.cumsum(lengths, out=bound_off[1:])
    terms = np.concatenate([np.asarray(t, np.int32) for t, _ in summaries] or [np.zeros(0, np.int32)])
    values = np.concatenate([np.asarray(v, np.int32) for _, v in summaries] or [np.zeros(0, np.int32)])
    vocab_size = len(lb) - 1
    if len(terms) and (terms.min() < 0 or terms.max() >= vocab_size):
        raise ValueError(f"summary term ids must lie in [0, {vocab_size})")
    return _stored_summaries(lb, [_chunked(lb, 0, vocab_size, 0, bound_off, lengths, terms, values, vocab_size)])


def decode_summary(approx_arrays: dict, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Block ``block``'s summary as stored: ``(term ids int64, quantised values uint8)``, ascending terms
    (the values times ``summary_scales[block]`` bound the block's impacts), gathered from its chunk's
    summaries."""
    cb = np.asarray(approx_arrays["chunk_blocks"])
    c = int(np.searchsorted(cb, block, side="right")) - 1
    local = block - int(cb[c])
    c0, c1 = (int(x) for x in approx_arrays["chunk_components"][c:c + 2])
    base = int(approx_arrays["chunk_pairs"][c])
    terms = np.asarray(approx_arrays["component_terms"][c0:c1]).astype(np.int64)
    ends = np.asarray(approx_arrays["component_ends"][c0:c1]).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    blocks = np.asarray(approx_arrays["pair_blocks"])
    values = np.asarray(approx_arrays["pair_values"])
    out_t, out_v = [], []
    for term, a, b in zip(terms.tolist(), starts.tolist(), ends.tolist()):
        j = a + int(np.searchsorted(blocks[base + a:base + b], local))
        if j < b and int(blocks[base + j]) == local:
            out_t.append(term)
            out_v.append(values[base + j])
    return np.array(out_t, np.int64), np.array(out_v, np.uint8)


def build_approx(postings_offsets, postings_docs, postings_impacts, forward_offsets, forward_terms,
                 forward_impacts, num_docs, *, n_postings=None, prune="fixed", max_fraction=1.5,
                 centroid_fraction=0.2, clustering="kmeans", doc_cut=15, summary_energy=0.5, seed=0,
                 threads=None) -> dict[str, np.ndarray]:
    """The approximate-search arrays of an index (see the module docstring for the parameters)."""
    po = readonly(postings_offsets, np.int64)
    pd, pi = readonly(postings_docs, np.int32), readonly(postings_impacts)
    fo, ft, fi = readonly(forward_offsets, np.int64), _terms(forward_terms), readonly(forward_impacts)
    num_docs = int(num_docs)
    vocab_size = len(po) - 1
    if prune not in ("fixed", "global"):
        raise ValueError(f"prune must be 'fixed' or 'global', not {prune!r}")
    if clustering not in ("kmeans", "docid"):
        raise ValueError(f"clustering must be 'kmeans' or 'docid', not {clustering!r}")
    if not 0 < float(centroid_fraction) <= 1:
        raise ValueError(f"centroid_fraction must be in (0, 1], not {centroid_fraction!r}")
    if not 0 < float(summary_energy) <= 1:
        raise ValueError(f"summary_energy must be in (0, 1], not {summary_energy!r}")
    if int(doc_cut) < 1:
        raise ValueError(f"doc_cut must be positive, not {doc_cut!r}")
    df = np.diff(po)
    nonempty = int(np.count_nonzero(df))
    if n_postings is None:
        n_postings = max(DEFAULT_MIN_POSTINGS, math.ceil(DEFAULT_POSTING_FRACTION * len(pd) / max(nonempty, 1)))
    n_postings = int(n_postings)
    if n_postings < 1:
        raise ValueError(f"n_postings must be positive, not {n_postings}")
    threads = max(1, int(threads or os.cpu_count() or 1))
    groups = threads * 8 if threads > 1 else 1
    run = run_groups
    # 1. static pruning
    if prune == "fixed" or len(pd) == 0:
        kept = np.minimum(df, n_postings)
    else:
        counts = np.zeros(int(np.iinfo(pi.dtype).max) + 1, np.int64)
        _histogram(pi, counts)
        counts = counts[::-1].cumsum()[::-1]
        budget = n_postings * nonempty
        tau = int(np.searchsorted(-counts, -budget, side="left"))  # smallest value with count(>= v) <= budget
        tau = max(tau, 1)
        kept = np.zeros(vocab_size, np.int64)
        _count_at_least(po, pi, pi.dtype.type(min(tau, np.iinfo(pi.dtype).max)), kept)
        kept = np.minimum(kept, max(1, math.ceil(max_fraction * n_postings)))
    ko = np.zeros(vocab_size + 1, np.int64)
    np.cumsum(kept, out=ko[1:])
    order = np.argsort(-kept, kind="stable").astype(np.int64)  # big lists spread over the groups
    kept_docs = np.empty(int(ko[-1]), np.int32)
    kept_imp = np.empty(int(ko[-1]), pi.dtype)
    max_impact = int(pi.max()) if len(pi) else 0
    run(lambda g: _select_group(po, pd, pi, ko, order, g, groups, max_impact, kept_docs, kept_imp), groups, threads)

    # 2. blocking
    nblocks = np.where(kept > 0, np.maximum(1, np.ceil(kept * float(centroid_fraction))), 0).astype(np.int64)
    nblocks = np.minimum(nblocks, kept)
    co = np.zeros(vocab_size + 1, np.int64)
    np.cumsum(nblocks, out=co[1:])
    kmeans = clustering == "kmeans"
    if kmeans:
        cut_terms = np.full((num_docs, int(doc_cut)), -1, np.int32)
        cut_vals = np.zeros((num_docs, int(doc_cut)), np.float32)
        run(lambda g: _doc_cut_group(fo, ft, fi, g, groups, cut_terms, cut_vals), groups, threads)
    else:
        cut_terms, cut_vals = np.full((0, 1), -1, np.int32), np.zeros((0, 1), np.float32)
    block_docs = np.empty(len(kept_docs), np.int32)
    slot_sizes = np.zeros(int(co[-1]), np.int64)
    max_n, max_nb = (int(kept.max()), int(nblocks.max())) if len(kept) else (0, 0)
    run(lambda g: _cluster_group(ko, kept_docs, kept_imp, co, order, g, groups, kmeans, cut_terms, cut_vals,
                                 int(seed), vocab_size, max_n, max_nb, block_docs, slot_sizes), groups, threads)
    cut_terms = cut_vals = kept_docs = kept_imp = None  # free them before the summaries
    used = slot_sizes > 0
    slot_term = np.repeat(np.arange(vocab_size), nblocks)
    per_term = np.bincount(slot_term[used], minlength=vocab_size)
    list_blocks = np.zeros(vocab_size + 1, np.int64)
    np.cumsum(per_term, out=list_blocks[1:])
    sizes = slot_sizes[used]
    block_doc_offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=block_doc_offsets[1:])

    # 3. summaries, a chunk of whole lists at a time, stored transposed per list
    num_blocks = len(sizes)
    doc_nnz = np.diff(fo)
    bounds = np.minimum(np.add.reduceat(doc_nnz[block_docs], block_doc_offsets[:-1]), vocab_size) \
        if num_blocks else np.zeros(0, np.int64)
    shift = 0 if pi.dtype.itemsize == 1 else 6
    nbuckets = (int(np.iinfo(fi.dtype).max) >> shift) + 1
    parts = []
    scales = np.ones(num_blocks, np.float32)
    cum_bounds = np.concatenate([[0], np.cumsum(bounds)])
    list_bounds = cum_bounds[list_blocks]  # summary entries computed for lists 0..t-1 at most
    biggest = int(np.diff(list_bounds).max()) if num_blocks else 0
    room = min(int(cum_bounds[-1]), _SUMMARY_LIMIT + biggest)
    out_terms = np.empty(room, np.int32)  # reused by every chunk (fresh buffers cost page faults)
    out_vals = np.empty(room, np.int32)
    t_lo = 0
    while t_lo < vocab_size:
        t_hi = int(np.searchsorted(list_bounds, list_bounds[t_lo] + _SUMMARY_LIMIT, side="right")) - 1
        t_hi = min(max(t_hi, t_lo + 1), vocab_size)
        lo, hi = int(list_blocks[t_lo]), int(list_blocks[t_hi])
        if hi > lo:
            bound_off = np.zeros(hi - lo + 1, np.int64)
            np.cumsum(bounds[lo:hi], out=bound_off[1:])
            out_len = np.zeros(hi - lo, np.int64)
            out_scale = np.ones(hi - lo, np.float64)
            run(lambda g, lo=lo, hi=hi, bound_off=bound_off, out=(out_terms, out_vals, out_len, out_scale):
                _summary_group(block_doc_offsets, block_docs, fo, ft, fi, lo, hi, bound_off, g, groups,
                               float(summary_energy), shift, nbuckets, vocab_size, *out), groups, threads)
            scales[lo:hi] = out_scale
            parts.append(_chunked(list_blocks, t_lo, t_hi, lo, bound_off, out_len, out_terms, out_vals, vocab_size))
        t_lo = t_hi
    return {"list_blocks": list_blocks, "block_doc_offsets": block_doc_offsets, "block_docs": block_docs,
            "summary_scales": scales, **_stored_summaries(list_blocks, parts)}


# -- search --------------------------------------------------------------------------------------------
FLOAT32_BELOW = 1.0 - 2.0 ** -22  # x < t * FLOAT32_BELOW (t a float32) rounds to a float32 below t


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _row_dot(qdense, ft, fi, a, b):
    """A forward row's dot product with the query, its additions in any order (``reassoc``: LLVM vectorises
    it with gathers of the query weights, ``vgatherdpd``): within ``SLACK`` of the ascending-order sum the exact kernels
    compute (all terms are >= 0, float64), and equal to it when the query's sums are exact
    (``sums_exact``). Not inlined by numba, which would drop these flags; LLVM inlines it. Positions are
    unsigned (``a <= b``, checked by the caller), which spares numba's negative-index wrap-around on every
    read (docs/BENCHMARKS.md)."""
    s = 0.0
    for i in range(np.uint64(a), np.uint64(b)):
        s += qdense[ft[i]] * fi[i]
    return s


@njit(cache=True, nogil=True, inline="always")
def _row_sum(qdense, ft, fi, a, b):
    """A forward row's dot product with the query summed in ascending term order, as the exact kernels sum
    (float64; unsigned positions as in ``_row_dot``)."""
    s = 0.0
    i = np.uint64(a)
    end = np.uint64(b)
    while i < end:
        s += qdense[ft[i]] * fi[i]
        i += np.uint64(1)
    return s


PREFETCH_OFFSETS = 4  # block positions ahead whose forward offsets are prefetched
PREFETCH_ROWS = 2  # ... and whose forward rows (fetched offsets by then)
PREFETCH_ROW_LIMIT = 1024  # entries of a row prefetched at most (a hint; a damaged offset cannot run long)
# Forward rows are prefetched only when the forward index is at least this large: rows that stay in the caches
# gain nothing and pay for the extra instructions (bench/forward_row_cost.py: 1.0-1.5 against 0.7-1.3 ns per
# entry on SciFact's 3.7 MB, 1.7 against 4.0 ns on the dictionary corpus's 33 MB).
PREFETCH_MIN_BYTES = 8 << 20


@njit(cache=True, nogil=True, inline="always")
def _prefetch_ahead(bd, fo, ft, fi, p, end):
    """Prefetch what scoring the documents a few block positions after ``p`` will read: their forward offsets
    (``PREFETCH_OFFSETS`` ahead) and their rows' term ids and impacts (``PREFETCH_ROWS`` ahead). Hints only:
    a document index out of range is skipped, a damaged offset prefetches a bounded stretch of nothing."""
    n = fo.shape[0] - 1
    if p + PREFETCH_OFFSETS < end:
        d = bd[p + PREFETCH_OFFSETS]
        if 0 <= d < n:
            prefetch(fo, d)
    if p + PREFETCH_ROWS < end:
        d = bd[p + PREFETCH_ROWS]
        if 0 <= d < n:
            a = fo[d]
            b = min(fo[d + 1], a + PREFETCH_ROW_LIMIT)
            step = 64 // ft.itemsize
            for j in range(a, b, step):
                prefetch(ft, j)
            step = 64 // fi.itemsize
            for j in range(a, b, step):
                prefetch(fi, j)


@njit(cache=True, nogil=True)
def sums_exact(q_weights, qlo, qhi, impact_max):
    """Whether every forward row's dot product with the query (weights ``q_weights[qlo:qhi]``, float32, >= 0)
    is computed exactly in float64, whatever the order of the additions: then ``_row_dot``'s sum (vectorised,
    reassociated) *is* the ascending-order sum of the exact kernels, and no document needs summing twice.

    Each product ``w * impact`` (a float32 times an integer of at most ``impact_max``) is exact in float64 and
    an integer multiple of ``2**e``, the smallest unit in the last place among the query's weights; every
    partial sum is a multiple of it too, and lies in ``[0, sum(w) * impact_max]``. If that bound is below
    ``2**(53 + e)``, every partial sum is a float64 exactly (SPLADE queries: weights 0.01-3, sums up to
    ~2**14, units down to ~2**-30: about 44 bits). ``impact_max`` 0 (impacts not integers): False."""
    if impact_max <= 0:
        return False
    total = 0.0
    unit = 0
    found = False
    for i in range(qlo, qhi):
        w = np.float64(q_weights[i])
        if w > 0:
            total += w
            e = math.frexp(w)[1] - 24  # float32: 24 significant bits (subnormals: a smaller unit than the
            if not found or e < unit:  # true one, so the test only gets stricter)
                unit = e
                found = True
    if not found:
        return True
    return total * impact_max * (1.0 + 1e-9) < math.ldexp(1.0, 53 + unit)


@njit(cache=True, nogil=True)
def query_order(q_terms, q_weights, qlo, qhi, qdense):
    """Set the query's weights in ``qdense`` (its terms ``q_terms[qlo:qhi]``) and return the positions of its
    terms, relative to ``qlo``, heaviest first (ties to the lower position, so to the lower term id): the order
    in which the approximate search visits the query's lists (its counting copies in ``bench/`` call this)."""
    for i in range(qlo, qhi):
        qdense[q_terms[i]] = np.float64(q_weights[i])
    neg = np.empty(qhi - qlo, np.float64)
    for i in range(qhi - qlo):
        neg[i] = -np.float64(q_weights[qlo + i])
    return np.argsort(neg, kind="mergesort")


@njit(cache=True, nogil=True, inline="always")
def _first_at_least(ct, lo, hi, u):
    """The first position in ``ct[lo:hi]`` (ascending; ``0 <= lo <= hi``) holding ``u`` or more (``hi`` if
    none): galloping from ``lo``, then a binary search, so ascending lookups cost about the log of the
    distance moved. Unsigned positions, as in ``_row_dot``."""
    one = np.uint64(1)
    lo_ = np.uint64(lo)
    hi_ = np.uint64(hi)
    step = one
    while lo_ + step < hi_ and ct[lo_ + step] < u:
        lo_ += step
        step += step
    if lo_ < hi_ and ct[lo_] >= u:
        return np.int64(lo_)
    top = min(lo_ + step, hi_)  # ct[lo_] < u <= ct[top] (or top == hi)
    while top - lo_ > one:
        mid = (lo_ + top) >> one
        if ct[mid] < u:
            lo_ = mid
        else:
            top = mid
    return np.int64(top)


@njit(cache=True, nogil=True)
def _summary_scores(lb, cb, cc, cp, ct, ce, pb, pv, t, c, q_sorted, qdense, acc, hits, err):
    """The summary scores of chunk ``c``'s blocks (of list ``t``; ``acc[i]``: block ``cb[c] + i``, before its
    scale): each query term (``q_sorted``, ascending) looked up among the chunk's summary terms, and its
    (block, value) pairs added — each block's score summed in ascending term order, as the exact kernels
    sum. The lookups come first, noting each found term's pairs in ``hits`` (int64[len(q_sorted), 3]) and
    prefetching them: a query's pairs lie scattered over the summaries, so their cache misses then overlap
    instead of following one another (the summary phase 18-31 % faster, docs/BENCHMARKS.md). Offsets and pair
    blocks are checked (``err``: ``BAD_SUMMARY_PAIRS``; the caller stops); a term id is only compared, so a
    damaged one changes which blocks are visited, never a document's score. Returns the chunk's number of
    blocks."""
    b0 = cb[c]
    nb = cb[c + 1] - b0
    c0 = cc[c]
    c1 = cc[c + 1]
    base = cp[c]
    npairs = cp[c + 1] - base
    if nb < 0 or nb > acc.shape[0] or b0 < 0 or b0 < lb[t] or cb[c + 1] > lb[t + 1] or \
            lb[t + 1] > lb[lb.shape[0] - 1] or c0 > c1 or c1 > ct.shape[0] or npairs < 0 or cp[c + 1] > pb.shape[0] or \
            (c1 > c0 and np.int64(ce[c1 - 1]) != npairs):
        err[0] = forward.BAD_SUMMARY_PAIRS
        err[1] = t
        return 0
    found = 0
    j = c0
    for k in range(q_sorted.shape[0]):
        u = q_sorted[k]
        if k > 0 and u == q_sorted[k - 1]:
            continue
        j = _first_at_least(ct, j, c1, u)
        if j >= c1:
            break
        if np.int64(ct[j]) != u:
            continue
        start = np.int64(ce[j - 1]) if j > c0 else np.int64(0)
        end = np.int64(ce[j])
        if end > npairs or start > end:
            err[0] = forward.BAD_SUMMARY_PAIRS
            err[1] = t
            return 0
        prefetch(pb, base + start)
        prefetch(pv, base + start)
        hits[found, 0] = base + start
        hits[found, 1] = base + end
        hits[found, 2] = u
        found += 1
    for i in range(nb):
        acc[i] = 0.0
    for h in range(found):
        w = qdense[hits[h, 2]]
        p = np.uint64(hits[h, 0])
        stop = np.uint64(hits[h, 1])
        while p < stop:  # unsigned: no negative-index wrap-around (``_row_dot``)
            i = pb[p]
            if i >= nb:
                err[0] = forward.BAD_SUMMARY_PAIRS
                err[1] = t
                return 0
            acc[i] += w * pv[p]
            p += np.uint64(1)
    return nb


@njit(cache=True, nogil=True)
def _approx(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, fo, ft, fi, fc, checked, q_terms, q_weights, qlo,
            qhi, query_cut, heap_factor, mask, qdense, acc, stamp, gen, hs, hd, err, ahead, impact_max):
    n = qhi - qlo
    order = query_order(q_terms, q_weights, qlo, qhi, qdense)
    exact = sums_exact(q_weights, qlo, qhi, impact_max)
    q_sorted = np.sort(q_terms[qlo:qhi].astype(np.int64))
    hits = np.empty((n, 3), np.int64)
    has_mask = mask.shape[0] > 0
    nlists = lb.shape[0] - 1
    for r in range(min(query_cut, n)):
        t = q_terms[qlo + order[r]]
        if t >= nlists or q_weights[qlo + order[r]] <= 0 or lb[t + 1] == lb[t]:
            continue
        for c in range(lch[t], lch[t + 1]):
            nb = _summary_scores(lb, cb, cc, cp, ct, ce, pb, pv, t, c, q_sorted, qdense, acc, hits, err)
            for b in range(cb[c], cb[c] + nb):
                if acc[b - cb[c]] * ss[b] * heap_factor * SLACK < hs[0]:
                    continue
                end = bdo[b + 1]
                if bdo[b] < 0 or end > bd.shape[0]:
                    err[0] = forward.BAD_BLOCK_DOC
                    err[1] = b
                    break
                for p in range(bdo[b], end):
                    if ahead:
                        _prefetch_ahead(bd, fo, ft, fi, p, end)
                    d = bd[p]
                    if d < 0 or d >= stamp.shape[0]:
                        err[0] = forward.BAD_BLOCK_DOC
                        err[1] = b
                        break
                    if stamp[d] == gen:
                        continue
                    stamp[d] = gen
                    if has_mask and mask[d] == 0:
                        continue
                    if (checked.shape[0] == 0 or not checked[d >> CHUNK_SHIFT]) and \
                            not check_doc(fo, ft, fi, fc, checked, nlists, d, err):
                        break  # a damaged chunk: stop (the caller raises)
                    s = _row_dot(qdense, ft, fi, fo[d], fo[d + 1])
                    if exact:  # the vectorised sum is the ordered one (``sums_exact``)
                        heap_offer(hs, hd, np.float32(s), d)
                    elif s > 0 and s * SLACK >= hs[0] * FLOAT32_BELOW:  # it may enter the heap: the exact score
                        heap_offer(hs, hd, np.float32(_row_sum(qdense, ft, fi, fo[d], fo[d + 1])), d)
                if err[0]:
                    break
            if err[0]:
                break
        if err[0]:
            break
    for i in range(qlo, qhi):
        qdense[q_terms[i]] = 0.0


@njit(cache=True, nogil=True)
def _approx_group(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, fo, ft, fi, fc, checked, num_docs, q_indptr,
                  q_terms, q_weights, query_cut, heap_factor, allow_indptr, allow_docs, g, groups, vocab_size, out_idx,
                  out_scores, err, ahead, impact_max):
    nq = q_indptr.shape[0] - 1
    kk = min(out_idx.shape[1], num_docs)
    qdense = np.zeros(vocab_size, np.float64)
    acc = np.zeros(CHUNK_BLOCKS, np.float64)
    stamp = np.zeros(num_docs, np.int32)
    mask = np.zeros(num_docs if allow_indptr.shape[0] > 0 else 0, np.uint8)
    hs = np.empty(kk, np.float32)
    hd = np.empty(kk, np.int32)
    gen = 0
    for q in range(g, nq, groups):
        gen += 1
        begin_query(hs, hd, mask, allow_indptr, allow_docs, q)
        if kk > 0:
            _approx(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, fo, ft, fi, fc, checked, q_terms, q_weights,
                    q_indptr[q], q_indptr[q + 1], query_cut, heap_factor, mask, qdense, acc, stamp, gen, hs, hd, err,
                    ahead, impact_max)
        end_query(hs, hd, out_idx, out_scores, mask, allow_indptr, allow_docs, q)
        if err[0]:
            return


def _structures(approx_arrays: dict) -> tuple[np.ndarray, ...]:
    """The arrays in the kernels' order and types, their lengths checked against each other."""
    if "summary_terms" in approx_arrays and "component_terms" not in approx_arrays:
        raise HeronError("approx/summary_terms.npy: an older layout of the approximate structures (per-block "
                         "summaries; now stored per posting list); rebuild the index")
    missing = [name for name in ARRAY_NAMES if name not in approx_arrays]
    if missing:
        raise ValueError(f"approximate-search arrays missing: {missing} (rebuild the index with approx=...)")
    kinds = {"list_blocks": np.int64, "block_doc_offsets": np.int64, "block_docs": np.int32,
             "summary_scales": np.float32, "list_chunks": np.int64, "chunk_blocks": np.int64,
             "chunk_components": np.int64, "chunk_pairs": np.int64, "pair_blocks": np.uint8, "pair_values": np.uint8}
    either = {"component_terms": (np.uint16, np.int32), "component_ends": (np.uint16, np.uint32)}
    out = []
    for name in ARRAY_NAMES:
        array = np.asarray(approx_arrays[name])
        if name in either:  # narrow where the values fit (one compiled specialisation each)
            if array.dtype not in tuple(np.dtype(x) for x in either[name]):
                kinds_ok = " or ".join(np.dtype(x).name for x in either[name])
                raise IntegrityError(f"approx/{name}.npy", f"holds {array.dtype}, not {kinds_ok} (corrupt file); "
                                     f"rebuild the index")
            out.append(readonly(array))
        elif not np.can_cast(array.dtype, kinds[name], "safe"):
            raise IntegrityError(f"approx/{name}.npy", f"holds {array.dtype}, not {np.dtype(kinds[name]).name} "
                                 f"(corrupt file); rebuild the index")
        else:
            out.append(readonly(array, kinds[name]))
    lb, bdo, _, ss, lch, cb, cc, cp, ct, ce, pb, pv = out
    if len(ss) != int(lb[-1]) or len(bdo) != len(ss) + 1:
        raise IntegrityError("approx/list_blocks.npy", f"{int(lb[-1])} blocks for {len(ss)} summary scales and "
                             f"{len(bdo) - 1} block offsets (corrupt file); rebuild the index")
    checks = (("list_chunks", lch, len(lb), len(cb) - 1), ("chunk_blocks", cb, len(cc), len(ss)),
              ("chunk_components", cc, len(cb), len(ct)), ("component_ends", ce, len(ct), None),
              ("chunk_pairs", cp, len(cb), len(pb)), ("pair_values", pv, len(pb), None))
    for name, array, length, last in checks:
        if len(array) != length:
            raise IntegrityError(f"approx/{name}.npy", f"{len(array)} entries, not {length} (corrupt file); "
                                 f"rebuild the index")
        if last is not None and (int(array[0]) != 0 or int(array[-1]) != last):
            raise IntegrityError(f"approx/{name}.npy", f"offsets from {int(array[0])} to {int(array[-1])}, not "
                                 f"from 0 to {last} (corrupt file); rebuild the index")
    return tuple(out)


def _knobs(query_cut, heap_factor) -> tuple[int, float]:
    query_cut, heap_factor = int(query_cut), float(heap_factor)
    if query_cut < 0:
        raise ValueError(f"query_cut must be >= 0, not {query_cut}")
    if not (math.isfinite(heap_factor) and heap_factor > 0):
        raise ValueError(f"heap_factor must be a positive number, not {heap_factor}")
    return query_cut, heap_factor


_local = threading.local()


def _prefetching(fwd) -> bool:
    """Whether the kernel prefetches forward rows: the term ids and impacts of ``fwd`` (``_forward``'s tuple)
    hold at least ``PREFETCH_MIN_BYTES``."""
    return fwd[1].nbytes + fwd[2].nbytes >= PREFETCH_MIN_BYTES


def _impact_max(fwd) -> float:
    """The largest impact the forward rows' type holds (``sums_exact``), 0.0 if they are not integers."""
    kind = fwd[2].dtype
    return float(np.iinfo(kind).max) if np.issubdtype(kind, np.integer) else 0.0


def _stamp(num_docs: int) -> tuple[np.ndarray, int]:
    """This thread's visited stamps and a fresh generation number."""
    stamp = getattr(_local, "stamp", None)
    gen = getattr(_local, "gen", 0) + 1
    if stamp is None or len(stamp) != num_docs or gen >= INT32_MAX:
        stamp, gen = np.zeros(num_docs, np.int32), 1
        _local.stamp = stamp
    _local.gen = gen
    return stamp, gen


def _terms(forward_terms) -> np.ndarray:
    """The forward term ids as stored (uint16 or int32: one compiled specialisation each)."""
    terms = np.asarray(forward_terms)
    if terms.dtype not in (np.dtype(np.uint16), np.dtype(np.int32)):
        terms = terms.astype(np.int32)
    return readonly(terms)


def _forward(forward_offsets, forward_terms, forward_impacts, forward_checksum, checked, num_docs):
    """The forward arrays in the kernels' order: offsets, terms, impacts, checksums (empty: bounds checks
    only) and the per-chunk checked flags (``forward.py``): the caller's, else fresh ones when there are
    checksums, else none (each visited row's bounds checked at every visit)."""
    fc = readonly(np.zeros(0, np.uint32) if forward_checksum is None else forward_checksum, np.uint32)
    if checked is None:
        checked = forward.new_checked(num_docs if len(fc) else 0)
    elif len(checked) != forward.num_chunks(num_docs) or checked.dtype != np.uint8 or not checked.flags.writeable:
        raise ValueError(f"checked must be a writable uint8 array of {forward.num_chunks(num_docs)} flags")
    fo = readonly(forward_offsets, np.int64)
    if len(fo) != int(num_docs) + 1:
        raise ValueError(f"forward_offsets has {len(fo)} entries for {num_docs} documents")
    return fo, _terms(forward_terms), readonly(forward_impacts), fc, checked


def search_approx(approx_arrays, forward_offsets, forward_terms, forward_impacts, num_docs, terms, weights, k,
                  query_cut, heap_factor, mask, forward_checksum=None, checked=None):
    """Approximate top-``k``: ``(idx int32[k], scores float32[k])`` (see the module docstring).

    ``forward_checksum`` (the index's ``forward_checksum`` array) and ``checked`` (the reader's per-chunk
    flags, :func:`heron.indexing.inverted.forward.new_checked`) as in :mod:`.forward`: every visited
    document's chunk is checked before its row is read; a damaged one raises ``ForwardIndexError``."""
    structures = _structures(approx_arrays)
    vocab_size = len(structures[0]) - 1
    query_cut, heap_factor = _knobs(query_cut, heap_factor)
    fwd = _forward(forward_offsets, forward_terms, forward_impacts, forward_checksum, checked, num_docs)
    err = np.zeros(2, np.int64)

    def kernel(terms, weights, mask, hs, hd):
        stamp, gen = _stamp(int(num_docs))
        _approx(*structures, *fwd, terms, weights, np.int64(0), np.int64(len(terms)), np.int64(query_cut),
                np.float64(heap_factor), mask, scratch("approx_query", vocab_size, np.float64),
                scratch("approx_blocks", CHUNK_BLOCKS, np.float64), stamp, np.int64(gen), hs, hd, err,
                _prefetching(fwd), _impact_max(fwd))

    out = search_one(vocab_size, num_docs, terms, weights, k, mask, kernel)
    if err[0]:
        forward.raise_error(err)
    return out


def batch_runner(arrays, num_docs, q_indptr, q_terms, q_weights, allow_indptr, allow_docs, groups, out_idx,
                 out_scores, *, query_cut, heap_factor):
    """``run(g)`` for the ``approx`` method of ``kernels.search_batch`` (arguments checked there)."""
    structures = _structures(arrays)
    vocab_size = len(structures[0]) - 1
    query_cut, heap_factor = _knobs(query_cut, heap_factor)
    if len(q_terms) and q_terms.max() >= vocab_size:
        raise ValueError(f"query term ids must lie in [0, {vocab_size})")
    fwd = _forward(arrays["forward_offsets"], arrays["forward_terms"], arrays["forward_impacts"],
                   arrays.get("forward_checksum"), arrays.get("forward_checked"), num_docs)

    ahead, impact_max = _prefetching(fwd), _impact_max(fwd)

    def run(g):
        err = np.zeros(2, np.int64)
        _approx_group(*structures, *fwd, np.int64(num_docs), q_indptr, q_terms, q_weights, np.int64(query_cut),
                      np.float64(heap_factor), allow_indptr, allow_docs, np.int64(g), np.int64(groups),
                      np.int64(vocab_size), out_idx, out_scores, err, ahead, impact_max)
        if err[0]:
            forward.raise_error(err)

    return run


__all__ = ["ARRAY_NAMES", "PRESETS", "build_approx", "search_approx"]
