"""Integrity of stored files: what every manifest records of each file, and how it is checked.

Every heron manifest (index, bundle, cached model, Lucene folder) lists its files as
``{relative path: {"bytes": n, "xxh3_128": hex, ["edges_xxh3_128": hex,] …}}`` (:func:`describe_file`) and is
*sealed*: its ``checksum`` field is the xxh3-128 of the rest of it in canonical JSON (:func:`seal`), so an
edited or damaged manifest is detected like any other file. xxh3 (the ``xxhash`` library) hashes ~20 GB/s
on one core, ten times sha256, which makes hashing at open affordable.

Two levels of check (:func:`check_file`):

* ``"open"`` — every time an index or model is opened: each listed file exists with its recorded size (and
  ``.npy`` header, by the index readers), and its content hash matches — the whole file when it is at most
  :func:`open_hash_limit` bytes (default 128 MiB, ``$HERON_OPEN_HASH_BYTES``), else its first and last
  :data:`EDGE_BYTES` (``edges_xxh3_128``). A flipped byte in the middle of a file larger than the limit is
  found by the full check (and, in a later format, by per-block checksums of the postings).
* ``"full"`` — every byte of every file (``heron index check``, the end of every build, a server's background
  check): :func:`check_tree` with ``level="full"``.

Files recorded by older heron versions carry ``sha256`` instead of ``xxh3_128``: they are checked with
sha256 (slower), so old indexes keep working and are still verified.

A memory-mapped file truncated in place would kill the process with SIGBUS on the next access. A
:class:`SizeGuard` keeps a descriptor of each mapped file and ``fstat``\\ s them before each search (a few
microseconds), raising :class:`~heron.errors.IntegrityError` instead.

Published files are made read-only (:func:`make_read_only`, called by :func:`heron.storage.publish`), so
an operator's stray write fails instead of changing an index under a server; their directories stay
writable, so a rebuild can replace them.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath

import xxhash

from heron.errors import HeronError, IntegrityError
from heron.storage.checksums import hash_range, sha256_file
from heron.storage.files import write_json_atomic

#: the digest every new manifest records per file
DIGEST = "xxh3_128"
#: the digest of a large file's first and last :data:`EDGE_BYTES` (checked at open instead of the whole file)
EDGE_DIGEST = "edges_xxh3_128"
#: bytes hashed at each end of a large file by the open check
EDGE_BYTES = 1 << 20
#: default largest file hashed in full at open (``$HERON_OPEN_HASH_BYTES`` overrides it)
OPEN_HASH_BYTES = 128 << 20
#: the manifest field holding the manifest's own checksum
SEAL = "checksum"
LEVELS = ("size", "open", "full")


def open_hash_limit() -> int:
    """The largest file hashed in full at open: ``$HERON_OPEN_HASH_BYTES`` (bytes) or :data:`OPEN_HASH_BYTES`."""
    raw = os.environ.get("HERON_OPEN_HASH_BYTES", "").strip()
    if not raw:
        return OPEN_HASH_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise HeronError(f"HERON_OPEN_HASH_BYTES={raw!r}: expected a number of bytes") from None
    if value < 0:
        raise HeronError(f"HERON_OPEN_HASH_BYTES={raw!r}: must not be negative")
    return value


# -- digests ------------------------------------------------------------------------------------------------
def xxh3_file(path: str | os.PathLike) -> str:
    """The hex xxh3-128 of a whole file."""
    digest = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as handle:
        hash_range(handle, digest, None)
    return digest.hexdigest()


def edges_digest(path: str | os.PathLike, size: int) -> str:
    """The hex xxh3-128 of a file's first and last :data:`EDGE_BYTES` (with its size, so a file of another
    length never matches)."""
    digest = xxhash.xxh3_128(size.to_bytes(8, "little"))
    with open(path, "rb", buffering=0) as handle:
        hash_range(handle, digest, EDGE_BYTES)
        handle.seek(max(size - EDGE_BYTES, 0))
        hash_range(handle, digest, EDGE_BYTES)
    return digest.hexdigest()


def describe_file(path: str | os.PathLike) -> dict:
    """The manifest entry of one file: ``bytes``, ``xxh3_128`` and, for a file larger than two edges,
    ``edges_xxh3_128``."""
    size = os.stat(path).st_size
    entry: dict = {"bytes": size, DIGEST: xxh3_file(path)}
    if size > 2 * EDGE_BYTES:
        entry[EDGE_DIGEST] = edges_digest(path, size)
    return entry


def describe_tree(root: str | os.PathLike, skip: tuple[str, ...] = ()) -> dict:
    """``{relative posix path: describe_file(...)}`` of every file below ``root`` except those in ``skip``."""
    root = Path(root)
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in skip:
            files[rel] = describe_file(path)
    return files


# -- checks -------------------------------------------------------------------------------------------------
def check_file(path: str | os.PathLike, entry: dict, level: str = "open", hint: str = "rebuild the index") -> None:
    """Check one file against its manifest ``entry`` (module docstring; ``level="size"``: presence and size
    only); IntegrityError naming it otherwise."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise IntegrityError(path, f"file listed in the manifest is missing{tail}") from None
    except OSError as exc:
        raise IntegrityError(path, f"unreadable ({exc.strerror}){tail}") from None
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError(path, f"not a regular file{tail}")
    expected = entry.get("bytes") if isinstance(entry, dict) else None
    if info.st_size != expected:
        raise IntegrityError(path, f"{info.st_size} bytes, the manifest records {expected} (truncated or replaced "
                                   f"file){tail}")
    if level == "size":
        return
    try:
        if DIGEST in entry:
            if level == "full" or info.st_size <= open_hash_limit():
                ok = xxh3_file(path) == entry[DIGEST]
            elif EDGE_DIGEST in entry:
                ok = edges_digest(path, info.st_size) == entry[EDGE_DIGEST]
            else:
                ok = True
        elif "sha256" in entry:  # recorded by an older heron
            ok = not (level == "full" or info.st_size <= open_hash_limit()) or sha256_file(path) == entry["sha256"]
        else:
            raise IntegrityError(path, f"the manifest records no checksum for this file{tail}")
    except OSError as exc:
        raise IntegrityError(path, f"unreadable ({exc.strerror or exc}){tail}") from None
    if not ok:
        raise IntegrityError(path, f"checksum mismatch (the file was modified or is corrupt){tail}")


