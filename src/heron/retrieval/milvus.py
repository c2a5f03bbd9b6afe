"""Search a member of an exported Milvus collection (:class:`heron.indexing.milvus_index.MilvusIndex`) with the
member's own query encoder, fetched from the collection: what ``heron.Index.open("milvus://…")``,
``heron eval --index milvus://…`` and ``heron serve`` use. Fusion and PRF work on top as for an index folder."""

from __future__ import annotations

from collections.abc import Sequence

import scipy.sparse as sp

from heron.errors import HeronError, QueryError
from heron.retrieval.base import IndexRetriever


class MilvusRetriever(IndexRetriever):
    """Queries encoded here (the member's encoder), ranked by Milvus. ``mode`` (sparse: ``exact`` / ``taat``,
    both exact) and ``ef_search`` (dense HNSW) go with every search; ``threads`` and ``device`` to the encoder."""

    def __init__(self, index, *, mode: str | None = None, ef_search: int | None = None, threads: int | None = None,
                 device: str | None = "auto"):
        self.index = index
        if index.space == "sparse":
            if mode not in (None, "exact", "taat"):
                raise HeronError(f"{index.path}: Milvus searches sparse members exactly; mode {mode!r} does not apply")
            if ef_search is not None:
                raise HeronError(f"{index.path}: ef_search applies to dense members")
            from heron.retrieval.encoders import load_query_encoder

            self.encoder = load_query_encoder(index.encoder, index.encoder_dir)
        else:
            if mode is not None:
                raise HeronError(f"{index.path}: mode applies to sparse members")
            from heron.retrieval.encoders.dense import DenseEncoder

            self.encoder = DenseEncoder.load(index.encoder_dir, threads=threads, device=device)
            if self.encoder.dim != index.dim:
                raise HeronError(f"{index.path}: the query encoder gives {self.encoder.dim} dimensions, the member "
                                 f"holds {index.dim}")
        self.options = {"ef_search": ef_search} if ef_search is not None else {}
        self.name = str(index.encoder.get("name") or index.name)

    def describe(self) -> dict:
        suffix = "".join(f"-{k}{v}" for k, v in sorted(self.options.items()))
        return {"name": f"{self.name}-milvus{suffix}", "index": str(self.index.path), "encoder": self.index.encoder,
                "milvus": self.index.describe()["milvus"]}

    def encode(self, texts: Sequence[str]):
        if self.index.space == "sparse":
            matrix = sp.csr_matrix(self.encoder.encode_queries(list(texts)))
            if matrix.shape[1] != self.index.vocab_size:
                raise HeronError(f"{self.index.path}: the query encoder emits {matrix.shape[1]} dimensions, the "
                                 f"member has {self.index.vocab_size} terms")
            return matrix
        return self.encoder.encode_queries(list(texts))

    def search_vectors(self, queries, k: int = 10, allow=None) -> list:
        try:
            ids, scores = self.index.search_batch(queries, k=k, allow=allow, **self.options)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        return list(zip(ids, scores))
