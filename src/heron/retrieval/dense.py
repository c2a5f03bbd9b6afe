"""Search a FAISS index (dense or CSR-base vectors) with the query encoder stored inside it.

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
    """``heron eval --index DIR`` for a FAISS index: queries encoded by the index's own encoder."""

    def __init__(self, index: str | os.PathLike | FaissIndex, *, ef_search: int | None = None,
                 nprobe: int | None = None, truncate_dims: int | None = None, threads: int | None = None,
                 device: str | None = "auto"):
        self.index = FaissIndex.open(index, device=device) if isinstance(index, str | os.PathLike) else index
        self.options = self.index.check_options({"ef_search": ef_search, "nprobe": nprobe,
                                                 "truncate_dims": truncate_dims})
        self.index.set_search_params(ef_search=ef_search, nprobe=nprobe)
        if truncate_dims is not None:
            self.index.check_truncation(truncate_dims)
        if threads:
            import faiss

            faiss.omp_set_num_threads(int(threads))
        from heron.retrieval.encoders.dense import DenseEncoder

        self.encoder = DenseEncoder.load(self.require_encoder_dir(), threads=threads, device=device)
        if self.encoder.dim != self.index.dim:
            raise HeronError(f"{self.index.path}: the query encoder gives {self.encoder.dim} dimensions, the index "
                             f"holds {self.index.dim}")
        self.name = str(self.index.encoder.get("name") or self.index.path.name)

    @property
    def truncate_dims(self) -> int | None:
        return self.options.get("truncate_dims")

    def describe(self) -> dict:
        name = self.name if self.index.index_type == "flat" else f"{self.name}-{self.index.index_type}"
        if self.truncate_dims:
            name += f"-trunc{self.truncate_dims}"
        name += "".join(f"-{k}{v}" for k, v in sorted(self.options.items()) if k != "truncate_dims")
        info = {"name": name, "index": str(self.index.path), "faiss": self.index.manifest["faiss"],
                "encoder": self.index.encoder}
        if self.truncate_dims:
            info["truncate_dims"] = self.truncate_dims
        return info

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(list(texts))
