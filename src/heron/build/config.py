"""Build configs: pydantic models of what ``heron build-index`` builds, read from YAML or CLI flags.

One index (:class:`IndexConfig`)::

    dataset: scifact
    output: indexes/scifact-splade-tiny
    encoder:
      type: splade                 # splade | bm25 | dense | csr | multivector
      model: splade-tiny           # alias, Hugging Face id or folder
      query_mode: model            # model | idf (inference-free queries)
      doc_max_length: 256
    quantization: uint8
    approx: {}                     # add Seismic-style approximate structures (default parameters)

Dense (FAISS), CSR (inverted index over sparse autoencoder codes) and multi-vector::

    encoder: {type: dense, model: minilm}
    faiss: {type: hnsw, m: 32, ef_construction: 200, ef_search: 128}   # flat | hnsw | ivf-flat | ivf-pq | sq8

    encoder: {type: csr, model: checkpoints/scifact-csr-k32}          # a heron train csr checkpoint

    encoder: {type: multivector, model: checkpoints/scifact-colbert}
    multivector: {crisp: C4x8, muvera: {}}

Encoded on a Ray cluster (``heron build-index --ray``; :mod:`heron.build.ray_executor`)::

    ray: {}                        # a local cluster (ray.init()); or {address: 10.0.0.5:6379, workers: 16}

A bundle of several indexes of one corpus is :class:`heron.build.bundle.BundleConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from heron.errors import HeronError, config_error
from heron.retrieval.options import BM25B, BM25K1
from heron.storage import read_yaml_mapping


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    k1: BM25K1 = Field(0.9, description="bm25: term-frequency saturation")
    b: BM25B = Field(0.4, description="bm25: length normalisation")
    k: int | None = Field(None, ge=1, description="csr: active latents per vector (default: the checkpoint's)")
    max_length: int | None = Field(None, ge=4, le=8192, description="dense: max tokens (default: the model's)")


class FaissConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    crisp: str | None = Field(None, description="post-hoc CRISP clustering: C4x8, C8x32 (query x document "
                              "clusters), C25, C50 (share of tokens)")
    prune: Literal["tail", "spacing"] | None = Field(None, description="pruning baseline instead of clustering")
    doc_k: int | None = Field(None, ge=1, description="vectors kept per document (with prune)")
    doc_fraction: float | None = Field(None, gt=0, le=1, description="share of tokens kept (with prune)")
    muvera: dict | None = Field(None, description="MUVERA FDE parameters ({} = R 20, k_sim 5, d_proj 16) "
                                "and faiss type, for candidate generation")

    def reductions(self) -> tuple[dict | None, dict | None]:
        """The document and query reductions this config asks for."""
        from heron.multivector.crisp import parse_setting

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


class RayConfig(BaseModel):
    """Where and how a Ray build runs (:mod:`heron.build.ray_executor`); ``--ray`` / ``--ray-address`` /
    ``--ray-workers`` set it from the command line."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    address: str | None = Field(None, description="HOST:PORT of a running cluster's head node ('auto': the one "
                                "this machine belongs to); None starts a local cluster with ray.init()")
    workers: int | None = Field(None, ge=1, description="encoder actors (default: one per GPU when the cluster "
                                "has GPUs, else cluster CPUs / cpus_per_worker)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs (and torch threads) per CPU actor")
    gpus: bool | None = Field(None, description="GPU actors (fp16); None: when the cluster reports GPUs")
    segments: int | None = Field(None, ge=1, le=64, description="segments of the index (default min(workers, 8))")
    merge: bool = Field(False, description="merge the segments into one at the end")
    local_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (default: the machine's)")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for the head node to answer")


#: the encoder fields each encoder type reads; any other keeps its default (a changed one is refused)
ENCODER_FIELDS: dict[str, frozenset[str]] = {
    "splade": frozenset({"model", "query_model", "query_mode", "doc_max_length", "query_max_length", "doc_top_k",
                         "query_top_k", "batch_size", "threads", "device"}),
    "bm25": frozenset({"k1", "b"}),
    "dense": frozenset({"model", "max_length", "batch_size", "threads", "device"}),
    "csr": frozenset({"model", "k", "batch_size", "threads", "device"}),
    "multivector": frozenset({"model", "max_length", "batch_size", "threads", "device"}),
}
#: the sections of an index config each encoder type reads (inverted index, FAISS, multi-vector store)
_SECTIONS: dict[str, frozenset[str]] = {
    "quantization": frozenset({"splade", "bm25", "csr"}), "scale": frozenset({"splade", "bm25", "csr"}),
    "block_size": frozenset({"splade", "bm25", "csr"}), "approx": frozenset({"splade", "bm25", "csr"}),
    "faiss": frozenset({"dense", "multivector"}), "multivector": frozenset({"multivector"}),
}


def check_applies(config: BaseModel) -> None:
    """Refuse a setting the config's encoder type does not read (``encoder.k1`` on a splade index, ``faiss`` on
    bm25, …): it would be ignored without a word. A field left at its default passes (it changes nothing)."""
    encoder, kind = config.encoder, config.encoder.type
    for name, field in type(encoder).model_fields.items():
        if name != "type" and name not in ENCODER_FIELDS[kind] and getattr(encoder, name) != field.default:
            users = [t for t, fields in ENCODER_FIELDS.items() if name in fields]
            raise PydanticCustomError("not_applicable", "encoder.{name} does not apply to a {kind} encoder (only "
                                      "to {users})", {"name": name, "kind": kind, "users": ", ".join(users)})
    for name, kinds in _SECTIONS.items():
        if kind not in kinds and getattr(config, name) != type(config).model_fields[name].default:
            raise PydanticCustomError("not_applicable", "{name} does not apply to a {kind} index (only to {users})",
                                      {"name": name, "kind": kind, "users": ", ".join(sorted(kinds))})


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: str
    output: Path
    encoder: EncoderConfig = EncoderConfig()
    quantization: Literal["uint8", "uint16"] | None = Field(
        None, description="impact type; default uint8 for splade, uint16 for bm25")
    scale: float | None = Field(None, gt=0)
    block_size: int = Field(128, ge=1)  # postings per compressed + block-max block
    approx: dict | None = Field(None, description="parameters of the approximate structures ({} = defaults)")
    faiss: FaissConfig | None = Field(None, description="dense: the FAISS index (default flat)")
    multivector: MultiVectorConfig | None = Field(None, description="multivector: CRISP / pruning and MUVERA")
    shard_docs: int = Field(1024, ge=1, description="documents per encoded shard (and progress step; a Ray "
                            "build's unit of work)")
    ray: RayConfig | None = Field(None, description="encode on a Ray cluster ({} = a local one)")

    @model_validator(mode="after")
    def _settings_apply(self) -> IndexConfig:
        check_applies(self)
        return self


#: the top-level mapping of a YAML config file (one index or a bundle)
read_config_file = read_yaml_mapping


def load_config(path: str | Path, raw: dict | None = None, **overrides) -> IndexConfig:
    """An :class:`IndexConfig` from a YAML file (or its already-read mapping ``raw``), with non-None
    ``overrides`` applied on top."""
    path = Path(path)
    raw = dict(read_config_file(path) if raw is None else raw)
    encoder_overrides = overrides.pop("encoder", None) or {}
    for section in ("faiss", "multivector", "ray"):
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
        raise config_error(exc, source) from None
