"""Single files written atomically and durably: temporary sibling, fsync, rename over the target."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a directory (a directory's fsync makes renames and new entries in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and directory below ``root`` (directories after their contents), then ``root``."""
    root = Path(root)
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                fsync_path(path)
        fsync_path(folder)


def _replace(tmp: Path, path: Path, durable: bool) -> None:
    os.replace(tmp, path)
    if durable:
        fsync_path(path.parent)


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike, *, durable: bool = True) -> None:
    """Publish a finished temporary file ``tmp`` (a sibling of ``path``) as ``path``: fsync, rename, fsync the
    directory. For writers that produce the file themselves (``np.savez``, a download, a JSON-lines export)."""
    if durable:
        fsync_path(tmp)
    _replace(Path(tmp), Path(path), durable)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, binary: bool = False, durable: bool = True) -> Iterator[IO]:
    """``with atomic_file(path) as handle:`` write the file; on normal exit it replaces ``path`` in one step
    (flushed and fsynced first when ``durable``), on an exception ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        _replace(tmp, path, durable)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` so a reader sees the old file or the whole new one."""
    with atomic_file(path, durable=durable) as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, obj, *, durable: bool = True) -> None:
    """:func:`write_text_atomic` of ``obj`` as indented JSON (non-ASCII kept as is)."""
    write_text_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False), durable=durable)


def save_array_atomic(path: str | os.PathLike, array: np.ndarray, *, durable: bool = True) -> None:
    """``np.save`` of ``array`` to ``path`` (no pickle), atomically."""
    with atomic_file(path, binary=True, durable=durable) as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
