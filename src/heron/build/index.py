"""``heron build-index``: dataset → encoder → encoded shards → index (inverted, FAISS or multi-vector).

:func:`build_index` takes an :class:`~heron.build.config.IndexConfig` and dispatches on the encoder type:
``splade``, ``bm25`` and ``csr`` vectors go to heron's inverted index, ``dense`` embeddings to FAISS,
``multivector`` token vectors to the multi-vector store (optionally with MUVERA FDEs in FAISS).

Dense and CSR builds read the corpus embeddings from heron's embedding cache
(:mod:`heron.retrieval.encoders.cache`), encoding them only the first time.

Encoded shards stream to ``<output>.shards/`` (resumable: an interrupted build picks up after the last
complete shard) and are removed once the index is published. The index carries its query encoder
(``encoder/``) and a small document store (``docstore/``) for showing titles, both written first into a
scratch directory ``.<output>.staged-aux-<pid>`` (removed at the end, or by the next build of the same
output if this one is killed). One build of an output runs at a time (:func:`heron.storage.build_lock`).
Kill point (``HERON_TEST_KILL_AT``): ``build.docstore`` (the docstore written, nothing encoded yet).
"""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import numpy as np

from heron.build.config import FaissConfig, IndexConfig, MultiVectorConfig
from heron.errors import HeronError
from heron.indexing.docstore import write_docstore
from heron.indexing.inverted import build_inverted_index
from heron.storage import build_lock, kill_point, scratch


def _say(progress: bool, message: str) -> None:
    """One progress line on stderr (a step with no bar of its own), unless ``progress`` is off."""
    if progress:
        print(f"heron: {message}", file=sys.stderr, flush=True)


def _docstore_rows(dataset, total: int | None, progress: bool):
    """``(id, title, text)`` rows of the corpus, with a progress bar (the docstore is written first)."""
    yield from _bar(((d.id, d.title, d.text) for d in dataset.iter_corpus()), total, f"docstore {dataset.name}",
                    progress)


def _verified(build):
    """A builder whose result is checked in full (every byte of every file, :func:`verify_index`) once built."""

    @functools.wraps(build)
    def run(*args, **kwargs) -> Path:
        from heron.indexing.registry import verify_index
        from heron.indexing.segments import is_segmented, segmented_problems

        path = build(*args, **kwargs)
        if is_segmented(path):  # a Ray build's segments, committed
            problems = segmented_problems(path)
            if problems:
                raise problems[0]
        else:
            verify_index(path)
        return path

    return run


