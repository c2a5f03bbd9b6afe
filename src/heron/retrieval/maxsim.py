"""Exact MaxSim (Chamfer) scoring of multi-vector queries against multi-vector documents.

``score(Q, D) = Σ_i max_j ⟨q_i, d_j⟩`` over a query's token vectors ``q_i`` and a document's ``d_j``.
:func:`maxsim_candidates` scores many documents of a token store at once: their vectors are gathered
into one matrix, multiplied with the query in one call, and reduced per document with
``np.maximum.reduceat`` — the reranking step after MUVERA candidate generation, and the brute-force
ground truth when the candidates are the whole corpus.

Example::

    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    >>> vectors = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    >>> offsets = np.array([0, 2, 3])                 # document 0: rows 0-1, document 1: row 2
    >>> np.round(maxsim_candidates(q, vectors, offsets, np.array([0, 1])).astype(float), 4).tolist()
    [1.8, 1.0]
"""

from __future__ import annotations

import numpy as np


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """MaxSim of one query against one document (0 when either has no vectors)."""
    if len(query) == 0 or len(doc) == 0:
        return 0.0
    return float((np.asarray(query, np.float32) @ np.asarray(doc, np.float32).T).max(axis=1).sum())


def maxsim_naive(query, doc) -> float:
    """The definition as loops (the reference the vectorised kernels are tested against)."""
    total = 0.0
    for q in query:
        best = -np.inf
        for d in doc:
            best = max(best, float(sum(float(a) * float(b) for a, b in zip(q, d))))
        total += best if best != -np.inf else 0.0
    return total


def maxsim_candidates(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, candidates: np.ndarray,
                      chunk_tokens: int = 1 << 18) -> np.ndarray:
    """float32 MaxSim of ``query`` against documents ``candidates`` of a token store.

    ``vectors`` (``T × dim``, any float dtype, e.g. a memory-mapped fp16 array) holds document ``i`` in
    rows ``offsets[i]:offsets[i+1]``. Documents with no vectors score 0. Work is chunked so at most
    about ``chunk_tokens`` token rows are gathered at a time.
    """
    query = np.asarray(query, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.int64)
    out = np.zeros(len(candidates), dtype=np.float32)
    if len(query) == 0 or len(candidates) == 0:
        return out
    starts = np.asarray(offsets[candidates], dtype=np.int64)
    ends = np.asarray(offsets[candidates + 1], dtype=np.int64)
    lengths = ends - starts
    begin = 0
    while begin < len(candidates):
        total, stop = 0, begin
        while stop < len(candidates) and (stop == begin or total + lengths[stop] <= chunk_tokens):
            total += lengths[stop]
            stop += 1
        sel = np.arange(begin, stop)
        nonempty = sel[lengths[sel] > 0]
        if len(nonempty):
            lens = lengths[nonempty]
            first, last = int(starts[nonempty[0]]), int(ends[nonempty[-1]])
            if last - first == int(lens.sum()) and np.all(starts[nonempty[1:]] == ends[nonempty[:-1]]):
                block = np.asarray(vectors[first:last], dtype=np.float32)  # contiguous run: a slice
            else:
                shift = np.repeat(starts[nonempty] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
                block = np.asarray(vectors[np.arange(int(lens.sum())) + shift], dtype=np.float32)
            sims = query @ block.T  # m × tokens
            bounds = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
            out[nonempty] = np.maximum.reduceat(sims, bounds, axis=1).sum(axis=0)
        begin = stop
    return out


def rerank(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, candidates: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of ``candidates`` by exact MaxSim: ``(document indices, scores)``, best first."""
    scores = maxsim_candidates(query, vectors, offsets, candidates)
    order = np.lexsort((np.asarray(candidates), -scores))[:k]
    return np.asarray(candidates)[order], scores[order]
