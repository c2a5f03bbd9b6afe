"""Top-k selection and the plumbing every search kernel shares (:mod:`.kernels`, :mod:`.approx`).

* The **heap**: a min-heap of ``k`` ``(score float32, doc int32)`` pairs whose root is the k-th best so
  far, filled with sentinels (score 0, doc ``INT32_MAX``) so that only documents scoring > 0 enter.
  Ranking: higher score first, ties to the lower document index (:func:`worse`). :func:`heap_finish`
  sorts it best first into a row of the ``(idx int32[Q, k], scores float32[Q, k])`` outputs, padded with
  -1 / -inf.
* **Batches**: :func:`begin_query` / :func:`end_query` reset the heap and set / clear a query's allow
  mask around each query of a group; :func:`run_groups` runs the groups on a thread pool (the compiled
  kernels release the GIL).
* **Inputs**: :func:`readonly` views (one compiled specialisation for memory maps and arrays),
  :func:`prepare_query` / :func:`prepare_mask` checks, per-thread :func:`scratch` arrays, and
  :func:`search_one`, the frame of every one-query search.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

INT32_MAX = np.iinfo(np.int32).max
SLACK = 1.0 + 1e-9  # relative slack on score upper bounds against float64 rounding


# -- the heap ----------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def worse(s1, d1, s2, d2):
    """Whether (score s1, doc d1) ranks below (s2, d2): lower score, or same score and higher doc."""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@njit(cache=True, nogil=True)
def sift_down(hs, hd, i, n):
    """Restore the heap order of ``hs[:n]`` / ``hd[:n]`` below position ``i``."""
    s = hs[i]
    d = hd[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        r = c + 1
        if r < n and worse(hs[r], hd[r], hs[c], hd[c]):
            c = r
        if worse(hs[c], hd[c], s, d):
            hs[i] = hs[c]
            hd[i] = hd[c]
            i = c
        else:
            break
    hs[i] = s
    hd[i] = d


@njit(cache=True, nogil=True)
def heap_reset(hs, hd):
    """A heap of ``len(hs)`` sentinels (score 0, doc INT32_MAX): the root is the k-th best so far."""
    for i in range(hs.shape[0]):
        hs[i] = np.float32(0.0)
        hd[i] = INT32_MAX


@njit(cache=True, nogil=True)
def heap_replace_root(hs, hd, s, d):
    """Replace the k-th best by (s, d), which the caller knows ranks above it."""
    hs[0] = s
    hd[0] = d
    sift_down(hs, hd, 0, hs.shape[0])


@njit(cache=True, nogil=True)
def heap_offer(hs, hd, s, d):
    """Push (s, d) if s > 0 and it ranks above the current k-th (any arrival order)."""
    if s > 0 and (s > hs[0] or (s == hs[0] and d < hd[0])):
        heap_replace_root(hs, hd, s, d)


@njit(cache=True, nogil=True)
def heap_finish(hs, hd, out_idx, out_scores, row):
    """Sort the heap best first (destroys it) into ``out_*[row]``; pad with -1 / -inf."""
    n = hs.shape[0]
    for end in range(n - 1, 0, -1):
        s = hs[0]
        d = hd[0]
        hs[0] = hs[end]
        hd[0] = hd[end]
        hs[end] = s
        hd[end] = d
        sift_down(hs, hd, 0, end)
    k = out_idx.shape[1]
    for i in range(k):
        if i < n and hd[i] != INT32_MAX:
            out_idx[row, i] = hd[i]
            out_scores[row, i] = hs[i]
        else:
            out_idx[row, i] = -1
            out_scores[row, i] = -np.inf


# -- the queries of a batch --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def fill_mask(mask, allow_indptr, allow_docs, q, value):
    """Set the mask entries of query ``q``'s allowed documents to ``value``."""
    for j in range(allow_indptr[q], allow_indptr[q + 1]):
        mask[allow_docs[j]] = value


@njit(cache=True, nogil=True)
def begin_query(hs, hd, mask, allow_indptr, allow_docs, q):
    """Before query ``q`` of a batch: an empty heap, and its allow-list in ``mask`` (when filtering)."""
    heap_reset(hs, hd)
    if allow_indptr.shape[0] > 0:
        fill_mask(mask, allow_indptr, allow_docs, q, 1)