def check_bytes(path: str | os.PathLike, data: bytes, entry: dict | None, hint: str = "rebuild the index") -> None:
    """Check the ``data`` just read in full from ``path`` against its manifest ``entry`` (size and hash; no
    second read): files read whole at open (document ids, vocabularies) are always checked in full."""
    if not isinstance(entry, dict):
        return
    tail = f"; {hint}" if hint else ""
    if len(data) != entry.get("bytes"):
        raise IntegrityError(path, f"{len(data)} bytes, the manifest records {entry.get('bytes')} (truncated or "
                                   f"replaced file){tail}")
    if DIGEST in entry:
        ok = xxhash.xxh3_128(data).hexdigest() == entry[DIGEST]
    else:
        ok = "sha256" not in entry or hashlib.sha256(data).hexdigest() == entry["sha256"]
    if not ok:
        raise IntegrityError(path, f"checksum mismatch (the file was modified or is corrupt){tail}")


def safe_relative(rel: object, where: Path) -> str:
    """``rel`` when it is a relative path inside its folder; IntegrityError naming ``where`` otherwise."""
    parts = PurePosixPath(str(rel)).parts
    if not isinstance(rel, str) or not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise IntegrityError(where, f"file entry {rel!r} points outside its folder")
    return rel


def tree_problems(root: str | os.PathLike, files: dict, level: str = "full",
                  hint: str = "rebuild the index") -> list[IntegrityError]:
    """Every file of ``files`` (a manifest's ``files``) checked under ``root``; the problems found, in order."""
    root = Path(root)
    problems = []
    for rel, entry in files.items():
        try:
            check_file(root / safe_relative(rel, root), entry, level, hint)
        except IntegrityError as exc:
            problems.append(exc)
    return problems


