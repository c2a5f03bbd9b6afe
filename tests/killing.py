"""Builds killed and rerun: the configs, caches and checks shared by tests/test_build_resume.py and
bench/kill_resume.py (which puts this folder on ``sys.path``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

USER_CACHE = Path(os.environ.get("HERON_CACHE") or Path.home() / ".cache" / "heron")  # where the models are


def build_spec(kinds: dict, kind: str, which: int, dataset: Path, output: Path, shard_docs: int) -> dict:
    """The config mapping of build ``which`` (0: the new one, 1: the previous one) of ``kinds[kind]``, for
    ``dataset`` into ``output``, encoded and indexed ``shard_docs`` documents per shard."""
    spec = json.loads(json.dumps(kinds[kind][which]))
    if "indexes" in spec:  # a bundle
        for member in spec["indexes"].values():
            member["shard_docs"] = shard_docs
        return {**spec, "dataset": str(dataset), "output": str(output)}
    return {**spec, "dataset": str(dataset), "output": str(output), "shard_docs": shard_docs}


def new_cache(path: Path, embeddings: Path | None = None) -> Path:
    """An empty heron cache at ``path`` with the user's models linked in and, if given, a copy of finished
    corpus embeddings (so a dense build goes straight to FAISS)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "models").symlink_to(USER_CACHE / "models")
    if embeddings is not None and embeddings.is_dir():
        shutil.copytree(embeddings, path / "embeddings")
    return path


def snapshot(root: Path, *, manifests: bool = True) -> dict[str, str]:
    """Every file below ``root`` (relative path → sha256); without the manifests (they hold build times)
    when ``manifests`` is false."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and (manifests or p.name != "manifest.json")}


def hits(path: Path, queries: list[str]) -> dict[str, list[list[tuple[str, float]]]]:
    """Every member's top 10 (doc id, score) for every query."""
    import heron

    index = heron.Index.open(path, device="cpu")
    return {name: [[(hit.doc_id, hit.score) for hit in found] for found in index.search_batch(queries, k=10,
                                                                                            retriever=name)]
            for name in index.retrievers}


def beside(output: Path) -> list[str]:
    """What lies beside ``output`` in its folder (after a finished build: nothing)."""
    return sorted(p.name for p in output.parent.iterdir() if p.name != output.name)
