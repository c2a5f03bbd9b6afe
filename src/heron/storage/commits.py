"""Commit points: ``commit-<N>.json``, the small sealed file that says which segments make up an index.

A segmented index (:mod:`heron.indexing.segments`) is a set of immutable segment directories plus commit
points, as in Lucene's ``segments_N``. Commit ``N`` (its *generation*) is one JSON file, sealed like every
heron manifest (:func:`heron.storage.integrity.seal`), written once and never modified:

1. the payload is written to a temporary sibling (``.commit-<N>.json.tmp-<pid>``) and fsynced
   (kill point ``commit.data`` right after);
2. kill point ``commit.publish``; the temporary file is *hard-linked* to ``commit-<N>.json`` — an atomic
   create that fails if the name exists, so two writers can never both publish generation ``N`` —
   then removed, and the directory fsynced (kill point ``commit.published``).

A process killed at any point leaves either no ``commit-<N>.json`` (the previous commit is the latest,
whole) or the complete new one; a leftover temporary file is ignored by readers and removed by the next
writer (:func:`remove_temporaries`). Readers open the highest generation (:func:`latest_generation`) and
verify its seal (:func:`read_commit`): a damaged commit is an :class:`~heron.errors.IntegrityError`, never
silently skipped for an older one (that would answer from a stale snapshot without saying so).

Example::

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_commit(root, 1, {"segments": []})
    >>> latest_generation(root), read_commit(root)["generation"]
    (1, 1)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from heron.errors import HeronError, IntegrityError
from heron.storage.files import fsync_path
from heron.storage.integrity import SEAL, check_seal, seal
from heron.storage.killpoints import kill_point
from heron.storage.manifest import read_versioned_json

COMMIT_FORMAT = "heron-commit"
COMMIT_VERSION = 1
COMMIT_NAME = re.compile(r"^commit-([0-9]+)\.json$")
_TEMPORARY = re.compile(r"^\.commit-[0-9]+\.json\.tmp-[0-9]+$")


def commit_path(path: str | os.PathLike, generation: int) -> Path:
    """``path/commit-<generation>.json``."""
    return Path(path) / f"commit-{int(generation)}.json"


def generations(path: str | os.PathLike) -> list[int]:
    """The generations of every ``commit-<N>.json`` in ``path``, ascending (empty when there is none)."""
    root = Path(path)
    if not root.is_dir():
        return []
    found = []
    for entry in os.scandir(root):
        match = COMMIT_NAME.match(entry.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def latest_generation(path: str | os.PathLike) -> int | None:
    """The highest commit generation in ``path``; None when it holds no commit."""
    found = generations(path)
    return found[-1] if found else None


def read_commit(path: str | os.PathLike, generation: int | None = None) -> dict:
    """Commit ``generation`` (default: the latest) of the index at ``path``, its seal and generation checked.
    One-line :class:`~heron.errors.HeronError` when there is none, :class:`~heron.errors.IntegrityError`
    when it is damaged."""
    root = Path(path)
    if generation is None:
        generation = latest_generation(root)
        if generation is None:
            raise HeronError(f"{root}: no commit point (commit-<N>.json); not a segmented heron index")
    where = commit_path(root, generation)
    if not where.is_file():
        raise HeronError(f"{where}: no such commit (generations here: "
                         f"{', '.join(map(str, generations(root))) or 'none'})")
    commit = read_versioned_json(where, COMMIT_FORMAT, COMMIT_VERSION, "heron commit point",
                                 "restore the index from a backup", version_key="format_version")
    if SEAL not in commit:
        raise IntegrityError(where, "commit point is not sealed (no checksum); restore the index from a backup")
    check_seal(where, commit, "restore the index from a backup")
    if commit.get("generation") != int(generation):
        raise IntegrityError(where, f"records generation {commit.get('generation')!r}, its name says {generation}; "
                                    f"restore the index from a backup")
    return commit


def write_commit(path: str | os.PathLike, generation: int, payload: dict) -> Path:
    """Publish commit ``generation`` of the index at ``path`` (module docstring: temporary file, fsync,
    hard link, fsync of the directory). ``payload`` is stored with ``format``, ``format_version`` and
    ``generation`` set, sealed. A commit of that generation must not exist yet (HeronError otherwise:
    another writer got there first). Returns the commit's path."""
    root = Path(path)
    generation = int(generation)
    if generation < 1:
        raise HeronError(f"{root}: commit generation must be at least 1, not {generation}")
    target = commit_path(root, generation)
    body = seal({**payload, "format": COMMIT_FORMAT, "format_version": COMMIT_VERSION, "generation": generation})
    data = json.dumps(body, indent=1, ensure_ascii=False).encode("utf-8")
    tmp = root / f".{target.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        kill_point("commit.data")
        kill_point("commit.publish")
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise HeronError(f"{target}: already exists (another writer committed generation {generation})") \
                from None
        kill_point("commit.linked")
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(root)
    kill_point("commit.published")
    return target


def remove_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed commit writes left in ``path`` (call it holding the writer's
    lock); returns their names."""
    removed = []
    root = Path(path)
    for entry in os.scandir(root):
        if _TEMPORARY.match(entry.name):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


__all__ = ["COMMIT_FORMAT", "COMMIT_VERSION", "commit_path", "generations", "latest_generation", "read_commit",
           "remove_temporaries", "write_commit"]