def check_tree(root: str | os.PathLike, files: dict, level: str = "open", hint: str = "rebuild the index") -> None:
    """:func:`check_file` of every listed file; raises the first problem."""
    root = Path(root)
    for rel, entry in files.items():
        check_file(root / safe_relative(rel, root), entry, level, hint)


# -- sealed manifests ---------------------------------------------------------------------------------------
def _canonical(obj: dict) -> bytes:
    body = {k: v for k, v in obj.items() if k != SEAL}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8", "surrogatepass")


def seal(obj: dict) -> dict:
    """``obj`` with its ``checksum``: ``xxh3_128:<hex>`` of the rest of it in canonical JSON."""
    return {**obj, SEAL: f"{DIGEST}:{xxhash.xxh3_128(_canonical(obj)).hexdigest()}"}


def check_seal(path: str | os.PathLike, obj: object, hint: str = "rebuild the index") -> None:
    """IntegrityError naming ``path`` when the manifest ``obj`` carries a ``checksum`` that does not match its
    content. A manifest written before manifests were sealed has none and is accepted (its files still are
    checked)."""
    if not isinstance(obj, dict) or SEAL not in obj:
        return
    tail = f"; {hint}" if hint else ""
    try:
        ok = seal(obj)[SEAL] == obj[SEAL]
    except ValueError:  # NaN or infinity: never written by heron
        ok = False
    if not ok:
        raise IntegrityError(path, f"manifest checksum mismatch (the manifest was edited or is corrupt){tail}")


def write_manifest(path: str | os.PathLike, obj: dict, *, durable: bool = True) -> None:
    """Write the manifest ``obj`` sealed (:func:`seal`), atomically (:func:`~heron.storage.write_json_atomic`)."""
    write_json_atomic(path, seal(obj), durable=durable)


# -- memory-mapped files ------------------------------------------------------------------------------------
class SizeGuard:
    """Descriptors of memory-mapped files and their sizes at open; :meth:`check` fstat's each one.

    Opened on the same inode the mapping uses, so a file truncated (or grown) in place is seen, while a file
    replaced by a rename (the old inode stays mapped and whole) is not a problem and is not reported.
    """

    def __init__(self) -> None:
        self._files: list[tuple[Path, int, int]] = []

    def watch(self, path: str | os.PathLike, size: int | None = None) -> None:
        """Watch ``path`` (expected ``size``: its size now when not given)."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._files.append((Path(path), fd, os.fstat(fd).st_size if size is None else int(size)))

    def check(self) -> None:
        """IntegrityError naming the first watched file whose size changed since it was opened."""
        for path, fd, size in self._files:
            now = os.fstat(fd).st_size
            if now != size:
                raise IntegrityError(path, f"changed size while in use ({size} → {now} bytes: truncated or "
                                           f"overwritten in place); restore or rebuild the index, then reopen it")

    def close(self) -> None:
        files, self._files = self._files, []
        for _, fd, _ in files:
            os.close(fd)

    def __del__(self) -> None:  # pragma: no cover - exercised by garbage collection
        try:
            self.close()
        except Exception:
            pass


# -- read-only publishing -----------------------------------------------------------------------------------
def make_read_only(root: str | os.PathLike) -> None:
    """Remove every write permission bit of every file below ``root`` (directories keep theirs, so a rebuild
    or a clean-up can still replace or delete the files)."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            if mode & 0o222:
                os.chmod(path, stat.S_IMODE(mode) & ~0o222)
