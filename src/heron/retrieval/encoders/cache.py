"""Corpus embeddings computed once per (dense model, settings, dataset) and kept in heron's cache.

Dense encoding is the slow step on a CPU (MiniLM: about 15–30 documents a second on two cores), and
the same corpus embeddings feed a dense FAISS index, CSR training and every CSR index built over that
model. :func:`corpus_embeddings` writes them once, as resumable dense shards
(:class:`~heron.indexing.shards.DenseShardWriter`), under
``$HERON_CACHE/embeddings/<dataset>-<key>/``; the key hashes the encoder's description (model, pooling,
normalisation, max length, prompts) and the dataset's fingerprint, so a changed corpus or setting is
encoded anew. An interrupted encoding resumes after its last complete shard; one process encodes a folder
at a time (:func:`heron.storage.build_once`).

Example::

    >>> from heron.retrieval.encoders.dense import DenseEncoder                  # doctest: +SKIP
    >>> ids, vectors = corpus_embeddings(DenseEncoder("minilm"), load_dataset("scifact"))  # doctest: +SKIP
    >>> vectors.shape                                                             # doctest: +SKIP
    (5183, 384)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from heron.settings import cache_dir
from heron.storage import build_once


def embeddings_dir(encoder, dataset) -> Path:
    info = dict(encoder.describe())
    info.pop("fp16", None)  # the same vectors up to rounding; fp16 ones are not cached apart
    key = hashlib.sha256(json.dumps({"encoder": info, "dataset": dataset.fingerprint()}, sort_keys=True)
                         .encode()).hexdigest()[:16]
    return cache_dir() / "embeddings" / f"{dataset.name}-{key}"


def ensure_corpus_embeddings(encoder, dataset, *, chunk_size: int = 1024, progress: bool = True,
                             shards_dir: Path | None = None) -> Path:
    """The dense-shard folder holding ``dataset``'s corpus embeddings (encoding what is missing)."""
    from tqdm.auto import tqdm

    from heron.indexing.shards import DenseShardWriter

    folder = shards_dir or embeddings_dir(encoder, dataset)
    meta = {"encoder": {k: v for k, v in encoder.describe().items() if k != "fp16"},
            "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()}}

    def encode() -> None:
        writer = DenseShardWriter.resume(folder, encoder.dim, meta=meta)
        skip = writer.num_docs
        bar = tqdm(total=dataset.corpus_size(), initial=skip, unit="doc", desc=f"dense encoding {dataset.name}",
                   disable=not progress, dynamic_ncols=True, mininterval=1.0)
        ids: list[str] = []
        texts: list[str] = []

        def flush() -> None:
            writer.add(ids, encoder.encode_documents(texts, on_batch=bar.update))  # the bar moves per batch
            ids.clear()
            texts.clear()

        for position, doc in enumerate(dataset.iter_corpus()):
            if position < skip:
                continue
            ids.append(doc.id)
            texts.append(doc.contents)
            if len(ids) >= chunk_size:
                flush()
        if ids:
            flush()
        writer.close()
        bar.close()

    build_once(folder, encode, "embedding cache", done=lambda: _complete(folder))
    return folder


def _complete(folder: Path) -> bool:
    from heron.indexing.shards import DenseShardWriter, read_manifest

    return (folder / "shards.json").is_file() and bool(read_manifest(folder, DenseShardWriter.FORMAT).get("complete"))


def corpus_embeddings(encoder, dataset, *, chunk_size: int = 1024, progress: bool = True,
                      shards_dir: Path | None = None) -> tuple[list[str], np.ndarray]:
    """``(doc ids, float32 N × dim)`` for ``dataset``'s corpus, encoded once and then read from the cache."""
    from heron.indexing.shards import iter_dense_shards

    folder = ensure_corpus_embeddings(encoder, dataset, chunk_size=chunk_size, progress=progress,
                                      shards_dir=shards_dir)
    all_ids: list[str] = []
    blocks = []
    for ids, vectors in iter_dense_shards(folder):
        all_ids.extend(ids)
        blocks.append(vectors)
    return all_ids, np.concatenate(blocks) if blocks else np.zeros((0, encoder.dim), np.float32)


def token_vectors_dir(encoder, dataset) -> Path:
    key = hashlib.sha256(json.dumps({"encoder": encoder.describe(), "dataset": dataset.fingerprint(),
                                     "weights": _weights_digest(encoder)}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "tokens" / f"{dataset.name}-{key}"


def _weights_digest(encoder) -> str:
    """A digest of a multi-vector model's projection (checkpoints of one name can differ)."""
    weight = encoder.model.projection.weight.detach().cpu().numpy()
    return hashlib.sha256(weight.tobytes()).hexdigest()[:16]


def ensure_token_vectors(encoder, dataset, *, chunk_size: int = 256, progress: bool = True) -> Path:
    """A multi-vector bundle of ``dataset``'s corpus token vectors (no reduction), built once into the cache."""
    from heron.indexing.multivector_store import build_multivector_index

    folder = token_vectors_dir(encoder, dataset)
    if (folder / "manifest.json").is_file():
        return folder

    def chunks():
        ids, texts = [], []
        for doc in dataset.iter_corpus():
            ids.append(doc.id)
            texts.append(doc.contents)
            if len(ids) >= chunk_size:
                yield ids, encoder.encode_documents(texts)
                ids, texts = [], []
        if ids:
            yield ids, encoder.encode_documents(texts)

    return build_multivector_index(chunks(), folder, dim=encoder.dim, encoder=encoder.describe(), progress=progress)
