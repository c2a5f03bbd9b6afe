"""File checksums shared by everything heron verifies: model caches, encoded shards, indexes (older
manifests and pinned wheels use sha256; new manifests record xxh3, see :mod:`heron.storage.integrity`)."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The hex sha256 of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
