"""Search one of heron's inverted indexes with the query encoder stored inside it.

An index built by ``heron build-index`` carries its query encoder in ``encoder/`` (BM25 statistics,
a SPLADE query model, or an IDF table for inference-free SPLADE), so searching needs nothing but the
index folder.

Example::

    >>> from heron.retrieval.sparse import SparseIndexRetriever
    >>> retriever = SparseIndexRetriever("indexes/scifact-splade")          # doctest: +SKIP
    >>> retriever.search(["coffee and cancer"], k=3)                          # doctest: +SKIP
    [(['4983', '1145', '8843'], array([15.2, 12.9, 12.1], dtype=float32))]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError, QueryError
from heron.indexing.inverted import InvertedIndex
from heron.indexing.inverted.kernels import MODES
from heron.retrieval.base import IndexRetriever
from heron.retrieval.encoders import load_query_encoder


class SparseIndexRetriever(IndexRetriever):
    """``heron eval --index DIR``: queries encoded by the index's own encoder, searched by its kernels.

    ``mode`` (the index's :data:`~heron.indexing.inverted.kernels.MODES`): ``exact`` (block-max pruned
    exact top-k, the default), ``taat`` (exhaustive term-at-a-time, the baseline: the same results), or
    ``approx`` (needs an index built with approximate structures; ``preset`` or ``query_cut`` /
    ``heap_factor``, default preset ``recall95``).
    """

    def __init__(self, index: str | os.PathLike | InvertedIndex, mode: str = "exact", threads: int | None = None,
                 **knobs):
        self.index = InvertedIndex.open(index) if isinstance(index, str | os.PathLike) else index
        if mode not in MODES:
            raise HeronError(f"unknown search mode {mode!r} (choose {', '.join(MODES)})")
        self.mode = mode
        self.threads = threads or os.cpu_count() or 1
        self.knobs = {key: value for key, value in knobs.items() if value is not None}
        if mode != "approx" and self.knobs:
            raise HeronError(f"{', '.join(sorted(self.knobs))}: only meaningful with mode approx")
        if mode == "approx" and not self.knobs:
            self.knobs = {"preset": "recall95"}
        if self.index.encoder_dir is None:
            raise HeronError(f"{self.index.path}: the index holds no query encoder (encoder/); "
                             f"build it with heron build-index")
        self.encoder = load_query_encoder(self.index.encoder, self.index.encoder_dir)
        self.name = str(self.index.encoder.get("name") or self.index.path.name)

    def describe(self) -> dict:
        name = self.name if self.mode == "exact" else f"{self.name}-{self.mode}"
        if "preset" in self.knobs:
            name += f"-{self.knobs['preset']}"
        elif self.knobs:
            name += "".join(f"-{key}{value}" for key, value in sorted(self.knobs.items()))
        info = {"name": name,
                "index": str(self.index.path), "mode": self.mode, "encoder": self.index.encoder}
        if self.knobs:
            info["knobs"] = self.knobs
        return info

    # -- searching ----------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Query vectors in the index's term space."""
        matrix = sp.csr_matrix(self.encoder.encode_queries(list(texts)))
        if matrix.shape[1] != self.index.vocab_size:
            raise HeronError(f"{self.index.path}: the query encoder emits {matrix.shape[1]} dimensions, "
                             f"the index has {self.index.vocab_size} terms")
        return matrix

    def search_vectors(self, queries, k: int = 10, allow=None) -> list[tuple[list[str], np.ndarray]]:
        """Top-``k`` ``(doc ids, scores)`` per query vector (a ``Q × V`` sparse matrix, or ``{term: weight}``
        dicts); a query with no known term gets none. ``allow``: document ids to rank among (the exact
        modes only: an approximate search would rank only the allowed documents it happens to visit)."""
        if allow is not None and self.mode == "approx":
            raise QueryError(f"{self.index.path}: approximate search cannot rank an allow-list; "
                             f"search this index with mode exact")
        ids, scores = self.index.search_batch(queries, k=k, mode=self.mode, threads=self.threads, allow=allow,
                                              **self.knobs)
        return list(zip(ids, scores))
