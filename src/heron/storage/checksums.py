"""File checksums shared by everything heron verifies: model caches, encoded shards, indexes (older
manifests and pinned wheels use sha256; new manifests record xxh3, see :mod:`heron.storage.integrity`)."""

from __future__ import annotations

import hashlib
import os

CHUNK = 4 << 20  # bytes read at a time


def hash_range(handle, digest, length: int | None = None) -> None:
    """Feed ``digest`` (any hashlib / xxhash object) the next ``length`` bytes of the binary ``handle``
    (to its end when ``None``), ``CHUNK`` bytes at a time through one reused buffer."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    left = length
    while left is None or left > 0:
        n = handle.readinto(view if left is None or left >= CHUNK else view[:left])
        if not n:
            break
        digest.update(view[:n])
        if left is not None:
            left -= n


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a whole file."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        hash_range(handle, digest)
    return digest.hexdigest()
