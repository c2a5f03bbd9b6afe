"""Bundle pipelines: one YAML file describes every index of a corpus; ``heron build-index --config FILE``
builds them all into one directory that :class:`heron.Index` and ``heron serve`` open.

A bundle config names its members under ``indexes:``; each member is a single-index config
(:class:`~heron.build.config.IndexConfig` without ``dataset``/``output``) plus, for encoders that
need a trained checkpoint (``multivector``, ``csr``), an optional ``train:`` stage, and ``search:``
options the member is opened with::

    dataset: scifact
    output: indexes/scifact-bundle
    default: splade                       # the retriever a search uses when it names none
    fusion: {method: rrf}                 # for fused retrievers (splade+dense)
    indexes:
      splade: {encoder: {type: splade, model: splade-tiny}}               # → heron's inverted index
      bm25:   {encoder: {type: bm25}}
      dense:  {encoder: {type: dense, model: minilm}, faiss: {type: hnsw}} # → FAISS
      colbert:                                                            # → token store + MUVERA in FAISS
        encoder: {type: multivector, model: checkpoints/scifact-colbert}
        train: {steps: 200}               # trains the model first when the folder holds none
        multivector: {muvera: {}}
        search: {candidates: 200}

Stages run in order — train (when asked and needed), then each member's encode → index build, each
with its own progress bars — into ``.<output>.partial/`` next to the output. A member that finished
is recorded with its resolved config; a rerun after an interruption skips finished members whose
config is unchanged and rebuilds the rest. Only when every member is built is ``manifest.json``
written (the resolved config, every model's revision, each member's index summary) and the directory
moved to ``output`` in one rename, replacing an older bundle only then. One build of a bundle runs at a
time (:func:`heron.storage.build_lock`), so ``.<output>.partial/`` is never written by two.
Kill points (``HERON_TEST_KILL_AT``): ``bundle.member.built`` (a member's index built, its record not yet
written) and ``bundle.member`` (recorded).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from heron.build.config import (
    EncoderConfig,
    FaissConfig,
    IndexConfig,
    MultiVectorConfig,
    check_applies,
    read_config_file,
)
from heron.errors import HeronError, config_error
from heron.indexing.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_FILE, MEMBER_NAME, is_bundle
from heron.retrieval.options import SEARCH_KEYS, SearchOptions
from heron.storage import (
    build_lock,
    kill_point,
    publish,
    read_json,
    recover,
    sha256_file,
    write_json_atomic,
    write_manifest,
)

STAGE_FILE = "stage.json"


class TrainStage(BaseModel):
    """Training run before a member's build: the fields of ``heron train colbert`` / ``heron train csr``
    (``steps``, ``batch_size``, ``crisp``, ``k``, ``seed``, ``threads``, …), on the bundle's dataset."""

    model_config = ConfigDict(extra="allow")


class MemberConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    encoder: EncoderConfig = EncoderConfig()
    quantization: Literal["uint8", "uint16"] | None = None
    scale: float | None = Field(None, gt=0)
    block_size: int = Field(128, ge=1)
    approx: dict | None = None
    faiss: FaissConfig | None = None
    multivector: MultiVectorConfig | None = None
    shard_docs: int = Field(1024, ge=1)
    train: TrainStage | None = Field(None, description="multivector / csr: train encoder.model first if missing")
    search: dict = Field(default_factory=dict, description="options the member is searched with (mode, "
                         "preset, ef_search, nprobe, candidates, …)")

    @model_validator(mode="after")
    def _settings_apply(self) -> MemberConfig:
        check_applies(self)
        return self

    @field_validator("search")
    @classmethod
    def _known_search_options(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(SEARCH_KEYS))
        if unknown:
            raise ValueError(f"unknown search option(s) {', '.join(unknown)} (known: {', '.join(SEARCH_KEYS)})")
        try:  # values checked now, not when the bundle is first searched
            SearchOptions.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        return value


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["rrf", "linear"] = "rrf"


class BundleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: str
    output: Path
    indexes: dict[str, MemberConfig] = Field(min_length=1)
    default: str | None = Field(None, description="default retriever: a member name or members joined by '+'")
    fusion: FusionConfig = FusionConfig()

    @field_validator("indexes")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for name in value:
            if not MEMBER_NAME.match(name):
                raise ValueError(f"member name {name!r}: use letters, digits, '_', '-' or '.' (no '+', not "
                                 f"ending in .json)")
        return value

    def member_index_config(self, name: str, output: Path) -> IndexConfig:
        member = self.indexes[name]
        fields = member.model_dump(exclude={"train", "search"}, exclude_none=True)
        fields["encoder"] = member.encoder.model_dump()
        if member.train is not None and not member.encoder.model:
            fields["encoder"]["model"] = str(default_model_dir(self.output, name))
        return IndexConfig.model_validate({**fields, "dataset": self.dataset, "output": output})


def is_bundle_config(raw: dict) -> bool:
    return isinstance(raw, dict) and "indexes" in raw


def load_bundle_config(path: str | Path, raw: dict | None = None, **overrides) -> BundleConfig:
    """A :class:`BundleConfig` from YAML (or its already-read mapping ``raw``); ``overrides`` (``dataset``,
    ``output``) replace its fields."""
    path = Path(path)
    if raw is None:
        raw = read_config_file(path)
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        config = BundleConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, path) from None
    if config.default is not None:
        parts = [part.strip() for part in config.default.split("+")]
        for part in parts:
            if part not in config.indexes:
                raise HeronError(f"{path}: field 'default': {part!r} is not a member of indexes")
        if len(set(parts)) != len(parts):
            raise HeronError(f"{path}: field 'default': a member appears twice")
    return config


