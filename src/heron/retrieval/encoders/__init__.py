"""Encoders: text → sparse or dense vectors.

- :mod:`~heron.retrieval.encoders.analyzer`: Lucene-like English analysis (tokens, stop words, Porter).
- :mod:`~heron.retrieval.encoders.bm25`: BM25 document weights and query term counts.
- :mod:`~heron.retrieval.encoders.splade`: SPLADE (masked-LM max pooling), and its inference-free
  IDF query mode.
- :mod:`~heron.retrieval.encoders.dense`: Hugging Face / sentence-transformers bi-encoders.
- :mod:`~heron.retrieval.encoders.csr`: CSR sparse codes (TopK autoencoder over a dense encoder).
- :mod:`~heron.retrieval.encoders.multivector`: ColBERT-style token vectors (PyLate layout).
- :mod:`~heron.retrieval.encoders.cache`: corpus embeddings computed once per model and dataset.
- :mod:`~heron.retrieval.encoders.hf`: the Hugging Face plumbing they share (model folders, loading,
  device and precision, checkpoint copies, ``heron_encoder.json``).
- :mod:`~heron.retrieval.encoders.pooling`: SPLADE pooling, the one definition encoder and trainer use.
- :mod:`~heron.retrieval.encoders.bert_numpy`: SPLADE queries of BERT masked-LMs without torch (cold
  query processes; see :func:`heron.settings.query_encoder_runtime`).

An index stores its query encoder in ``encoder/``; :func:`load_query_encoder` brings it back.
"""

from __future__ import annotations

from pathlib import Path

from heron.errors import HeronError


def load_query_encoder(info: dict, directory: str | Path):
    """The query encoder an index was built with: an object with ``encode_queries(texts) -> csr``."""
    kind = info.get("type")
    if kind == "bm25":
        from heron.retrieval.encoders.bm25 import BM25Encoder

        return BM25Encoder.load(directory)
    if kind == "splade":
        from heron import settings

        if settings.query_encoder_runtime() == "numpy":
            from heron.retrieval.encoders.bert_numpy import NumpySpladeQueries

            numpy_encoder = NumpySpladeQueries.load(directory)
            if numpy_encoder is not None:
                return numpy_encoder
        from heron.retrieval.encoders.splade import SpladeEncoder

        return SpladeEncoder.load(directory)
    if kind == "csr":
        from heron.retrieval.encoders.csr import CSREncoder

        return CSREncoder.load(directory)
    raise HeronError(f"{directory}: unknown encoder type {kind!r} in the index manifest")
