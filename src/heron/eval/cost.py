"""Retrieval cost of a sparse representation: what an inverted index must touch to answer queries.

For a query set ``Q`` and a corpus of ``N`` documents indexed with document frequencies ``df_t``:

- ``postings``: the mean number of postings traversed per query by exhaustive term-at-a-time search,
  ``(1/|Q|) Σ_q Σ_{t∈q} df_t`` — the length of every posting list a query touches. Dynamic pruning
  (heron's default ``exact`` mode) skips some of them; this is the cost of the representation itself.
- ``flops``: the FLOPS of Paria et al. (2020) and the SPLADE papers — the expected number of
  multiply-adds to score one query against one document, ``Σ_t p_t^q · p_t^d`` with ``p_t^q`` the
  fraction of queries and ``p_t^d = df_t / N`` the fraction of documents that hold term ``t``. It
  equals ``postings / N``, a number comparable across corpora of different sizes.
- ``query_terms`` / ``doc_terms``: mean non-zeros per query and per document vector.

    >>> import numpy as np, scipy.sparse as sp
    >>> q = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]))
    >>> c = sparse_cost(q, df=np.array([4, 1, 2]), num_docs=4, doc_nnz=7)
    >>> c["postings"], c["flops"], c["query_terms"], c["doc_terms"]     # ((4+2) + 1) / 2; 3.5 / 4
    (3.5, 0.875, 1.5, 1.75)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError


def sparse_cost(queries: sp.spmatrix, df: np.ndarray, num_docs: int, doc_nnz: int) -> dict:
    """Cost of ``queries`` (``Q × V``) against an index with document frequencies ``df`` (see module)."""
    queries = sp.csr_matrix(queries)
    df = np.asarray(df, dtype=np.float64).reshape(-1)
    if queries.shape[1] != len(df):
        raise HeronError(f"queries have {queries.shape[1]} dimensions, the index {len(df)} terms")
    if num_docs <= 0 or queries.shape[0] == 0:
        raise HeronError("retrieval cost needs at least one query and one document")
    present = queries.copy()
    present.data = (present.data != 0).astype(np.float64)
    present.eliminate_zeros()
    postings = np.asarray(present @ df).reshape(-1)
    return {"queries": int(queries.shape[0]), "postings": float(postings.mean()),
            "flops": float(postings.mean() / num_docs), "query_terms": float(present.sum() / queries.shape[0]),
            "doc_terms": float(doc_nnz / num_docs)}


def index_cost(retriever, texts) -> dict:
    """:func:`sparse_cost` of query ``texts`` encoded and matched by a sparse index retriever."""
    index = getattr(retriever, "index", None)
    if index is None or not hasattr(index, "df"):
        raise HeronError("retrieval cost is defined for heron's inverted indexes (SPLADE, CSR, BM25 impacts)")
    return sparse_cost(retriever.encode(list(texts)), index.df(), index.num_docs, index.nnz)