def default_model_dir(output: Path, name: str) -> Path:
    """Where a member's trained model goes when its config names no folder: ``<output>.models/<name>``."""
    output = Path(output).absolute()
    return output.with_name(output.name + ".models") / name


def partial_dir(output: Path) -> Path:
    output = Path(output).absolute()
    return output.with_name(f".{output.name}.partial")


def build_bundle(config: BundleConfig, progress: bool = True, log=print) -> Path:
    """Build (or resume) every member of ``config``; returns the published bundle directory."""
    output = Path(config.output).absolute()
    if output.exists() and not is_bundle(output):
        raise HeronError(f"{output}: exists and is not a heron index bundle; choose another output directory")
    with build_lock(output):
        return _build_bundle(config, output, progress, log)


def _build_bundle(config: BundleConfig, output: Path, progress: bool, log) -> Path:
    from heron.build.index import build_index
    from heron.eval import load_dataset
    from heron.indexing.registry import verify_index

    dataset = load_dataset(config.dataset)
    work = partial_dir(output)
    recover(output)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    members = {}
    for i, name in enumerate(config.indexes, start=1):
        member = config.indexes[name]
        index_config = config.member_index_config(name, work / name)
        step = f"[{i}/{len(config.indexes)}]"
        if member.train is not None:
            _train(config, name, Path(index_config.encoder.model), progress, log, step)
        models = _model_revisions(index_config)
        stage = {"member": member.model_dump(mode="json"),
                 "index": index_config.model_dump(mode="json", exclude={"output"}),
                 "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
                 "models": {role: m.get("weights_sha256") for role, m in models.items()}}
        record = work / f"{name}.{STAGE_FILE}"
        if (work / name / MANIFEST_FILE).is_file() and _read_record(record) == stage:
            log(f"{step} {name}: already built (resumed)")
        else:
            record.unlink(missing_ok=True)
            log(f"{step} {name}: building a {member.encoder.type} index")
            build_index(index_config, progress=progress)
            kill_point("bundle.member.built")
            write_json_atomic(record, {"stage": stage})
            kill_point("bundle.member")
        members[name] = {"path": name, "search": member.search, "kind": member.encoder.type,
                         "index": _summary(work / name), "models": models}
    manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION,
                "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
                "default": config.default or next(iter(config.indexes)), "fusion": config.fusion.model_dump(),
                "indexes": members, "config": config.model_dump(mode="json"),
                "models": {name: m["models"] for name, m in members.items()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build": {"seconds": round(time.monotonic() - started, 3)}}
    for entry in work.iterdir():  # only the members of this config are published
        if entry.name not in config.indexes:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    write_manifest(work / MANIFEST_FILE, manifest, durable=False)  # sealed; publish fsyncs the whole tree
    publish(work, output)
    verify_index(output)  # every byte of every member, resumed ones included
    return output


def _read_record(record: Path) -> dict | None:
    try:
        return read_json(record, "stage record").get("stage")
    except (HeronError, AttributeError):
        return None  # missing or torn: the member is rebuilt


def _train(config: BundleConfig, name: str, model: Path, progress: bool, log, step: str) -> None:
    member = config.indexes[name]
    fields = {**member.train.model_dump(), "datasets": [config.dataset]}
    if (model / "training.json").is_file():
        try:
            recorded = read_json(model / "training.json", "training record").get("config") or {}
        except (HeronError, AttributeError):
            recorded = {}
        changed = sorted(key for key, value in member.train.model_dump().items() if recorded.get(key) != value)
        if changed:
            raise HeronError(f"indexes.{name}.train: {model} was trained with other settings "
                             f"({', '.join(changed)}); delete it to retrain, or point encoder.model elsewhere")
        log(f"{step} {name}: trained model found at {model}")
        return
    model.parent.mkdir(parents=True, exist_ok=True)
    try:
        if member.encoder.type == "multivector":
            from heron.training.colbert import ColBERTTrainConfig, train_colbert

            train_config, trainer = ColBERTTrainConfig.model_validate(fields), train_colbert
        elif member.encoder.type == "csr":
            from heron.training.csr import CSRTrainConfig, train_csr

            train_config, trainer = CSRTrainConfig.model_validate(fields), train_csr
        else:
            raise HeronError(f"indexes.{name}.train: only multivector and csr encoders are trained in a bundle "
                             f"(train {member.encoder.type} models with heron train)")
    except ValidationError as exc:
        raise config_error(exc, f"indexes.{name}.train") from None
    log(f"{step} {name}: training {member.encoder.type} ({train_config.steps} steps) into {model}")
    trainer(train_config, model, progress=progress)


def _summary(path: Path) -> dict:
    """What the bundle manifest records of a built member: its index's description (the member is opened, so a
    broken build fails here) without the encoder, and its size on disk."""
    from heron.indexing.registry import open_index

    out = {k: v for k, v in open_index(path).describe().items() if k != "encoder"}
    out["bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return out


def _model_revisions(config: IndexConfig) -> dict:
    """For each model a member uses: where it came from and a content hash of its weights."""
    from heron.models import read_model_manifest, resolve_model

    out = {}
    enc = config.encoder
    defaults = {"splade": "splade-tiny", "dense": "minilm"}
    for role, name in (("model", enc.model or defaults.get(enc.type)), ("query_model", enc.query_model)):
        if not name:
            continue
        folder = resolve_model(name)
        info: dict = {"name": name, "path": str(folder)}
        cached = read_model_manifest(folder, check="size")
        if cached:
            info.update({k: cached[k] for k in ("hf_id", "source", "wheel_sha256") if k in cached})
        weights = sorted(folder.rglob("*.safetensors"))
        info["weights_sha256"] = {w.relative_to(folder).as_posix(): sha256_file(w) for w in weights}
        out[role] = info
    return out
