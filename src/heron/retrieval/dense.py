"""Search a FAISS bundle (dense or CSR-base vectors) with the query encoder stored inside it.

Example::

    >>> from heron.retrieval.dense import DenseIndexRetriever
    >>> retriever = DenseIndexRetriever("indexes/scifact-minilm-flat")          # doctest: +SKIP
    >>> retriever.search(["coffee and cancer"], k=3)                            # doctest: +SKIP
    [(['4983', '1145', '8843'], array([0.61, 0.58, 0.57], dtype=float32))]

``truncate_dims=N`` scores by the first ``N`` dimensions of the stored vectors only, re-normalised
(brute force): the Matryoshka-style baseline that the CSR experiments compare against.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from heron.errors import HeronError
from heron.indexing.faiss_index import FaissIndex
from heron.retrieval.base import IndexRetriever


class DenseIndexRetriever(IndexRetriever):
    """``heron eval --index DIR`` for a FAISS bundle: queries encoded by the bundle's own encoder."""

    def __init__(self, index: str | os.PathLike | FaissIndex, *, ef_search: int | None = None,
                 nprobe: int | None = None, truncate_dims: int | None = None, threads: int | None = None,
                 device: str | None = "auto"):
        self.index = index if isinstance(index, FaissIndex) else FaissIndex.open(index, device=device)
        self.index.set_search_params(ef_search=ef_search, nprobe=nprobe)
        self.knobs = {k: v for k, v in {"ef_search": ef_search, "nprobe": nprobe}.items() if v is not None}
        if threads:
            import faiss

            faiss.omp_set_num_threads(int(threads))
        if truncate_dims is not None:
            if self.index.vectors is None:
                raise HeronError(f"{self.index.path}: truncation needs the stored vectors (built without them)")
            if not 1 <= truncate_dims <= self.index.dim:
                raise HeronError(f"truncate_dims={truncate_dims} must be between 1 and the dimension {self.index.dim}")
        self.truncate_dims = truncate_dims
        if self.index.encoder_dir is None:
            raise HeronError(f"{self.index.path}: the index holds no query encoder (encoder/); "
                             f"build it with heron build-index")
        from heron.retrieval.encoders.dense import DenseEncoder

        self.encoder = DenseEncoder.load(self.index.encoder_dir, threads=threads, device=device)
        if self.encoder.dim != self.index.dim:
            raise HeronError(f"{self.index.path}: the query encoder gives {self.encoder.dim} dimensions, the index "
                             f"holds {self.index.dim}")
        self.name = str(self.index.encoder.get("name") or self.index.path.name)
        self._truncated = None

    def describe(self) -> dict:
        name = self.name if self.index.index_type == "flat" else f"{self.name}-{self.index.index_type}"
        if self.truncate_dims:
            name += f"-trunc{self.truncate_dims}"
        name += "".join(f"-{k}{v}" for k, v in sorted(self.knobs.items()))
        info = {"name": name, "index": str(self.index.path), "faiss": self.index.manifest["faiss"],
                "encoder": self.index.encoder}
        if self.truncate_dims:
            info["truncate_dims"] = self.truncate_dims
        return info

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(list(texts))

    def search_vectors(self, queries: np.ndarray, k: int = 10, allow=None) -> list[tuple[list[str], np.ndarray]]:
        """Top-``k`` per query vector; ``allow`` (document ids): exact inner products over those documents."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.index.dim:
            raise HeronError(f"{self.index.path}: query vectors have {queries.shape[1]} dimensions, the index "
                             f"has {self.index.dim}")
        if allow is not None:
            return self._search_allowed(queries, k, allow)
        if self.truncate_dims:
            return self._search_truncated(queries, k)
        ids, scores = self.index.search(queries, k)
        return list(zip(ids, scores))

    def _search_allowed(self, queries: np.ndarray, k: int, allow) -> list[tuple[list[str], np.ndarray]]:
        positions = self.index.positions_of(allow)
        if self.index.vectors is None:
            raise HeronError(f"{self.index.path}: an allow-list needs the stored vectors (this index was built "
                             f"with store_vectors: false)")
        docs = np.asarray(self.index.vectors[positions], dtype=np.float32)
        if self.truncate_dims:
            n = self.truncate_dims
            docs = docs[:, :n] / np.maximum(np.linalg.norm(docs[:, :n], axis=1, keepdims=True), 1e-12)
            queries = queries[:, :n] / np.maximum(np.linalg.norm(queries[:, :n], axis=1, keepdims=True), 1e-12)
        return [_top_k(row, positions, self.index.doc_ids, k) for row in queries @ docs.T]

    def _search_truncated(self, queries: np.ndarray, k: int) -> list[tuple[list[str], np.ndarray]]:
        n = self.truncate_dims
        if self._truncated is None:
            docs = np.asarray(self.index.vectors[:, :n], dtype=np.float32)
            self._truncated = docs / np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)
        q = np.asarray(queries[:, :n], dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        everything = np.arange(self.index.num_docs)
        return [_top_k(row, everything, self.index.doc_ids, k) for row in q @ self._truncated.T]


def _top_k(scores: np.ndarray, positions: np.ndarray, doc_ids: list[str], k: int) -> tuple[list[str], np.ndarray]:
    """The ``k`` best of ``scores`` (over documents ``positions``), ties broken by position."""
    k = min(k, len(scores))
    if k <= 0:
        return [], np.zeros(0, np.float32)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((positions[top], -scores[top]))]
    return [doc_ids[i] for i in positions[top].tolist()], scores[top].astype(np.float32)

