"""``heron build-index``: dataset → encoder → shards on disk → inverted index, in one call.

The configuration is a pydantic model, read from YAML (``configs/*.yaml``) or built from CLI flags::

    dataset: scifact
    output: indexes/scifact-splade-tiny
    encoder:
      type: splade                 # splade | bm25
      model: splade-tiny           # alias, Hugging Face id or folder
      query_mode: model            # model | idf (inference-free queries)
      doc_max_length: 256
    quantization: uint8
    approx: {}                     # add Seismic-style approximate structures (default parameters)

Dense (FAISS) and CSR (inverted index over sparse autoencoder codes)::

    encoder: {type: dense, model: minilm}
    faiss: {type: hnsw, m: 32, ef_construction: 200, ef_search: 128}   # flat | hnsw | ivf-flat | ivf-pq | sq8

    encoder: {type: csr, model: checkpoints/scifact-csr-k32}          # a heron train csr checkpoint

Dense and CSR builds read the corpus embeddings from heron's embedding cache
(:mod:`heron.retrieval.encoders.cache`), encoding them only the first time.

Encoded shards stream to ``<output>.shards/`` (resumable: an interrupted build picks up after the last
complete shard) and are removed once the index is published. The index carries its query encoder
(``encoder/``) and a small document store (``docstore/``) for showing titles.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heron.errors import HeronError
from heron.indexing.docstore import write_docstore
from heron.indexing.inverted import build_inverted_index


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["splade", "bm25", "dense", "csr", "multivector"] = "splade"
    model: str | None = Field(None, description="splade / dense: alias, HF id or folder (default splade-tiny / "
                              "minilm); csr: a checkpoint folder from heron train csr")
    query_model: str | None = Field(None, description="separate query model (efficient SPLADE)")
    query_mode: Literal["model", "idf"] = Field("model", description="idf: inference-free queries")
    doc_max_length: int = Field(256, ge=8, le=8192)
    query_max_length: int = Field(64, ge=4, le=8192)
    doc_top_k: int | None = Field(None, ge=1, description="keep only the k largest weights per document")
    query_top_k: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)
    threads: int | None = Field(None, ge=1)
    device: str = "auto"
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    k: int | None = Field(None, ge=1, description="csr: active latents per vector (default: the checkpoint's)")
    max_length: int | None = Field(None, ge=4, le=8192, description="dense: max tokens (default: the model's)")


class FaissConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["flat", "hnsw", "ivf-flat", "ivf-pq", "sq8"] = "flat"
    m: int | None = Field(None, ge=2, description="hnsw: links per node (32)")
    ef_construction: int | None = Field(None, ge=1, description="hnsw (200)")
    ef_search: int | None = Field(None, ge=1, description="hnsw (128)")
    nlist: int | None = Field(None, ge=1, description="ivf: lists (about 4 sqrt(N))")
    nprobe: int | None = Field(None, ge=1, description="ivf: lists searched (16)")
    pq_m: int | None = Field(None, ge=1, description="ivf-pq: sub-quantisers (dim / 8)")
    pq_bits: int | None = Field(None, ge=1, le=16, description="ivf-pq: bits per code (8)")
    train_size: int | None = Field(None, ge=1, description="vectors sampled to train (min(N, 100000))")
    seed: int = 0
    store_vectors: bool = Field(True, description="keep vectors.npy in the bundle (rescoring, truncation, PRF)")

    def params(self) -> dict:
        return {k: v for k, v in self.model_dump(exclude={"type", "store_vectors"}).items() if v is not None}


class MultiVectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crisp: str | None = Field(None, description="post-hoc CRISP clustering: C4x8, C8x32 (query x document "
                              "clusters), C25, C50 (share of tokens)")
    prune: Literal["tail", "spacing"] | None = Field(None, description="pruning baseline instead of clustering")
    doc_k: int | None = Field(None, ge=1, description="vectors kept per document (with prune)")
    doc_fraction: float | None = Field(None, gt=0, le=1, description="share of tokens kept (with prune)")
    muvera: dict | None = Field(None, description="MUVERA FDE parameters ({} = R 20, k_sim 5, d_proj 16) "
                                "and faiss type, for candidate generation")

    def reductions(self) -> tuple[dict | None, dict | None]:
        """The document and query reductions this config asks for."""
        from heron.retrieval.crisp import parse_setting

        if self.crisp and self.prune:
            raise HeronError("multivector: choose crisp or prune, not both")
        if self.crisp:
            s = parse_setting(self.crisp)
            doc = {"method": "kmeans", "k": s["doc_k"], "fraction": s["fraction"], "setting": self.crisp}
            query = {"method": "kmeans", "k": s["query_k"], "fraction": s["fraction"], "setting": self.crisp}
            return doc, query
        if self.prune:
            if (self.doc_k is None) == (self.doc_fraction is None):
                raise HeronError("multivector: prune needs exactly one of doc_k and doc_fraction")
            return {"method": self.prune, "k": self.doc_k, "fraction": self.doc_fraction}, None
        return None, None


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    output: Path
    encoder: EncoderConfig = EncoderConfig()
    quantization: Literal["uint8", "uint16"] | None = Field(
        None, description="impact type; default uint8 for splade, uint16 for bm25")
    scale: float | None = Field(None, gt=0)
    block_size: int = Field(64, ge=1)
    approx: dict | None = Field(None, description="parameters of the approximate structures ({} = defaults)")
    faiss: FaissConfig | None = Field(None, description="dense: the FAISS index (default flat)")
    multivector: MultiVectorConfig | None = Field(None, description="multivector: CRISP / pruning and MUVERA")
    shard_docs: int = Field(1024, ge=1, description="documents per encoded shard (and progress step)")


def read_config_file(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (one index or a bundle); one-line errors otherwise."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise HeronError(f"{path}: config file does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise HeronError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise HeronError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(path: str | Path, raw: dict | None = None, **overrides) -> IndexConfig:
    """An :class:`IndexConfig` from a YAML file (or its already-read mapping ``raw``), with non-None
    ``overrides`` applied on top."""
    path = Path(path)
    raw = dict(read_config_file(path) if raw is None else raw)
    encoder_overrides = overrides.pop("encoder", None) or {}
    for section in ("faiss", "multivector"):
        given = overrides.pop(section, None)
        if given:
            raw[section] = {**(raw.get(section) or {}), **{k: v for k, v in given.items() if v is not None}}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if encoder_overrides:
        raw["encoder"] = {**(raw.get("encoder") or {}), **{k: v for k, v in encoder_overrides.items()
                                                           if v is not None}}
    return make_config(raw, source=str(path))


def make_config(raw: dict, source: str = "build-index") -> IndexConfig:
    try:
        return IndexConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "config"
        raise HeronError(f"{source}: field {field!r}: {first['msg']}") from None


def build_index(config: IndexConfig, progress: bool = True) -> Path:
    """Encode ``config.dataset`` and build the inverted index at ``config.output``; returns its path."""
    from heron.eval import load_dataset

    dataset = load_dataset(config.dataset)
    output = Path(config.output).absolute()
    enc = config.encoder
    source = {"name": dataset.name, "fingerprint": dataset.fingerprint(), "num_docs": None}
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.aux-") as aux:
        aux = Path(aux)
        docstore = aux / "docstore"
        source["num_docs"] = write_docstore(docstore, ((d.id, d.title, d.text) for d in dataset.iter_corpus()))
        if enc.type == "bm25":
            return _build_bm25(config, dataset, source, output, aux, docstore, progress)
        if enc.type == "dense":
            return _build_dense(config, dataset, source, output, aux, docstore, progress)
        if enc.type == "csr":
            return _build_csr(config, dataset, source, output, aux, docstore, progress)
        if enc.type == "multivector":
            return _build_multivector(config, dataset, source, output, aux, docstore, progress)
        return _build_splade(config, dataset, source, output, aux, docstore, progress)


def _build_bm25(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.retrieval.encoders.bm25 import BM25Encoder

    enc = config.encoder
    doc_ids: list[str] = []

    def texts():
        for doc in dataset.iter_corpus():
            doc_ids.append(doc.id)
            yield doc.contents

    encoder = BM25Encoder(enc.k1, enc.b).fit(texts())
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
    shards_dir = output.with_name(output.name + ".shards")
    meta = {"encoder": encoder.describe(), "dataset": source}
    writer = SparseShardWriter.resume(shards_dir, encoder.vocab_size, meta=meta)
    splade.encode_to_shards(encoder, ((d.id, d.contents) for d in dataset.iter_corpus()), writer,
                            chunk_size=config.shard_docs, progress=progress)
    if enc.query_mode == "idf":
        encoder.fit_idf_queries(_document_frequencies(shards_dir, encoder.vocab_size), writer.num_docs)
    encoder.save(aux / "encoder")
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

    enc = config.encoder
    if config.approx is not None or config.quantization is not None:
        raise HeronError("approx and quantization apply to inverted indexes, not to dense (FAISS) ones")
    encoder = DenseEncoder(enc.model or "minilm", max_length=enc.max_length, batch_size=enc.batch_size,
                           threads=enc.threads, device=enc.device)
    shards = ensure_corpus_embeddings(encoder, dataset, chunk_size=config.shard_docs, progress=progress)
    encoder.save(aux / "encoder")
    faiss_cfg = config.faiss or FaissConfig()
    info = {**encoder.describe(), "name": Path(enc.model or "minilm").name, "dataset": source}
    return build_faiss_index(shards, output, dim=encoder.dim, index_type=faiss_cfg.type, params=faiss_cfg.params(),
                             encoder=info, encoder_dir=aux / "encoder", docstore_dir=docstore,
                             store_vectors=faiss_cfg.store_vectors, progress=progress)


def _build_csr(config, dataset, source, output, aux, docstore, progress) -> Path:
    from heron.indexing.shards import iter_dense_shards
    from heron.retrieval.encoders.cache import ensure_corpus_embeddings
    from heron.retrieval.encoders.csr import CSREncoder

    enc = config.encoder
    if not enc.model:
        raise HeronError("a csr index needs encoder.model: a checkpoint folder from heron train csr")
    if config.faiss is not None:
        raise HeronError("faiss applies to dense indexes; csr codes go to heron's inverted index")
    encoder = CSREncoder(enc.model, k=enc.k, batch_size=enc.batch_size, threads=enc.threads, device=enc.device)
    shards = ensure_corpus_embeddings(encoder.base, dataset, chunk_size=config.shard_docs, progress=progress)
    encoder.save(aux / "encoder")
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

    enc = config.encoder
    if not enc.model:
        raise HeronError("a multivector index needs encoder.model: a ColBERT / PyLate folder (heron train colbert)")
    mv = config.multivector or MultiVectorConfig()
    doc_reduction, query_reduction = mv.reductions()
    muvera = mv.muvera
    if config.faiss is not None:
        if muvera is None:
            raise HeronError("faiss applies to a multivector index's MUVERA FDEs: add multivector.muvera (--muvera)")
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


def _document_frequencies(shards_dir: Path, vocab_size: int) -> np.ndarray:
    from heron.indexing.shards import iter_shards

    df = np.zeros(vocab_size, dtype=np.int64)
    for _, matrix in iter_shards(shards_dir):
        df += np.bincount(matrix.indices, minlength=vocab_size)
    return df


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
