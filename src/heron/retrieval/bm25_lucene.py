"""Lucene BM25 through Anserini (Pyserini's jar): the reference implementation heron's native BM25 follows."""

from __future__ import annotations

from pathlib import Path

from heron import settings
from heron.retrieval.base import Retriever, Run


class LuceneBM25Retriever(Retriever):
    """``heron eval --retriever bm25-lucene``: Anserini BM25 (k1=0.9, b=0.4) over a cached Lucene index.

    The index (Pyserini's BEIR "flat" settings: title and text joined, English analyzer, Porter stemmer)
    is built on first use under ``$HERON_CACHE/indexes/lucene-bm25/<dataset>-<fingerprint>`` and reused
    afterwards; it is built beside that folder and renamed into place, so an interrupted build leaves
    nothing half-made. Needs the ``lucene`` extra (``pip install 'heron[lucene]'``).

    Example::

        >>> from heron.eval import load_dataset
        >>> ds = load_dataset("scifact")                                           # doctest: +SKIP
        >>> run = LuceneBM25Retriever().retrieve(ds, ds.queries("test"), k=100)    # doctest: +SKIP
    """

    name = "bm25-lucene"

    def __init__(self, k1: float = 0.9, b: float = 0.4, threads: int | None = None):
        from heron.retrieval.options import BM25Options, checked

        checked(BM25Options, "bm25-lucene", k1=k1, b=b)
        self.k1, self.b, self.threads = k1, b, threads

    def describe(self) -> dict:
        return {"name": self.name, "k1": self.k1, "b": self.b}

    @staticmethod
    def index_path(dataset) -> Path:
        """Where the Lucene index of ``dataset``'s corpus is cached."""
        return settings.cache_dir() / "indexes" / "lucene-bm25" / f"{dataset.name}-{dataset.fingerprint()}"

    def index(self, dataset) -> Path:
        """The cached index of ``dataset``, built first if absent."""
        from heron.indexing.lucene import build_bm25_index
        from heron.storage import build_once

        path = self.index_path(dataset)
        build_once(path, lambda: build_bm25_index(((doc.id, doc.contents) for doc in dataset.iter_corpus()), path,
                                                  threads=self.threads), "cached Lucene index")
        return path

    def retrieve(self, dataset, queries: dict[str, str], k: int = 1000) -> Run:
        from heron.indexing.lucene import search_bm25

        hits = search_bm25(self.index(dataset), queries, k=k, k1=self.k1, b=self.b, threads=self.threads)
        return {qid: dict(docs) for qid, docs in hits.items()}
