"""Every index type heron has, and :func:`open_index`: open a directory as the type its manifest names."""

from __future__ import annotations

import os
from pathlib import Path

from heron.errors import HeronError
from heron.indexing.base import MANIFEST_FILE, SearchIndex
from heron.indexing.faiss_index import FaissIndex
from heron.indexing.inverted.index import InvertedIndex
from heron.indexing.multivector_store import MultiVectorIndex
from heron.storage import read_json

#: manifest ``format`` → index type (the Lucene impact index is opened from an inverted index instead)
INDEX_TYPES: dict[str, type[SearchIndex]] = {cls.format_name: cls for cls in (InvertedIndex, FaissIndex,
                                                                               MultiVectorIndex)}


def index_type(path: str | os.PathLike) -> type[SearchIndex]:
    """The index type of the directory ``path``, from its manifest's ``format``."""
    root = Path(path)
    if not root.is_dir():
        raise HeronError(f"{path}: index directory does not exist")
    manifest = read_json(root / MANIFEST_FILE, "index manifest")
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found not in INDEX_TYPES:
        raise HeronError(f"{root / MANIFEST_FILE}: not a heron index (format {found!r}; known: "
                         f"{', '.join(sorted(INDEX_TYPES))})")
    return INDEX_TYPES[found]


def open_index(path: str | os.PathLike, verify: bool = False, **options) -> SearchIndex:
    """Open the index directory ``path`` as whatever type its manifest names."""
    return index_type(path).open(path, verify=verify, **options)
