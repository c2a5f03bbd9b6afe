"""Exact MaxSim (Chamfer) scoring of multi-vector queries against multi-vector documents — the one
implementation that serving (NumPy, a token store on disk) and training (torch, differentiable) share.

``score(Q, D) = Σ_i max_j ⟨q_i, d_j⟩`` over a query's token vectors ``q_i`` and a document's ``d_j``.
:func:`maxsim_scores` is the definition, written once over an array namespace: it takes NumPy arrays
(serving: NumPy's float32 matrix product and ``np.maximum.reduceat``) or torch tensors (training:
``scatter_reduce(amax)``, gradients flow into both sides), documents stored back to back with their
lengths. Built on it:

- :func:`maxsim` — one query against one document;
- :func:`maxsim_candidates` — many documents of a token store at once, gathered chunk by chunk into one
  matrix: the reranking step after MUVERA candidate generation, and the brute-force ground truth when
  the candidates are the whole corpus; :func:`rerank` keeps the best ``k``;
- :func:`maxsim_matrix` — padded torch batches (``B_q × B_d`` scores), the training loss's scores.

A document with no vectors scores 0; padded query positions (``query_mask`` False) add nothing.

Example::

    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    >>> vectors = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    >>> offsets = np.array([0, 2, 3])                 # document 0: rows 0-1, document 1: row 2
    >>> np.round(maxsim_candidates(q, vectors, offsets, np.array([0, 1])).astype(float), 4).tolist()
    [1.8, 1.0]
    >>> np.round(maxsim_scores(q, vectors, [2, 1]).astype(float), 4).tolist()       # the definition itself
    [1.8, 1.0]
"""

from __future__ import annotations

import numpy as np


def _is_numpy(x) -> bool:
    return isinstance(x, np.ndarray)


def _segment_max(sims, lengths):
    """``sims[..., t]`` reduced by ``max`` over consecutive segments of ``lengths`` (all > 0) columns."""
    if _is_numpy(sims):
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.maximum.reduceat(sims, starts, axis=-1)
    import torch

    segment = torch.repeat_interleave(torch.arange(len(lengths), device=sims.device), lengths)
    out = sims.new_full((*sims.shape[:-1], len(lengths)), float("-inf"))
    return out.scatter_reduce(-1, segment.expand_as(sims), sims, reduce="amax", include_self=True)


def maxsim_scores(query, vectors, lengths, query_mask=None):
    """MaxSim of ``query`` against documents whose vectors are stored back to back in ``vectors``.

    ``query``: ``m × dim`` (one query) or ``B × m × dim`` (a padded batch, with ``query_mask`` ``B × m``:
    True = a real vector); ``vectors``: ``T × dim``, document ``i`` in the next ``lengths[i]`` rows
    (``sum(lengths) == T``). Returns ``n`` scores (one query) or ``B × n``, in the inputs' namespace: NumPy
    arrays in, NumPy out (float32 for float32 inputs); torch tensors in, a differentiable tensor out.
    Documents with no vectors score 0.
    """
    numpy = _is_numpy(query)
    if numpy:
        lengths = np.asarray(lengths, dtype=np.int64)
        nonempty = np.flatnonzero(lengths > 0)
    else:
        import torch

        lengths = torch.as_tensor(lengths, dtype=torch.long, device=query.device)
        nonempty = torch.nonzero(lengths > 0).flatten()
    sims = query @ (vectors.T if numpy else vectors.transpose(-1, -2))  # [B ×] m × T
    if len(nonempty):
        best = _segment_max(sims, lengths[nonempty])  # [B ×] m × n': each query vector's best match
        if query_mask is not None:
            best = np.where(query_mask[..., None], best, 0) if numpy else \
                best.masked_fill(~query_mask.bool()[..., None], 0.0)
        summed = best.sum(axis=-2) if numpy else best.sum(dim=-2)
        if len(nonempty) == len(lengths):
            return summed
    shape = (*sims.shape[:-2], len(lengths))
    out = np.zeros(shape, dtype=sims.dtype) if numpy else sims.new_zeros(shape)
    if len(nonempty):
        out[..., nonempty] = summed  # differentiable in torch (index_put)
    return out


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """MaxSim of one query against one document (0 when either has no vectors)."""
    if len(query) == 0 or len(doc) == 0:
        return 0.0
    query, doc = np.asarray(query, np.float32), np.asarray(doc, np.float32)
    return float(maxsim_scores(query, doc, [len(doc)])[0])


def maxsim_matrix(q, q_mask, d, d_mask):
    """``B_q × B_d`` MaxSim scores of padded torch batches (differentiable): ``q`` ``B_q × L_q × dim`` and
    ``d`` ``B_d × L_d × dim`` token vectors, ``q_mask`` / ``d_mask`` True where a vector is real."""
    d_mask = d_mask.bool()
    return maxsim_scores(q, d[d_mask], d_mask.sum(dim=1), query_mask=q_mask)


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
            out[nonempty] = maxsim_scores(query, block, lens)
        begin = stop
    return out


def rerank(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, candidates: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of ``candidates`` by exact MaxSim: ``(document indices, scores)``, best first."""
    scores = maxsim_candidates(query, vectors, offsets, candidates)
    order = np.lexsort((np.asarray(candidates), -scores))[:k]
    return np.asarray(candidates)[order], scores[order]
