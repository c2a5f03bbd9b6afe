"""Exhaustive scoring of sparse query vectors against sparse document vectors (scipy), with top-k.

This is the brute-force reference every faster kernel is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from heron.retrieval.base import Run


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries of each row, best first (ties: lower index first)."""
    rows, n = scores.shape
    k = min(k, n)
    idx = np.zeros((rows, k), dtype=np.int64)
    for r in range(rows):
        row = scores[r]
        if k < n:
            kth = row[np.argpartition(-row, k - 1)[k - 1]]
            above = np.flatnonzero(row > kth)
            ties = np.flatnonzero(row == kth)[: k - len(above)]
            cand = np.concatenate([above, ties])
        else:
            cand = np.arange(n)
        idx[r] = cand[np.lexsort((cand, -row[cand]))]
    return idx, np.take_along_axis(scores, idx, axis=1)


def sparse_search(queries: sp.csr_matrix, docs: sp.csr_matrix, k: int, doc_ids: Sequence[str],
                  query_ids: Sequence[str], max_cells: int = 50_000_000, sum_in_double: bool = False) -> Run:
    """Score every query against every document (``Q · Dᵀ``) and keep the top ``k`` with score > 0.

    Queries go in chunks so that a dense chunk of scores holds at most ``max_cells`` floats.
    ``sum_in_double``: add the float32 term scores in double precision and round the sum to float32, as
    Lucene's disjunction scorers do (scores then tie exactly where Lucene's tie).
    """
    if sum_in_double:
        queries, docs = queries.astype(np.float64), docs.astype(np.float64)
    docs_t = docs.T.tocsr()
    chunk = max(1, max_cells // max(docs.shape[0], 1))
    run: Run = {}
    for start in range(0, queries.shape[0], chunk):
        block = (queries[start:start + chunk] @ docs_t).toarray()
        if sum_in_double:
            block = block.astype(np.float32)
        idx, vals = topk_rows(block, k)
        for row in range(block.shape[0]):
            qid = query_ids[start + row]
            keep = vals[row] > 0
            run[qid] = {doc_ids[i]: float(s) for i, s in zip(idx[row][keep], vals[row][keep])}
    return run
