"""The forward index: each document's terms and impacts, for the approximate search (see ``format.py``).

Layout (written only with the approximate structures, which read it at build and at query time):

* ``forward_offsets`` int64[N+1]: document ``d``'s entries are ``[offsets[d], offsets[d+1])``;
* ``forward_terms`` uint16[nnz] when the vocabulary has at most 65,536 terms (SPLADE / BERT: 30,522),
  int32[nnz] otherwise (:func:`term_dtype`); ascending within a document;
* ``forward_impacts`` uint8|uint16[nnz] (the index's impact type);
* ``forward_checksum`` uint32[ceil(N / 64)]: a hash of each *chunk* of 64 consecutive documents
  (their entry counts, term ids and impacts, seeded with the chunk number and its entry count).

That is 3 bytes per entry with uint8 impacts (format 2 stored int32 term ids: 5 bytes); docs/BENCHMARKS.md,
"Compressed forward index", compares it with per-document bit-packed term gaps (2.45 bytes per entry on
SPLADE, but 1.1-2.6× slower approximate search than narrow ids: the inner loop then decodes) and
uint32 offsets (4 bytes per document, under 0.5 % of the forward index at 250 entries per document).

**Checks.** A chunk is checked before any of its rows is read (:func:`check_chunk`): its offsets
lie in ``[0, nnz]`` and do not decrease, every term id is below the vocabulary size (so a damaged entry
can never index outside the query vector), and, when the checksums are given, its hash matches. A
reader keeps one ``checked`` byte per chunk (:func:`new_checked`), so each chunk is hashed once per
opened index, not at every visit: the approximate search pays the check on a chunk's first visit only.
A failed check is an error code (:data:`ERRORS`); the index turns it into an IntegrityError naming the
damaged file (it re-hashes the four forward files to find which one). A caller of the kernels with
neither checksums nor flags (raw arrays) gets the bounds of each row checked as it is read instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from heron.errors import IntegrityError

CHUNK_SHIFT = 6
CHUNK = 1 << CHUNK_SHIFT  # documents per checksum
NAMES = ("forward_offsets", "forward_terms", "forward_impacts", "forward_checksum")

#: error code → what is wrong (the damaged file is found by re-hashing the forward files)
ERRORS = {
    1: "offsets out of range or decreasing",
    2: "term id out of range",
    3: "checksum mismatch",
    4: "document index out of range",  # a document of an approximate block (approx/block_docs.npy)
    5: "summary pairs out of range",  # an approximate list's summaries (approx/component_ends.npy, pair_blocks.npy)
}
BAD_BLOCK_DOC = 4
BAD_SUMMARY_PAIRS = 5

_M32 = np.uint64(0xFFFFFFFF)


def term_dtype(vocab_size: int) -> np.dtype:
    """The forward index's term-id type: uint16 when every id fits, else int32."""
    return np.dtype(np.uint16) if int(vocab_size) <= 1 << 16 else np.dtype(np.int32)


def num_chunks(num_docs: int) -> int:
    return (int(num_docs) + CHUNK - 1) >> CHUNK_SHIFT


def new_checked(num_docs: int) -> np.ndarray:
    """A reader's per-chunk "already checked" flags (all unchecked)."""
    return np.zeros(num_chunks(num_docs), np.uint8)


@njit(cache=True, nogil=True)
def _mix(h, v):
    h = ((h ^ (np.uint64(v) & _M32)) * np.uint64(0x85EBCA6B)) & _M32
    return h ^ (h >> np.uint64(13))


@njit(cache=True, nogil=True)
def chunk_hash(fo, ft, fi, c):
    """32-bit multiply-xorshift hash of chunk ``c``: its row lengths, then its ``term << 16 | impact`` entries."""
    n = fo.shape[0] - 1
    lo = c << CHUNK_SHIFT
    hi = min(lo + CHUNK, n)
    a = fo[lo]
    b = fo[hi]
    h = (np.uint64(c) * np.uint64(0x27D4EB2F) + np.uint64(b - a) * np.uint64(0x165667B1)
         + np.uint64(0x7F4A7C15)) & _M32
    for d in range(lo, hi):
        h = _mix(h, fo[d + 1] - fo[d])
    for i in range(a, b):
        h = _mix(h, (np.uint64(ft[i]) << np.uint64(16)) | np.uint64(fi[i]))
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return np.uint32(h)


@njit(cache=True, nogil=True)
def _checksums(fo, ft, fi, out):
    for c in range(out.shape[0]):
        out[c] = chunk_hash(fo, ft, fi, c)


def checksums(offsets, terms, impacts) -> np.ndarray:
    """``forward_checksum`` uint32[ceil(N / 64)] of a forward index."""
    fo = np.ascontiguousarray(offsets, np.int64)
    out = np.zeros(num_chunks(len(fo) - 1), np.uint32)
    _checksums(fo, np.ascontiguousarray(terms), np.ascontiguousarray(impacts), out)
    return out