@_verified
def build_index(config: IndexConfig, progress: bool = True) -> Path:
    """Encode ``config.dataset`` and build the index ``config`` describes at ``config.output``; returns its path."""
    from heron.eval import load_dataset

    dataset = load_dataset(config.dataset)
    output = Path(config.output).absolute()
    enc = config.encoder
    _check_config(config)  # a bad combination fails before any output or progress line
    source = {"name": dataset.name, "fingerprint": dataset.fingerprint(), "num_docs": None}
    if config.ray is not None:  # encoded on a Ray cluster into a segmented index (heron.build.ray_executor)
        from heron.build.ray_executor import build_with_ray, check_ray_config

        check_ray_config(config)
        output.parent.mkdir(parents=True, exist_ok=True)
        with build_lock(output):
            _say(progress, f"building a {enc.type} index of {dataset.name} into {output} on Ray")
            return build_with_ray(config, dataset, source, output, progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    # one build of this output at a time; aux is removed at the end, or by the next build if this one is killed
    with build_lock(output), scratch(output, "aux") as aux:
        docstore = aux / "docstore"
        _say(progress, f"building a {enc.type} index of {dataset.name} into {output}")
        total = dataset.corpus_size() if progress else None
        source["num_docs"] = write_docstore(docstore, _docstore_rows(dataset, total, progress))
        kill_point("build.docstore")
        _drop_other_resume_state(output, enc.type)
        if enc.type == "bm25":
            return _build_bm25(config, dataset, source, output, aux, docstore, progress)
        if enc.type == "dense":
            return _build_dense(config, dataset, source, output, aux, docstore, progress)
        if enc.type == "csr":
            return _build_csr(config, dataset, source, output, aux, docstore, progress)
        if enc.type == "multivector":
            return _build_multivector(config, dataset, source, output, aux, docstore, progress)
        return _build_splade(config, dataset, source, output, aux, docstore, progress)


def _shards_dir(output: Path) -> Path:
    """Where a SPLADE build keeps its encoded shards until the index is published (resumable)."""
    return output.with_name(output.name + ".shards")


def _drop_other_resume_state(output: Path, kind: str) -> None:
    """Resumable state that a killed build of another kind left at this output, which this build will not
    resume: encoded SPLADE shards, an inverted index's build directory."""
    from heron.indexing.inverted.builder import build_dir

    if kind != "splade":
        shutil.rmtree(_shards_dir(output), ignore_errors=True)
    if kind not in ("splade", "bm25", "csr"):
        shutil.rmtree(build_dir(output), ignore_errors=True)


def _check_config(config: IndexConfig) -> None:
    """The checks of the per-type builders below that need nothing but the config, made up front."""
    enc = config.encoder
    output = Path(config.output).absolute()
    for part in (output, *output.parents):  # a file where the index folder must go fails now, not after the build
        if part.exists():
            if not part.is_dir():
                raise HeronError(f"{config.output}: {part} exists and is not a directory")
            break
    folders = [m for m in (enc.model, enc.query_model) if m and Path(m).is_dir()]
    if folders:
        from heron.retrieval.encoders.hf import refuse_pickle_weights

        for folder in folders:
            refuse_pickle_weights(folder)
    if enc.type == "dense" and (config.approx is not None or config.quantization is not None):
        raise HeronError("approx and quantization apply to inverted indexes, not to dense (FAISS) ones")
    if enc.type == "csr":
        if not enc.model:
            raise HeronError("a csr index needs encoder.model: a checkpoint folder from heron train csr")
        if config.faiss is not None:
            raise HeronError("faiss applies to dense indexes; csr codes go to heron's inverted index")
    if enc.type == "multivector":
        if not enc.model:
            raise HeronError("a multivector index needs encoder.model: a ColBERT / PyLate folder (heron train "
                             "colbert)")
        if config.faiss is not None and (config.multivector or MultiVectorConfig()).muvera is None:
            raise HeronError("faiss applies to a multivector index's MUVERA FDEs: add multivector.muvera (--muvera)")


def _build_bm25(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.retrieval.encoders.bm25 import BM25Encoder

    enc = config.encoder
    doc_ids: list[str] = []

    def texts():
        for doc in dataset.iter_corpus():
            doc_ids.append(doc.id)
            yield doc.contents

    _say(progress, f"BM25: analysing {source['num_docs']:,} documents")
    encoder = BM25Encoder(enc.k1, enc.b).fit(_bar(texts(), source["num_docs"], "BM25 analysis", progress))
    encoder.save(aux / "encoder")
    vocab = sorted(encoder.vocab, key=encoder.vocab.__getitem__)
    matrix = encoder.document_vectors()
    step = config.shard_docs
    chunks = ((doc_ids[i:i + step], matrix[i:i + step]) for i in range(0, len(doc_ids), step))
    info = {"type": "bm25", "name": "bm25", "k1": enc.k1, "b": enc.b, "lucene_norms": True,
            "analyzer": encoder.analyzer.describe(), "dataset": source}
    return build_inverted_index(chunks, output, vocab=vocab, encoder=info,
                                quantization=config.quantization or "uint16", scale=config.scale,
                                block_size=config.block_size, approx=config.approx, encoder_dir=aux / "encoder",
                                docstore_dir=docstore, progress=progress)


def _build_splade(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.indexing.shards import SparseShardWriter
    from heron.retrieval.encoders import splade

    enc = config.encoder
    encoder = splade.SpladeEncoder(
        enc.model or "splade-tiny", query_model=enc.query_model, doc_max_length=enc.doc_max_length,
        query_max_length=enc.query_max_length, doc_top_k=enc.doc_top_k, query_top_k=enc.query_top_k,
        batch_size=enc.batch_size, threads=enc.threads, device=enc.device)
    shards_dir = _shards_dir(output)
    meta = {"encoder": encoder.describe(), "dataset": source}
    writer = SparseShardWriter.resume(shards_dir, encoder.vocab_size, meta=meta)
    splade.encode_to_shards(encoder, ((d.id, d.contents) for d in dataset.iter_corpus()), writer,
                            chunk_size=config.shard_docs, progress=progress, total=source["num_docs"])
    if enc.query_mode == "idf":
        _say(progress, "fitting the IDF query weights")
        encoder.fit_idf_queries(_document_frequencies(shards_dir, encoder.vocab_size), writer.num_docs)
    _say(progress, "saving the query encoder into the index")
    encoder.save(aux / "encoder")
    _say(progress, f"building the inverted index ({writer.num_docs:,} documents)")
    name = Path(enc.model or "splade-tiny").name + ("-idf" if enc.query_mode == "idf" else "")
    info = {**encoder.describe(), "name": name, "dataset": source}
    path = build_inverted_index(shards_dir, output, vocab=list(encoder.vocabulary), encoder=info,
                                quantization=config.quantization or "uint8", scale=config.scale,
                                block_size=config.block_size, approx=config.approx, encoder_dir=aux / "encoder",
                                docstore_dir=docstore, progress=progress)
    shutil.rmtree(shards_dir, ignore_errors=True)
    return path


def _build_dense(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.indexing.faiss_index import build_faiss_index
    from heron.retrieval.encoders.cache import ensure_corpus_embeddings
    from heron.retrieval.encoders.dense import DenseEncoder

    enc = config.encoder  # the combinations are checked up front (_check_config)
    encoder = DenseEncoder(enc.model or "minilm", max_length=enc.max_length, batch_size=enc.batch_size,
                           threads=enc.threads, device=enc.device)
    shards = ensure_corpus_embeddings(encoder, dataset, chunk_size=config.shard_docs, progress=progress)
    _say(progress, "saving the query encoder into the index")
    encoder.save(aux / "encoder")
    faiss_cfg = config.faiss or FaissConfig()
    trained = " (training it first)" if faiss_cfg.type != "flat" else ""
    _say(progress, f"building a FAISS {faiss_cfg.type} index of {source['num_docs']:,} vectors{trained}")
    info = {**encoder.describe(), "name": Path(enc.model or "minilm").name, "dataset": source}
    return build_faiss_index(shards, output, dim=encoder.dim, index_type=faiss_cfg.type, params=faiss_cfg.params(),
                             encoder=info, encoder_dir=aux / "encoder", docstore_dir=docstore,
                             store_vectors=faiss_cfg.store_vectors, progress=progress)


def _build_csr(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.indexing.shards import iter_dense_shards
    from heron.retrieval.encoders.cache import ensure_corpus_embeddings
    from heron.retrieval.encoders.csr import CSREncoder

    enc = config.encoder  # the combinations are checked up front (_check_config)
    encoder = CSREncoder(enc.model, k=enc.k, batch_size=enc.batch_size, threads=enc.threads, device=enc.device)
    shards = ensure_corpus_embeddings(encoder.base, dataset, chunk_size=config.shard_docs, progress=progress)
    _say(progress, "saving the query encoder into the index")
    encoder.save(aux / "encoder")
    _say(progress, f"CSR codes and the inverted index ({source['num_docs']:,} documents)")
    chunks = ((ids, encoder.codes(vectors)) for ids, vectors in iter_dense_shards(shards))
    info = {**encoder.describe(), "name": f"csr-k{encoder.k}-{Path(enc.model).name}", "dataset": source}
    return build_inverted_index(chunks, output, vocab=encoder.vocabulary, encoder=info,
                                quantization=config.quantization or "uint8", scale=config.scale,
                                block_size=config.block_size, approx=config.approx, encoder_dir=aux / "encoder",
                                docstore_dir=docstore, progress=progress)


def _build_multivector(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.indexing.multivector_store import MultiVectorIndex, build_multivector_index
    from heron.retrieval.encoders.cache import ensure_token_vectors
    from heron.retrieval.encoders.multivector import MultiVectorEncoder

    enc = config.encoder  # the combinations are checked up front (_check_config)
    mv = config.multivector or MultiVectorConfig()
    doc_reduction, query_reduction = mv.reductions()
    muvera = mv.muvera
    if config.faiss is not None:
        muvera = {**muvera, "faiss": config.faiss.type, "faiss_params": config.faiss.params()}
    encoder = MultiVectorEncoder(enc.model, batch_size=enc.batch_size, threads=enc.threads, device=enc.device,
                                 document_length=enc.max_length)
    if encoder.initialised:
        raise HeronError(f"{enc.model}: not a ColBERT model (no Dense projection); train one with heron train colbert")
    raw = MultiVectorIndex.open(ensure_token_vectors(encoder, dataset, progress=progress))
    encoder.save(aux / "encoder")
    step = 512

    def chunks():
        for start in range(0, raw.num_docs, step):
            stop = min(start + step, raw.num_docs)
            yield raw.doc_ids[start:stop], [raw.document(i) for i in range(start, stop)]

    label = Path(enc.model).name + (f"-crisp{mv.crisp}" if mv.crisp else "") + \
        (f"-{mv.prune}{mv.doc_k or mv.doc_fraction}" if mv.prune else "") + ("-muvera" if mv.muvera is not None else "")
    info = {**encoder.describe(), "name": label, "dataset": source}
    return build_multivector_index(chunks(), output, dim=encoder.dim, encoder=info, encoder_dir=aux / "encoder",
                                   docstore_dir=docstore, reduction=doc_reduction, query_reduction=query_reduction,
                                   muvera=muvera, progress=progress)


def _bar(items, total: int | None, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(items, total=total, unit="doc", desc=desc, disable=not progress, dynamic_ncols=True,
                mininterval=1.0)


def _document_frequencies(shards_dir: Path, vocab_size: int) -> np.ndarray:
    from heron.indexing.shards import iter_shards

    df = np.zeros(vocab_size, dtype=np.int64)
    for _, matrix in iter_shards(shards_dir):
        df += np.bincount(matrix.indices, minlength=vocab_size)
    return df


@_verified
def reindex(source: str | Path, output: str | Path, *, approx: dict | None = None, block_size: int | None = None,
            progress: bool = True, chunk_docs: int = 65536) -> Path:
    """Rebuild an index from another one's stored vectors (no re-encoding), e.g. to add ``approx``.

    The impacts are carried over exactly: the new index reuses the source's quantisation scale and type.
    """
    from heron.indexing.inverted import InvertedIndex

    index = InvertedIndex.open(source, verify=True)
    scale, dtype = index.scale, index.manifest["quantization"]["dtype"]
    doc_ids = index.doc_ids
    forward = index.forward_matrix(dequantize=False)

    def chunks():
        for start in range(0, index.num_docs, chunk_docs):
            block = forward[start:start + chunk_docs].astype(np.float64)
            block.data = (block.data + 0.25) / scale  # re-quantises to the same integers
            yield doc_ids[start:start + chunk_docs], block

    return build_inverted_index(
        chunks(), output, vocab=index.vocab, encoder=index.encoder, quantization=dtype, scale=scale,
        block_size=block_size or index.block_size, approx=approx, encoder_dir=index.encoder_dir,
        docstore_dir=index.docstore_dir, progress=progress)
