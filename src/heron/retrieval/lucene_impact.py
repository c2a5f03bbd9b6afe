"""Serve one of heron's sparse indexes from Lucene instead: Anserini impact search (the ``lucene`` extra).

The index's stored integer impacts are exported as an Anserini ``JsonVectorCollection``, indexed with
``-impact -pretokenized`` and searched with query vectors from the index's own query encoder,
quantised with the index's scale (``round(w · scale)``). Lucene's score is then
``Σ round(q·s) · impact`` — heron's exact score times ``s²`` up to the query rounding — so rankings
agree with heron's exact search up to quantisation. The Lucene index is built once and cached under
``<cache>/indexes/lucene-impact/``.

Example::

    >>> r = LuceneImpactRetriever("indexes/scifact-splade-tiny")       # doctest: +SKIP
    >>> r.search(["coffee and cancer"], k=3)                              # doctest: +SKIP
"""

from __future__ import annotations

import os

from heron.indexing.lucene import LuceneImpactIndex
from heron.retrieval.base import IndexRetriever
from heron.retrieval.sparse import SparseIndexRetriever


class LuceneImpactRetriever(IndexRetriever):
    """Queries encoded by the inverted index's own encoder, searched by Lucene over the same impacts."""

    def __init__(self, index: str | os.PathLike, threads: int | None = None):
        self.index = LuceneImpactIndex.open(index, threads=threads)
        self.heron = SparseIndexRetriever(self.index.source)  # the query encoder; the inverted index opened once
        self.options = self.index.check_options({"threads": threads})
        self.name = f"{self.heron.name}-lucene"

    def describe(self) -> dict:
        return {"name": self.name, "index": str(self.index.path), "engine": "lucene-impact",
                "lucene_index": str(self.index.lucene_path), "encoder": self.index.encoder}

    def encode(self, texts):
        return self.heron.encode(texts)
