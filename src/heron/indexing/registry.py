"""Every index type heron has; :func:`open_index` opens a directory as the type its manifest names, and
:func:`verify_index` checks every byte of an index or bundle against its manifests."""

from __future__ import annotations

import os
from pathlib import Path

from heron.errors import HeronError, IntegrityError
from heron.indexing.base import MANIFEST_FILE, SearchIndex, check_files
from heron.indexing.bundle import read_bundle
from heron.indexing.faiss_index import FaissIndex
from heron.indexing.inverted.index import InvertedIndex
from heron.indexing.multivector_store import MultiVectorIndex
from heron.storage import check_seal, read_json, tree_problems

#: manifest ``format`` → index type (the Lucene impact index is opened from an inverted index instead)
INDEX_TYPES: dict[str, type[SearchIndex]] = {cls.format_name: cls for cls in (InvertedIndex, FaissIndex,
                                                                               MultiVectorIndex)}


def _manifest(root: Path) -> dict:
    if not root.is_dir():
        raise HeronError(f"{root}: index directory does not exist")
    where = root / MANIFEST_FILE
    manifest = read_json(where, "index manifest", stored=True)
    check_seal(where, manifest)
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found not in INDEX_TYPES:
        raise HeronError(f"{where}: not a heron index (format {found!r}; known: {', '.join(sorted(INDEX_TYPES))})")
    return manifest


def index_type(path: str | os.PathLike) -> type[SearchIndex]:
    """The index type of the directory ``path``, from its manifest's ``format``."""
    return INDEX_TYPES[_manifest(Path(path))["format"]]


def open_index(path: str | os.PathLike, verify: bool = False, **options) -> SearchIndex:
    """Open the index directory ``path`` as whatever type its manifest names."""
    return index_type(path).open(path, verify=verify, **options)


def index_problems(path: str | os.PathLike) -> list[IntegrityError]:
    """Every damaged file of the index or bundle at ``path``: each file hashed in full against its manifest
    (a bundle's manifest and every member's). Empty when all is well. A directory that is not an index at
    all is a :class:`~heron.errors.HeronError`, raised."""
    root = Path(path)
    try:
        bundle = read_bundle(root)
        if bundle is not None:
            problems: list[IntegrityError] = []
            for name, entry in bundle["indexes"].items():
                problems += index_problems(root / entry.get("path", name))
            return problems
        files = _manifest(root).get("files")
        if not isinstance(files, dict):
            raise IntegrityError(root / MANIFEST_FILE, "malformed manifest (no files); rebuild the index")
        problems = tree_problems(root, files, "full")
        if not problems:
            check_files(root, files)  # .npy headers against the manifest's dtypes and shapes
    except IntegrityError as exc:
        return [exc]
    return problems


def verify_index(path: str | os.PathLike) -> None:
    """Hash every byte of every file of the index or bundle at ``path`` against its manifests; raise
    :class:`~heron.errors.IntegrityError` naming the first damaged file (and how many more there are).
    What a build runs at its end, ``heron index check`` on demand, and a server in the background."""
    problems = index_problems(path)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more damaged files)" if len(problems) > 1 else ""
        raise IntegrityError(first.path, first.problem + more)
