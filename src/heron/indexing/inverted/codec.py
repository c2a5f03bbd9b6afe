"""Compressed posting lists: blocks of delta-coded, bit-packed document ids and impacts, each with a checksum.

A term's postings are cut into blocks of ``block_size`` consecutive postings (the last one shorter); a
block is the unit of compression, of checksumming and of block-max pruning (the kernels' block maxima
and last documents are the same blocks, kept uncompressed). A block of ``n`` postings is stored in
``postings_words`` (uint32) at ``[block_words[b], block_words[b + 1])`` as one little-endian bit stream
of ``ceil(n * (bd + bi) / 32)`` words (one padding per block):

* ``n`` document *gaps* ``g_i = d_i - d_{i-1} - 1`` (``d_{-1}`` = the previous block's last document
  of the term, or -1), each in ``bd`` bits (a run of consecutive documents takes 0 bits);
* then, from the next bit, the ``n`` impacts, each in ``bi`` bits.

``block_bits[b] = bd | bi << 8`` (uint16). Only the widths and the posting counts are stored: the
counts as a LEB128 byte stream (``postings_counts``: one varint per vocabulary term, most of them one
byte; :func:`encode_counts` / :func:`decode_counts`), from which the posting offsets, a term's blocks
(``block_offsets``) and each block's word range (``block_words``) are derived when the index opens
(:func:`derive_layout`). ``bd`` and ``bi`` are the widths of the block's largest value (frame of
reference 0, no exceptions: a block costs the width of its largest gap; measured against VByte in
docs/BENCHMARKS.md, "Compressed postings").

**Checks.** ``block_checksum[b]`` (uint32) is a four-lane multiply-xorshift hash of the block's words, seeded
with the global block number, ``block_bits[b]`` and ``n``, so a flipped bit, a block moved elsewhere
or a damaged width is seen. Decoding a block also checks that its word range is the one its widths
imply and lies inside ``postings_words``, that every document is below ``num_docs`` (a corrupt gap
can never write out of bounds), that its last document equals ``block_last_doc[b]`` and its largest
impact equals ``block_max[b]`` (so damaged pruning metadata cannot silently drop a result: a query
decodes, and so checks, every block of its terms before the kernels prune with their metadata). A
failed check is returned as an error code (:data:`ERRORS`) and raised by :func:`raise_error` as an
:class:`~heron.errors.IntegrityError` naming the file. ``verify=False`` skips only the hash (for
measuring its cost); the bounds checks always run. :func:`decode_query` decodes a query's lists into
scratch arrays for the search kernels; :func:`score_query` decodes them straight into a score
accumulator (collections of one accumulator window). The counts are checked when the index opens (the
manifest's content hash of the file, then: exactly one varint per term, summing to the postings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from heron.errors import IntegrityError

CODEC_NAME = "bitpack-delta"
BLOCK_SIZE = 128

#: error code → (file that holds the damage, what is wrong)
ERRORS = {
    1: ("postings_words.npy", "block checksum mismatch"),
    2: ("block_bits.npy", "block word range does not match the block's bit widths"),
    3: ("postings_words.npy", "decoded document index out of range"),
    4: ("block_last_doc.npy", "block's last document does not match its decoded postings"),
    5: ("block_max.npy", "block maximum does not match its decoded impacts"),
    6: ("postings_counts.npy", "term's block count does not match its posting count"),
}

_M32 = np.uint64(0xFFFFFFFF)


# -- primitives --------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def bit_width(x):
    """Number of bits needed for the non-negative integer ``x`` (0 for 0)."""
    n = 0
    x = np.uint64(x)
    while x != 0:
        n += 1
        x >>= np.uint64(1)
    return n


@njit(cache=True, nogil=True)
def packed_words(n, bits):
    """Words taken by ``n`` values of ``bits`` bits."""
    return (n * bits + 31) >> 5


@njit(cache=True, nogil=True)
def block_hash(words, lo, hi, seed):
    """32-bit hash of ``words[lo:hi]`` seeded with ``seed`` (uint32): four multiply-xorshift lanes over
    words ``lo + 4i + l`` (independent chains: ~4x the throughput of one), the leftover words on lane 0,
    then the lanes folded into one and a final mix. Every step is a bijection of the state for a given
    word and of the word for a given state, so a change of any one word always changes the hash.
    (:func:`decode_query` holds the same code written out; tests check that they agree.)"""
    h0 = (np.uint64(seed) * np.uint64(0x9E3779B1) + np.uint64(0x7F4A7C15)) & _M32
    h1 = h0 ^ np.uint64(0x68E31DA4)
    h2 = h0 ^ np.uint64(0xB5297A4D)
    h3 = h0 ^ np.uint64(0x1B56C4E9)
    x = np.uint64(lo)  # unsigned positions (0 <= lo <= hi): no negative-index wrap-around on every read
    end = np.uint64(hi)
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    while x + four <= end:
        h0 = ((h0 ^ np.uint64(words[x])) * np.uint64(0x85EBCA6B)) & _M32
        h1 = ((h1 ^ np.uint64(words[x + one])) * np.uint64(0x85EBCA6B)) & _M32
        h2 = ((h2 ^ np.uint64(words[x + two])) * np.uint64(0x85EBCA6B)) & _M32
        h3 = ((h3 ^ np.uint64(words[x + three])) * np.uint64(0x85EBCA6B)) & _M32
        h0 ^= h0 >> np.uint64(13)
        h1 ^= h1 >> np.uint64(13)
        h2 ^= h2 >> np.uint64(13)
        h3 ^= h3 >> np.uint64(13)
        x += four
    while x < end:
        h0 = ((h0 ^ np.uint64(words[x])) * np.uint64(0x85EBCA6B)) & _M32
        h0 ^= h0 >> np.uint64(13)
        x += one
    for v in (h1, h2, h3):
        h0 = ((h0 ^ v) * np.uint64(0x85EBCA6B)) & _M32
        h0 ^= h0 >> np.uint64(13)
    h0 = (h0 * np.uint64(0xC2B2AE35)) & _M32
    h0 ^= h0 >> np.uint64(16)
    return np.uint32(h0)


@njit(cache=True, nogil=True)
def _seed(b, bits, n):
    return (np.uint64(b) * np.uint64(0x27D4EB2F) + np.uint64(bits) * np.uint64(0x165667B1) + np.uint64(n)) & _M32


@njit(cache=True, nogil=True)
def pack(values, n, bits, words, at, bit0=0):
    """Pack ``values[:n]`` (each < 2**bits) into ``words`` from bit ``bit0`` of word ``at`` (the words
    must be zero)."""
    if bits == 0:
        return
    for i in range(n):
        v = np.uint64(values[i])
        pos = bit0 + i * bits
        w = at + (pos >> 5)
        sh = np.uint64(pos & 31)
        words[w] |= np.uint32((v << sh) & _M32)
        if (pos & 31) + bits > 32:
            words[w + 1] |= np.uint32(v >> (np.uint64(32) - sh))


@njit(cache=True, nogil=True)
def unpack_into(words, at, n, bits, out, bit0=0):
    """``out[:n]`` = the ``n`` values of ``bits`` bits packed from bit ``bit0`` of word ``at``."""
    if bits == 0:
        for i in range(n):
            out[i] = 0
        return
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    for i in range(n):
        pos = bit0 + i * bits
        w = at + (pos >> 5)
        sh = np.uint64(pos & 31)
        v = np.uint64(words[w]) >> sh
        if (pos & 31) + bits > 32:
            v |= np.uint64(words[w + 1]) << (np.uint64(32) - sh)
        out[i] = v & mask


# -- encoding ----------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _block_layout(offsets, docs, impacts, block_size, bits, nwords, last, bmax):
    """Per block of every term: widths ``bd | bi << 8``, word count, last document, largest impact."""
    b = 0
    for t in range(offsets.shape[0] - 1):
        p = offsets[t]
        hi = offsets[t + 1]
        prev = np.int64(-1)
        while p < hi:
            e = min(p + block_size, hi)
            gmax = np.int64(0)
            m = impacts[p]
            for q in range(p, e):
                d = np.int64(docs[q])
                g = d - prev - 1
                if g < 0:
                    return q + 1  # not ascending
                if g > gmax:
                    gmax = g
                prev = d
                if impacts[q] > m:
                    m = impacts[q]
            bd = bit_width(gmax)
            bi = bit_width(m)
            bits[b] = bd | (bi << 8)
            nwords[b] = packed_words(e - p, bd + bi)
            last[b] = docs[e - 1]
            bmax[b] = m
            b += 1
            p = e
    return 0


@njit(cache=True, nogil=True)
def _encode(offsets, docs, impacts, block_size, first_block, bits, block_words, words, checksum):
    """Fill ``words`` (zeroed; ``block_words`` relative to its start) and the checksums of every block."""
    gaps = np.empty(block_size, np.uint64)
    vals = np.empty(block_size, np.uint64)
    b = 0
    for t in range(offsets.shape[0] - 1):
        p = offsets[t]
        hi = offsets[t + 1]
        prev = np.int64(-1)
        while p < hi:
            e = min(p + block_size, hi)
            n = e - p
            for q in range(n):
                d = np.int64(docs[p + q])
                gaps[q] = d - prev - 1
                prev = d
                vals[q] = impacts[p + q]
            bd = bits[b] & 0xFF
            bi = bits[b] >> 8
            at = block_words[b]
            pack(gaps, n, bd, words, at)
            pack(vals, n, bi, words, at, n * bd)
            checksum[b] = block_hash(words, at, block_words[b + 1], _seed(first_block + b, bits[b], n))
            b += 1
            p = e


def encode_postings(offsets, docs, impacts, block_size: int = BLOCK_SIZE, first_block: int = 0) -> dict:
    """Compress posting lists (term ``t``: ``docs[offsets[t]:offsets[t+1]]``, ascending, with their
    impacts; ``offsets`` need not start at 0). Returns the arrays of the format, by name:
    ``block_offsets`` int64[T+1] (relative), ``block_last_doc`` int32[B], ``block_max`` (impact
    dtype)[B], ``block_bits`` uint16[B], ``block_checksum`` uint32[B], ``block_words`` int64[B+1]
    (relative to these words), ``postings_words`` uint32[W] and ``postings_counts`` (the terms' posting
    counts, :func:`encode_counts`). ``first_block`` is the global number of
    the first block (it seeds the checksums), for encoding a window of terms at a time."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    offsets = offsets - offsets[0] if len(offsets) else offsets
    docs = np.ascontiguousarray(docs, dtype=np.int32)
    impacts = np.ascontiguousarray(impacts)
    if impacts.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"impacts must be uint8 or uint16, not {impacts.dtype}")
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be positive, not {block_size}")
    block_offsets = np.zeros(max(len(offsets), 1), dtype=np.int64)
    if len(offsets) > 1:
        np.cumsum((np.diff(offsets) + block_size - 1) // block_size, out=block_offsets[1:])
    nb = int(block_offsets[-1])
    bits = np.zeros(nb, np.uint16)
    nwords = np.zeros(nb, np.int64)
    last = np.zeros(nb, np.int32)
    bmax = np.zeros(nb, impacts.dtype)
    if len(offsets) > 1:
        bad = _block_layout(offsets, docs, impacts, np.int64(block_size), bits, nwords, last, bmax)
        if bad:
            raise ValueError(f"posting {bad - 1}: documents are not strictly ascending within a term")
    block_words = np.zeros(nb + 1, np.int64)
    np.cumsum(nwords, out=block_words[1:])
    words = np.zeros(int(block_words[-1]) + 1, np.uint32)  # + 1: a spare word for straddling writes
    checksum = np.zeros(nb, np.uint32)
    if nb:
        _encode(offsets, docs, impacts, np.int64(block_size), np.int64(first_block), bits, block_words, words,
                checksum)
    return {"block_offsets": block_offsets, "block_last_doc": last, "block_max": bmax, "block_bits": bits,
            "block_checksum": checksum, "block_words": block_words, "postings_words": words[:-1],
            "postings_counts": encode_counts(np.diff(offsets))}


# -- posting counts ----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _varint_sizes(df, out):
    for t in range(df.shape[0]):
        x = np.uint64(df[t])
        n = 1
        while x >= np.uint64(128):
            x >>= np.uint64(7)
            n += 1
        out[t] = n


@njit(cache=True, nogil=True)
def _varint_write(df, at, out):
    for t in range(df.shape[0]):
        x = np.uint64(df[t])
        p = at[t]
        while x >= np.uint64(128):
            out[p] = np.uint8((x & np.uint64(127)) | np.uint64(128))
            x >>= np.uint64(7)
            p += 1
        out[p] = np.uint8(x)


def encode_counts(df) -> np.ndarray:
    """``postings_counts`` uint8[]: each term's posting count as a LEB128 varint (7 bits a byte, low
    first, the high bit set on every byte but a count's last), in term order."""
    df = np.ascontiguousarray(df, dtype=np.int64)
    if np.any(df < 0):
        raise ValueError("posting counts must be non-negative")
    sizes = np.zeros(len(df), np.int64)
    _varint_sizes(df, sizes)
    at = np.zeros(len(df) + 1, np.int64)
    np.cumsum(sizes, out=at[1:])
    out = np.zeros(int(at[-1]), np.uint8)
    _varint_write(df, at, out)
    return out


@njit(cache=True, nogil=True)
def _varint_read(buf, offsets):
    p = 0
    for t in range(offsets.shape[0] - 1):
        x = np.int64(0)
        shift = 0
        while True:
            if p >= buf.shape[0] or shift > 35:
                return False  # truncated, or a count of more than 2**42 postings
            c = np.int64(buf[p])
            p += 1
            x |= (c & 127) << shift
            shift += 7
            if c < 128:
                break
        offsets[t + 1] = offsets[t] + x
    return p == buf.shape[0]


def decode_counts(counts, num_terms: int) -> np.ndarray | None:
    """The posting offsets int64[num_terms + 1] of a ``postings_counts`` stream (:func:`encode_counts`),
    or None unless it holds exactly ``num_terms`` well-formed varints."""
    offsets = np.zeros(int(num_terms) + 1, np.int64)
    ok = _varint_read(np.ascontiguousarray(counts, dtype=np.uint8), offsets)
    return offsets if ok else None


@njit(cache=True, nogil=True)
def _block_lengths(df, block_offsets, block_size, bits, block_words):
    for t in range(df.shape[0]):
        for j in range(block_offsets[t + 1] - block_offsets[t]):
            b = block_offsets[t] + j
            n = min(block_size, df[t] - j * block_size)
            w = np.int64(bits[b])
            block_words[b + 1] = packed_words(n, (w & 0xFF) + (w >> 8))


def derive_layout(postings_offsets, block_bits, block_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(block_offsets int64[T+1], block_words int64[B+1])`` implied by the posting counts and the
    blocks' widths, or None if the counts need another number of blocks than ``block_bits`` has."""
    po = np.asarray(postings_offsets, dtype=np.int64)
    df = np.diff(po)
    if np.any(df < 0):
        return None
    block_offsets = np.zeros(len(po), np.int64)
    np.cumsum((df + block_size - 1) // block_size, out=block_offsets[1:])
    bits = np.ascontiguousarray(block_bits, dtype=np.uint16)
    if int(block_offsets[-1]) != len(bits):
        return None
    block_words = np.zeros(len(bits) + 1, np.int64)
    if len(bits):
        _block_lengths(df, block_offsets, np.int64(block_size), bits, block_words)
    np.cumsum(block_words, out=block_words)
    return block_offsets, block_words


# -- decoding ----------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def decode_query(po, bo, bl, bm, bw, bb, bc, words, num_docs, block_size, q_terms, qlo, qhi, verify,
                 lpo, lpd, lpi, lbo, lbl, lbm, err):
    """Decode the posting lists of ``q_terms[qlo:qhi]`` into query-local arrays laid out like an
    uncompressed index whose term ``i`` is the query's ``i``-th term: offsets ``lpo`` / block offsets
    ``lbo`` (``n + 1``), postings ``lpd`` / ``lpi`` and blocks ``lbl`` / ``lbm``, checking every block
    (module docstring). True if every check passed, else False with ``err = (code, block)``.

    One flat loop with no call that takes an array: numba increments and decrements the reference count
    of every array passed to a call (atomic operations), which cost ~100-300 ns a block when the block
    decoder was a function, inlined or not (docs/BENCHMARKS.md)."""
    n = qhi - qlo
    lpo[0] = 0
    lbo[0] = 0
    nblocks = bl.shape[0]
    nwords = words.shape[0]
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)  # unsigned positions
    for i in range(n):
        t = q_terms[qlo + i]
        df = po[t + 1] - po[t]
        b0 = bo[t]
        nb = bo[t + 1] - b0
        if df < 0 or nb != (df + block_size - 1) // block_size or b0 < 0 or b0 + nb > nblocks:
            err[0] = 6
            err[1] = b0
            return False
        at = lpo[i]
        prev = np.int64(-1)
        for j in range(nb):
            b = b0 + j
            cnt = min(block_size, df - j * block_size)
            bits = np.int64(bb[b])
            bd = bits & 0xFF
            bi = bits >> 8
            lo = bw[b]
            hi = bw[b + 1]
            if bd > 32 or bi > 16 or lo < 0 or hi > nwords or hi - lo != packed_words(cnt, bd + bi):
                err[0] = 2
                err[1] = b
                return False
            if verify:  # block_hash, written out (see above)
                h0 = (np.uint64(_seed(b, bits, cnt)) * np.uint64(0x9E3779B1) + np.uint64(0x7F4A7C15)) & _M32
                h1 = h0 ^ np.uint64(0x68E31DA4)
                h2 = h0 ^ np.uint64(0xB5297A4D)
                h3 = h0 ^ np.uint64(0x1B56C4E9)
                x = np.uint64(lo)
                end = np.uint64(hi)
                while x + four <= end:
                    h0 = ((h0 ^ np.uint64(words[x])) * np.uint64(0x85EBCA6B)) & _M32
                    h1 = ((h1 ^ np.uint64(words[x + one])) * np.uint64(0x85EBCA6B)) & _M32
                    h2 = ((h2 ^ np.uint64(words[x + two])) * np.uint64(0x85EBCA6B)) & _M32
                    h3 = ((h3 ^ np.uint64(words[x + three])) * np.uint64(0x85EBCA6B)) & _M32
                    h0 ^= h0 >> np.uint64(13)
                    h1 ^= h1 >> np.uint64(13)
                    h2 ^= h2 >> np.uint64(13)
                    h3 ^= h3 >> np.uint64(13)
                    x += four
                while x < end:
                    h0 = ((h0 ^ np.uint64(words[x])) * np.uint64(0x85EBCA6B)) & _M32
                    h0 ^= h0 >> np.uint64(13)
                    x += one
                for v in (h1, h2, h3):
                    h0 = ((h0 ^ v) * np.uint64(0x85EBCA6B)) & _M32
                    h0 ^= h0 >> np.uint64(13)
                h0 = (h0 * np.uint64(0xC2B2AE35)) & _M32
                h0 ^= h0 >> np.uint64(16)
                if np.uint32(h0) != bc[b]:
                    err[0] = 1
                    err[1] = b
                    return False
            p = at + j * block_size
            # one bit stream: cnt gaps of bd bits, then cnt impacts of bi bits; a 64-bit buffer refilled
            # one word at a time (reads exactly the block's words)
            acc = np.uint64(0)
            have = 0
            w = np.uint64(lo)
            up = np.uint64(p)
            ucnt = np.uint64(cnt)
            if bd == 0:
                for k in range(cnt):
                    prev += 1
                    lpd[p + k] = prev
            else:
                mask = (np.uint64(1) << np.uint64(bd)) - np.uint64(1)
                ubd = np.uint64(bd)
                k = np.uint64(0)
                while k < ucnt:
                    if have < bd:
                        acc |= np.uint64(words[w]) << np.uint64(have)
                        w += one
                        have += 32
                    prev += np.int64(acc & mask) + 1
                    acc >>= ubd
                    have -= bd
                    lpd[up + k] = prev
                    k += one
            if prev >= num_docs:
                err[0] = 3
                err[1] = b
                return False
            if prev != bl[b]:
                err[0] = 4
                err[1] = b
                return False
            m = np.uint64(0)  # (an int64 0 would unify with the uint64 values as float64)
            if bi == 0:
                for k in range(cnt):
                    lpi[p + k] = 0
            else:
                mask = (np.uint64(1) << np.uint64(bi)) - np.uint64(1)
                ubi = np.uint64(bi)
                k = np.uint64(0)
                while k < ucnt:
                    if have < bi:
                        acc |= np.uint64(words[w]) << np.uint64(have)
                        w += one
                        have += 32
                    v = acc & mask
                    acc >>= ubi
                    have -= bi
                    lpi[up + k] = v
                    if v > m:
                        m = v
                    k += one
            if m != bm[b]:
                err[0] = 5
                err[1] = b
                return False
            lbl[lbo[i] + j] = bl[b]
            lbm[lbo[i] + j] = bm[b]
        lpo[i + 1] = at + df
        lbo[i + 1] = lbo[i] + nb
    return True


@njit(cache=True, nogil=True)
def score_query(po, bo, bl, bm, bw, bb, bc, words, num_docs, block_size, q_terms, q_weights, qlo, qhi, verify,
                wacc, wbits, mark, err):
    """Decode the posting lists of ``q_terms[qlo:qhi]`` straight into a whole-collection accumulator:
    ``wacc[d] += w_t * impact`` (and, if ``mark``, bit ``d`` of ``wbits`` set), term after term in query
    order, postings in document order (the sums of :func:`kernels._taat`, bit for bit), with no decoded list
    in between: two bit cursors walk a block's gaps and its impacts in step. ``wacc`` must hold ``num_docs``
    entries.
    Every check of :func:`decode_query`, each document bounded before it is added. True if every check
    passed, else False with ``err = (code, block)`` and the accumulator partly written (the caller clears it)."""
    nblocks = bl.shape[0]
    nwords = words.shape[0]
    for i in range(qhi - qlo):
        t = q_terms[qlo + i]
        wt = np.float64(q_weights[qlo + i])
        df = po[t + 1] - po[t]
        b0 = bo[t]
        nb = bo[t + 1] - b0
        if df < 0 or nb != (df + block_size - 1) // block_size or b0 < 0 or b0 + nb > nblocks:
            err[0] = 6
            err[1] = b0
            return False
        prev = np.int64(-1)
        for j in range(nb):
            b = b0 + j
            cnt = min(block_size, df - j * block_size)
            bits = np.int64(bb[b])
            bd = bits & 0xFF
            bi = bits >> 8
            lo = bw[b]
            hi = bw[b + 1]
            if bd > 32 or bi > 16 or lo < 0 or hi > nwords or hi - lo != packed_words(cnt, bd + bi):
                err[0] = 2
                err[1] = b
                return False
            if verify and block_hash(words, lo, hi, _seed(b, bits, cnt)) != bc[b]:
                err[0] = 1
                err[1] = b
                return False
            maskd = (np.uint64(1) << np.uint64(bd)) - np.uint64(1)
            maski = (np.uint64(1) << np.uint64(bi)) - np.uint64(1)
            ubd = np.uint64(bd)
            ubi = np.uint64(bi)
            acc = np.uint64(0)  # gaps: from bit 0 of the block
            have = 0
            w = lo
            acc2 = np.uint64(0)  # impacts: from bit cnt * bd
            have2 = 0
            w2 = lo + ((cnt * bd) >> 5)
            skip = (cnt * bd) & 31
            if bi > 0 and skip > 0:
                acc2 = np.uint64(words[w2]) >> np.uint64(skip)
                have2 = 32 - skip
                w2 += 1
            m = np.uint64(0)
            uw = np.uint64(w)  # unsigned positions: no negative-index wrap-around on every read
            uw2 = np.uint64(w2)
            one = np.uint64(1)
            for _ in range(cnt):
                if have < bd:
                    acc |= np.uint64(words[uw]) << np.uint64(have)
                    uw += one
                    have += 32
                prev += np.int64(acc & maskd) + 1
                acc >>= ubd
                have -= bd
                if have2 < bi:
                    acc2 |= np.uint64(words[uw2]) << np.uint64(have2)
                    uw2 += one
                    have2 += 32
                v = acc2 & maski
                acc2 >>= ubi
                have2 -= bi
                if prev >= num_docs:
                    err[0] = 3
                    err[1] = b
                    return False
                up = np.uint64(prev)  # >= 0: it starts at -1 and grows by at least 1
                wacc[up] += wt * np.float64(v)
                if mark:
                    wbits[up >> np.uint64(6)] |= one << (up & np.uint64(63))
                m = max(m, v)
            if prev != bl[b]:
                err[0] = 4
                err[1] = b
                return False
            if m != bm[b]:
                err[0] = 5
                err[1] = b
                return False
    return True


#: the compressed-posting arrays the decoders take, in their argument order
COMPRESSED_NAMES = ("postings_offsets", "block_offsets", "block_last_doc", "block_max", "block_words", "block_bits",
                    "block_checksum", "postings_words")
_ARG_TYPES = (np.int64, np.int64, np.int32, None, np.int64, np.uint16, np.uint32, np.uint32)


def compressed_arrays(arrays: dict) -> tuple:
    """The compressed-posting arrays of an index, in the decoders' argument order (read-only plain
    views; ``InvertedIndex.open`` stores them in that form, for which this is cheap: making views of
    memory maps cost ~10 us a query)."""
    from heron.indexing.inverted.topk import readonly

    return tuple(readonly(arrays[name], kind) for name, kind in zip(COMPRESSED_NAMES, _ARG_TYPES))


def decode_postings(arrays: dict, num_docs: int, block_size: int, root: str | Path = "", verify: bool = True):
    """Every posting list decoded and checked: ``(docs int32[nnz], impacts[nnz])`` in term order (as the
    uncompressed ``postings_docs`` / ``postings_impacts``); a failed check raises IntegrityError."""
    args = compressed_arrays(arrays)
    po = args[0]
    nnz = int(po[-1]) if len(po) else 0
    if len(po) and po[0] != 0:
        raise IntegrityError(Path(root) / "postings_counts.npy", "offsets do not start at 0 (corrupt file); "
                                                                 "rebuild the index")
    docs = np.empty(nnz, np.int32)
    impacts = np.empty(nnz, args[3].dtype)
    err = np.zeros(2, np.int64)
    if len(po) < 2:
        return docs, impacts
    terms = np.arange(len(po) - 1, dtype=np.int32)
    nb = len(args[2])
    if not decode_query(*args, np.int64(num_docs), np.int64(block_size), terms, np.int64(0), np.int64(len(terms)),
                        bool(verify), np.zeros(len(po), np.int64), docs, impacts, np.zeros(len(po), np.int64),
                        np.empty(nb, np.int32), np.empty(nb, args[3].dtype), err):
        raise_error(root, err)
    return docs, impacts


def raise_error(root: str | Path, err) -> None:
    """Raise the IntegrityError of a decoder's ``err = (code, block)``."""
    code, block = int(err[0]), int(err[1])
    name, what = ERRORS.get(code, ("postings_words.npy", f"decoding error {code}"))
    raise IntegrityError(Path(root) / name, f"{what} in block {block} (corrupt file); rebuild the index")


__all__ = ["BLOCK_SIZE", "CODEC_NAME", "COMPRESSED_NAMES", "ERRORS", "bit_width", "block_hash", "compressed_arrays",
           "decode_counts", "decode_postings", "decode_query", "encode_counts", "encode_postings", "pack",
           "raise_error", "score_query", "unpack_into"]