@njit(cache=True, nogil=True)
def check_chunk(fo, ft, fi, fc, vocab_size, c, err):
    """Whether chunk ``c`` is sound (module docstring); on failure ``err = (code, chunk)``. ``fc`` empty:
    bounds only."""
    n = fo.shape[0] - 1
    nnz = ft.shape[0]
    lo = c << CHUNK_SHIFT
    hi = min(lo + CHUNK, n)
    prev = fo[lo]
    ok = 0 <= prev <= nnz
    for d in range(lo + 1, hi + 1):
        if fo[d] < prev or fo[d] > nnz:
            ok = False
        prev = fo[d]
    if not ok or fi.shape[0] != nnz:
        err[0] = 1
        err[1] = c
        return False
    for i in range(fo[lo], fo[hi]):
        if np.int64(ft[i]) >= vocab_size or np.int64(ft[i]) < 0:
            err[0] = 2
            err[1] = c
            return False
    if fc.shape[0] > 0 and (c >= fc.shape[0] or chunk_hash(fo, ft, fi, c) != fc[c]):
        err[0] = 3
        err[1] = c
        return False
    return True


@njit(cache=True, nogil=True)
def check_row(fo, ft, fi, vocab_size, d, err):
    """Bounds of document ``d``'s row alone (offsets, term ids; no hash): for callers without flags."""
    nnz = ft.shape[0]
    a = fo[d]
    b = fo[d + 1]
    if a < 0 or b < a or b > nnz or fi.shape[0] != nnz:
        err[0] = 1
        err[1] = d >> CHUNK_SHIFT
        return False
    for i in range(a, b):
        if np.int64(ft[i]) >= vocab_size or np.int64(ft[i]) < 0:
            err[0] = 2
            err[1] = d >> CHUNK_SHIFT
            return False
    return True


@njit(cache=True, nogil=True)
def check_doc(fo, ft, fi, fc, checked, vocab_size, d, err):
    """Check document ``d``'s chunk unless ``checked`` says it was; whether its row may be read. No flags
    (``checked`` empty): only the row's own bounds, at every call (:func:`check_row`)."""
    if checked.shape[0] == 0:
        return check_row(fo, ft, fi, vocab_size, d, err)
    c = d >> CHUNK_SHIFT
    if checked[c]:
        return True
    if not check_chunk(fo, ft, fi, fc, vocab_size, c, err):
        return False
    checked[c] = 1
    return True


@njit(cache=True, nogil=True)
def check_range(fo, ft, fi, fc, checked, vocab_size, lo, hi, err):
    """Check the chunks of documents ``[lo, hi)`` (those not checked yet); whether all are sound."""
    if hi <= lo:
        return True
    for c in range(lo >> CHUNK_SHIFT, ((hi - 1) >> CHUNK_SHIFT) + 1):
        if not checked[c]:
            if not check_chunk(fo, ft, fi, fc, vocab_size, c, err):
                return False
            checked[c] = 1
    return True


class ForwardIndexError(IntegrityError):
    """A failed forward-index check (:data:`ERRORS`). The check cannot tell which of the forward files is
    damaged: the index re-hashes them to name it (``InvertedIndex``), else ``path`` is ``forward_terms.npy``."""


def raise_error(err, root="") -> None:
    """Raise the ForwardIndexError of a check's ``err = (code, chunk)`` (``(4, block)``: an approximate
    block's document; ``(5, term)``: a posting list's summaries)."""
    if int(err[0]) == BAD_BLOCK_DOC:
        raise ForwardIndexError(Path(root) / "approx" / "block_docs.npy", f"approximate block {int(err[1])} holds a "
                                f"document index out of range (corrupt file); rebuild the index")
    if int(err[0]) == BAD_SUMMARY_PAIRS:
        raise ForwardIndexError(Path(root) / "approx" / "pair_blocks.npy", f"the summaries of posting list "
                                f"{int(err[1])} hold a block or pair offset out of range (approx/pair_blocks.npy, "
                                f"component_ends.npy or the list offsets; corrupt file); rebuild the index")
    raise ForwardIndexError(Path(root) / "forward_terms.npy", describe_error(err))


def describe_error(err) -> str:
    code, chunk = int(err[0]), int(err[1])
    what = ERRORS.get(code, f"error {code}")
    return (f"forward index {what} in documents {chunk * CHUNK}..{chunk * CHUNK + CHUNK - 1} (corrupt file); "
            f"rebuild the index")


__all__ = ["BAD_BLOCK_DOC", "BAD_SUMMARY_PAIRS", "CHUNK", "ERRORS", "NAMES", "ForwardIndexError",
           "check_chunk", "check_doc", "check_range", "check_row", "checksums", "describe_error", "new_checked",
           "num_chunks", "raise_error", "term_dtype"]
