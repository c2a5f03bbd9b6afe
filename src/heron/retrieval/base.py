"""The retriever contract every retrieval method in heron follows.

A retriever turns queries into a *run*: ``{query_id: {doc_id: score}}`` holding up to ``k`` documents
per query. Runs are what :mod:`heron.eval` scores and what fusion combines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from heron.eval.datasets import Dataset

Run = dict[str, dict[str, float]]


class Retriever(ABC):
    """Base class: ``retrieve(dataset, queries, k)`` → run.

    Implementations build (or open a cached) index over ``dataset``'s corpus on first use.
    """

    #: the name used on the command line (``heron eval --retriever NAME``)
    name: str = "retriever"

    @abstractmethod
    def retrieve(self, dataset: Dataset, queries: dict[str, str], k: int = 1000) -> Run:
        """Return the top ``k`` documents of ``dataset`` for each query, as ``{qid: {docid: score}}``."""

    def describe(self) -> dict:
        """Parameters that identify this retriever's configuration (recorded with results)."""
        return {"name": self.name}
