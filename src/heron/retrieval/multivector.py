"""Search a multi-vector bundle: exact MaxSim by brute force, or MUVERA candidates reranked by MaxSim.

Example::

    >>> retriever = MultiVectorRetriever("indexes/scifact-colbert-muvera", candidates=200)   # doctest: +SKIP
    >>> retriever.search(["coffee and cancer"], k=3)                                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from heron.errors import HeronError
from heron.indexing.multivector_store import MultiVectorIndex
from heron.retrieval.base import IndexRetriever


class MultiVectorRetriever(IndexRetriever):
    """``heron eval --index DIR`` for a multi-vector bundle; ``candidates`` switches to MUVERA + rerank."""

    def __init__(self, index: str | os.PathLike | MultiVectorIndex, *, candidates: int | None = None,
                 threads: int | None = None, device: str | None = "auto"):
        from heron.retrieval.encoders.multivector import MultiVectorEncoder

        self.index = MultiVectorIndex.open(index) if isinstance(index, str | os.PathLike) else index
        if candidates is not None and candidates < 1:
            raise HeronError(f"candidates must be at least 1, not {candidates}")
        if candidates is not None and self.index.fde is None:
            raise HeronError(f"{self.index.path}: built without MUVERA FDEs; --candidates needs an index built "
                             f"with muvera")
        self.candidates = candidates
        if self.index.encoder_dir is None:
            raise HeronError(f"{self.index.path}: the index holds no query encoder (encoder/)")
        self.encoder = MultiVectorEncoder(self.index.encoder_dir, threads=threads, device=device)
        if self.encoder.dim != self.index.dim:
            raise HeronError(f"{self.index.path}: the query encoder gives {self.encoder.dim}-dimensional vectors, "
                             f"the index holds {self.index.dim}")
        self.query_reduction = (self.index.manifest.get("query_reduction") or None)
        self.name = str(self.index.encoder.get("name") or self.index.path.name)

    def describe(self) -> dict:
        fde_type = (self.index.manifest.get("muvera") or {}).get("faiss", "flat")
        name = self.name + (f"-muvera{self.candidates}" + ("" if fde_type == "flat" else f"-{fde_type}")
                            if self.candidates else "-bruteforce")
        return {"name": name, "index": str(self.index.path), "candidates": self.candidates,
                "reduction": self.index.manifest.get("reduction"), "query_reduction": self.query_reduction,
                "muvera": self.index.manifest.get("muvera")}

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        from heron.multivector import crisp

        clouds = self.encoder.encode_queries(list(texts))
        if self.query_reduction:
            r = self.query_reduction
            clouds = [crisp.reduce(c, r.get("method", "kmeans"), r.get("k"), r.get("fraction")) for c in clouds]
        return clouds

    def search_vectors(self, queries: Sequence[np.ndarray], k: int = 10,
                       allow=None) -> list[tuple[list[str], np.ndarray]]:
        """Top-``k`` per query token-vector matrix (already reduced, as :meth:`encode` returns them)."""
        return [self.index.search(q, k=k, candidates=self.candidates, allow=allow) for q in queries]

