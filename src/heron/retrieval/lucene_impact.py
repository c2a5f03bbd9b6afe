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

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from heron.retrieval.base import Retriever, Run
from heron.retrieval.sparse import SparseIndexRetriever
from heron.settings import cache_dir


class LuceneImpactRetriever(Retriever):
    def __init__(self, index: str | os.PathLike, threads: int | None = None):
        self.heron = SparseIndexRetriever(index)
        self.index = self.heron.index
        self.threads = threads
        self.name = f"{self.heron.name}-lucene"
        self.lucene_path = self._ensure_lucene_index()

    def describe(self) -> dict:
        return {"name": self.name, "index": str(self.index.path), "engine": "lucene-impact",
                "lucene_index": str(self.lucene_path), "encoder": self.index.encoder}

    def _ensure_lucene_index(self) -> Path:
        from heron.indexing import lucene

        digest = hashlib.sha256((self.index.path / "manifest.json").read_bytes()).hexdigest()[:16]
        target = cache_dir() / "indexes" / "lucene-impact" / f"{self.index.path.name}-{digest}"
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        vocab, doc_ids = self.index.vocab, self.index.doc_ids

        def rows():
            for position, (terms, impacts) in enumerate(self.index.iter_rows(dequantize=False)):
                yield doc_ids[position], {vocab[t]: int(v) for t, v in zip(terms.tolist(), impacts.tolist())}

        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            collection = Path(tmp) / "collection"
            lucene.export_json_vectors(rows(), collection / "docs.jsonl")
            lucene.build_impact_index(collection, target, threads=self.threads, total=self.index.num_docs)
            shutil.rmtree(collection, ignore_errors=True)
        return target

    def search(self, texts: Sequence[str], k: int = 10) -> list[tuple[list[str], np.ndarray]]:
        from heron.indexing import lucene

        queries = self.heron.encode(texts)
        vocab = self.index.vocab
        vectors = {}
        for i in range(queries.shape[0]):
            lo, hi = queries.indptr[i], queries.indptr[i + 1]
            vectors[str(i)] = {vocab[t]: float(w) for t, w in zip(queries.indices[lo:hi], queries.data[lo:hi])}
        hits = lucene.search_impact(self.lucene_path, vectors, k=k, threads=self.threads, scale=self.index.scale)
        norm = float(self.index.scale) ** 2
        out = []
        for i in range(len(texts)):
            pairs = hits[str(i)]
            out.append(([d for d, _ in pairs], np.asarray([s / norm for _, s in pairs], dtype=np.float32)))
        return out

    def retrieve(self, dataset, queries: dict[str, str], k: int = 1000) -> Run:
        self.heron.check_dataset(dataset)
        qids = list(queries)
        results = self.search([queries[q] for q in qids], k=k)
        return {qid: dict(zip(ids, map(float, scores))) for qid, (ids, scores) in zip(qids, results)}