@njit(cache=True, nogil=True)
def end_query(hs, hd, out_idx, out_scores, mask, allow_indptr, allow_docs, q):
    """After query ``q``: its results into row ``q`` of the outputs, its allow-list cleared from ``mask``."""
    heap_finish(hs, hd, out_idx, out_scores, q)
    if allow_indptr.shape[0] > 0:
        fill_mask(mask, allow_indptr, allow_docs, q, 0)


def run_groups(run, groups: int, threads: int) -> None:
    """``run(g)`` for every group ``g`` on ``threads`` threads (the kernels release the GIL)."""
    if threads <= 1 or groups <= 1:
        for g in range(groups):
            run(g)
        return
    with ThreadPoolExecutor(max_workers=min(threads, groups)) as pool:
        for future in [pool.submit(run, g) for g in range(groups)]:
            future.result()


# -- inputs and outputs ------------------------------------------------------------------------------
_local = threading.local()


def readonly(array, dtype=None) -> np.ndarray:
    """A read-only, C-contiguous plain ndarray view (one compiled specialisation for mmaps and arrays)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


def scratch(name: str, size: int, dtype, grow: bool = False) -> np.ndarray:
    """A per-thread scratch array, reused between calls: zeroed when made (kernels leave the zeroed ones
    zeroed). With ``grow`` an existing larger array is returned as is."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    array = cache.get(name)
    if array is not None and grow and len(array) >= size and array.dtype == np.dtype(dtype):
        return array
    if array is None or len(array) != size or array.dtype != np.dtype(dtype):
        array = cache[name] = np.zeros(size, dtype=dtype)
    return array


def prepare_query(terms, weights, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(terms int32, weights float32)`` of a query: ids in ``[0, vocab_size)``, weights finite ≥ 0."""
    terms = readonly(terms, np.int32).reshape(-1)
    weights = readonly(weights, np.float32).reshape(-1)
    if len(terms) != len(weights):
        raise ValueError(f"{len(terms)} query terms but {len(weights)} weights")
    if len(terms) and (terms.min() < 0 or terms.max() >= vocab_size):
        raise ValueError(f"query term ids must lie in [0, {vocab_size})")
    if len(weights) and not (np.all(np.isfinite(weights)) and weights.min() >= 0):
        raise ValueError("query weights must be finite and non-negative")
    return terms, weights


def prepare_mask(mask, num_docs: int) -> np.ndarray:
    """The uint8 allow mask (writable, the kernels' type); an empty array means no filter."""
    if mask is None:
        return np.zeros(0, np.uint8)
    mask = np.ascontiguousarray(mask).reshape(-1)
    if mask.dtype != np.uint8:
        mask = mask.astype(np.uint8)
    if len(mask) not in (0, num_docs):
        raise ValueError(f"allow mask has {len(mask)} entries for {num_docs} documents")
    if not mask.flags.writeable:
        mask = mask.copy()
    return mask


def outputs(rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Result arrays ``(idx int32[rows, k] = -1, scores float32[rows, k] = -inf)``."""
    return np.full((rows, k), -1, np.int32), np.full((rows, k), -np.inf, np.float32)


def search_one(vocab_size: int, num_docs, terms, weights, k, mask, kernel) -> tuple[np.ndarray, np.ndarray]:
    """One query's top-``k``: ``(idx int32[k], scores float32[k])``.

    Checks the query and the mask, then, unless there is nothing to rank, calls
    ``kernel(terms, weights, mask, hs, hd)`` on a reset heap of ``min(k, num_docs)`` entries.
    """
    num_docs, k = int(num_docs), int(k)
    terms, weights = prepare_query(terms, weights, vocab_size)
    mask = prepare_mask(mask, num_docs)
    out_idx, out_scores = outputs(1, max(k, 0))
    kk = min(k, num_docs)
    if kk > 0 and len(terms):
        hs, hd = np.empty(kk, np.float32), np.empty(kk, np.int32)
        heap_reset(hs, hd)
        kernel(terms, weights, mask, hs, hd)
        heap_finish(hs, hd, out_idx, out_scores, 0)
    return out_idx[0], out_scores[0]


__all__ = ["INT32_MAX", "SLACK", "begin_query", "end_query", "fill_mask", "heap_finish", "heap_offer",
           "heap_replace_root", "heap_reset", "outputs", "prepare_mask", "prepare_query", "readonly",
           "run_groups", "scratch", "search_one", "sift_down", "worse"]
