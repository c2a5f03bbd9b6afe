"""Retrieval: encoders turn text into vectors; retrievers turn queries into ranked runs.

``get_retriever(name)`` gives the retriever behind ``heron eval --retriever NAME``.
"""

from __future__ import annotations

from collections.abc import Callable

from heron.errors import HeronError
from heron.retrieval.base import Retriever, Run


def _bm25(**kw) -> Retriever:
    from heron.retrieval.bm25 import BM25Retriever

    return BM25Retriever(**kw)


def _bm25_lucene(**kw) -> Retriever:
    from heron.retrieval.bm25_lucene import LuceneBM25Retriever

    return LuceneBM25Retriever(**kw)


#: retriever name → (factory, one-line description)
RETRIEVERS: dict[str, tuple[Callable[..., Retriever], str]] = {
    "bm25": (_bm25, "native BM25 (Lucene formula, k1=0.9 b=0.4) as sparse vectors, scored with scipy"),
    "bm25-lucene": (_bm25_lucene, "Lucene BM25 through Pyserini (needs the `lucene` extra)"),
}


def get_retriever(name: str, **options) -> Retriever:
    """The retriever registered under ``name``; unknown names raise a one-line HeronError."""
    entry = RETRIEVERS.get(name)
    if entry is None:
        raise HeronError(f"unknown retriever '{name}' (known: {', '.join(RETRIEVERS)})")
    return entry[0](**options)


__all__ = ["RETRIEVERS", "Retriever", "Run", "get_retriever"]
