"""The retriever contract every retrieval method in heron follows.

A retriever turns queries into a *run*: ``{query_id: {doc_id: score}}`` holding up to ``k`` documents
per query. Runs are what :mod:`heron.eval` scores and what fusion combines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from heron.eval.runs import Run  # re-exported: retrievers produce runs

if TYPE_CHECKING:  # pragma: no cover
    from heron.eval.datasets import Dataset


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


class IndexRetriever(Retriever):
    """A retriever over one built index (``self.index``, whose ``encoder`` records the dataset it was
    built from) that answers text queries with ``search(texts, k)`` → per query ``(doc ids, scores)``.

    Searching is two steps, each usable alone: ``encode(texts)`` gives query vectors in the index's
    space (a sparse matrix, a dense matrix, or a list of token-vector matrices), and
    ``search_vectors(vectors, k, allow)`` ranks the index by them. ``allow`` (document ids) restricts the
    ranking to those documents, exactly.
    """

    index = None
    #: search options passed to ``index.search_batch`` with every query batch
    options: dict = {}

    @abstractmethod
    def encode(self, texts):
        """Query vectors for ``texts`` in the index's space."""

    def search_vectors(self, queries, k: int = 10, allow=None) -> list:
        """Top-``k`` ``(doc ids, scores)`` per query vector (among the ``allow`` ids when given)."""
        ids, scores = self.index.search_batch(queries, k=k, allow=allow, **self.options)
        return list(zip(ids, scores))

    def require_encoder_dir(self):
        """The query encoder folder inside the index; a one-line error when the index holds none."""
        if self.index.encoder_dir is None:
            from heron.errors import HeronError

            raise HeronError(f"{self.index.path}: the index holds no query encoder (encoder/); "
                             f"build it with heron build-index")
        return self.index.encoder_dir

    def encode_cached(self, texts):
        """:meth:`encode`, remembered for the last query set (keyed by the texts): a retriever shared by
        several runs (``heron eval -r splade -r splade+dense``) encodes the same queries once. The
        vectors returned are shared; callers must not modify them in place."""
        key = tuple(texts)
        cached = self.__dict__.get("_encoded")
        if cached is not None and cached[0] == key:
            return cached[1]
        vectors = self._encode_with_progress(list(key))
        self._encoded = (key, vectors)
        return vectors

    #: show a bar on stderr while encoding a large query set (``progress=False`` to silence it)
    progress: bool = True
    _QUERY_CHUNK = 256

    def _encode_with_progress(self, texts: list):
        """:meth:`encode`, in chunks with a progress bar when there are many queries."""
        step = self._QUERY_CHUNK
        if not self.progress or len(texts) <= 2 * step:
            return self.encode(texts)
        from tqdm.auto import tqdm

        name = getattr(self, "name", None) or type(self).__name__
        parts = []
        with tqdm(total=len(texts), unit="query", desc=f"encoding queries ({name})", dynamic_ncols=True,
                  mininterval=1.0, leave=False) as bar:
            for start in range(0, len(texts), step):
                parts.append(self.encode(texts[start:start + step]))
                bar.update(min(step, len(texts) - start))
        return _stack(parts)

    def search(self, texts, k: int = 10, allow=None) -> list:
        """Top-``k`` ``(doc ids, scores)`` per query text."""
        return self.search_vectors(self.encode_cached(texts), k, allow=allow)

    def check_dataset(self, dataset) -> None:
        """Refuse to evaluate an index on a dataset other than the one it was built from."""
        from heron.errors import HeronError

        built_from = self.index.encoder.get("dataset") or {}
        fingerprint = built_from.get("fingerprint")
        if fingerprint and fingerprint != dataset.fingerprint():
            raise HeronError(f"{self.index.path}: built from dataset {built_from.get('name')!r} "
                             f"({fingerprint[:12]}), not from {dataset.name!r} ({dataset.fingerprint()[:12]})")

    def retrieve(self, dataset, queries: dict[str, str], k: int = 1000) -> Run:
        self.check_dataset(dataset)
        qids = list(queries)
        results = self.search([queries[q] for q in qids], k=k)
        return {qid: dict(zip(ids, map(float, scores))) for qid, (ids, scores) in zip(qids, results)}


def _stack(parts: list):
    """Query vectors encoded in chunks, as one: sparse matrices stacked, arrays concatenated, lists joined."""
    import numpy as np
    import scipy.sparse as sp

    if all(sp.issparse(p) for p in parts):
        return sp.vstack(parts, format="csr")
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return [row for part in parts for row in part]
