"""The one index interface every heron index type implements, and how an index directory is opened.

Every index is a directory with ``manifest.json`` (``format``, ``format_version``, ``num_docs``, the
``encoder`` it was built with, ``files``: {relative path: {bytes, xxh3_128, …}}, and its own ``checksum``),
``doc_ids.txt`` or equivalent, and optionally ``encoder/`` (its query encoder) and ``docstore/`` (titles
and text). Each
index type subclasses :class:`SearchIndex` and names its manifest ``format``;
:func:`heron.indexing.registry.open_index` reads the manifest once and opens the right type — nothing
probes files or tests types to decide what an index is.

The interface:

* ``open(path, verify=False, **options)`` — validate and open: every file's size, header and content hash
  (small files in full, large files' ends; ``verify``: every byte of every file, :mod:`heron.storage.integrity`);
* ``verify()`` — every byte of every file against the manifest (IntegrityError naming the first bad one);
* ``search_batch(queries, k, allow=None, **options)`` → ``(doc ids per query, float32 scores per query)``;
  ``search(query, …)`` → ``(doc ids, scores)`` of one query;
* ``check_queries(raw)`` — precomputed query vectors from a user (JSON), validated for this index;
* ``describe()`` — what the API and ``GET /v1/indexes`` show;
* ``vectors(positions)`` — the stored document vectors (sparse rows, dense rows or token matrices);
* ``search_options`` — the option names ``search_batch`` accepts (``heron eval --search``, bundle configs).

Example::

    >>> from heron.indexing.registry import INDEX_TYPES
    >>> sorted(INDEX_TYPES)
    ['heron-faiss-index', 'heron-inverted-index', 'heron-multivector-index']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import tokenize
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from heron.errors import HeronError, IntegrityError
from heron.storage import (
    SizeGuard,
    check_file,
    describe_file,
    describe_tree,
    read_versioned_json,
    staged,
    write_manifest,
)
from heron.storage.integrity import check_bytes, safe_relative

MANIFEST_FILE = "manifest.json"
ENCODER_DIR = "encoder"
#: the largest magnitude of a precomputed query vector's entries (keeps every score finite in float32)
MAX_WEIGHT = 1e6

SearchResult = tuple[list[str], np.ndarray]
BatchResult = tuple[list[list[str]], list[np.ndarray]]


def manifest_field(*keys: str, cast=int, doc: str | None = None) -> property:
    """A read-only property: ``cast(manifest[keys[0]][keys[1]]…)`` of the index's manifest."""

    def get(self):
        value = self.manifest
        for key in keys:
            value = value[key]
        return cast(value)

    return property(get, doc=doc or f"``{'.'.join(keys)}`` of the manifest.")


class SearchIndex(ABC):
    """Base of every index type: metadata from the manifest, and the search interface (module docstring)."""

    #: manifest ``format`` of this index type
    format_name: ClassVar[str]
    #: short name of the kind of index (``inverted``, ``faiss``, ``multivector``), used in messages and describe
    kind: ClassVar[str]
    #: option names ``search_batch`` accepts
    search_options: ClassVar[frozenset[str]] = frozenset()

    path: Path
    manifest: dict

    # -- opening and searching (each type implements these) ------------------------------------------------
    @classmethod
    @abstractmethod
    def open(cls, path: str | os.PathLike, verify: bool = False, **options) -> SearchIndex:
        """Open and validate the index at ``path`` (``verify``: hash every byte of every file)."""

    @abstractmethod
    def search_batch(self, queries, k: int = 10, allow: Sequence[str] | None = None, **options) -> BatchResult:
        """Top-``k`` doc ids and scores per query vector; with ``allow`` (document ids), only those documents
        are ranked (each index type documents which search methods support an allow-list)."""

    @abstractmethod
    def check_queries(self, raw: list) -> object:
        """Precomputed query vectors (as parsed from JSON) checked for this index; QueryError otherwise."""

    @abstractmethod
    def vectors(self, positions: Sequence[int]) -> object:
        """The stored vectors of the documents at ``positions``."""

    def search(self, query, k: int = 10, allow: Sequence[str] | None = None, **options) -> SearchResult:
        """:meth:`search_batch` for one query vector."""
        ids, scores = self.search_batch([query], k, allow=allow, **options)
        return ids[0], scores[0]

    def verify(self) -> None:
        """Hash every byte of every file the manifest lists; IntegrityError naming the first that differs."""
        check_files(self.path, self.manifest.get("files") or {}, verify=True)

    def check_in_use(self) -> None:
        """IntegrityError when a memory-mapped file of this index changed size since it was opened (a file
        truncated in place would otherwise end the process with SIGBUS). Every search calls it first."""
        guard = getattr(self, "_guard", None)
        if guard is not None:
            guard.check()

    def check_options(self, options: dict) -> dict:
        """``options`` without ``None`` values; a one-line error for any this index type does not take."""
        options = {key: value for key, value in options.items() if value is not None}
        unknown = sorted(set(options) - self.search_options)
        if unknown:
            takes = ", ".join(sorted(self.search_options)) or "no search options"
            raise HeronError(f"{self.path}: a {self.kind} index takes {takes}; not {', '.join(unknown)}")
        return options

    def describe(self) -> dict:
        """Kind, format, size and encoder of this index (no filesystem paths)."""
        return {"kind": self.kind, "format": self.manifest.get("format"),
                "format_version": self.manifest.get("format_version"), "num_docs": self.num_docs,
                "encoder": self.encoder}

    # -- metadata shared by every type ----------------------------------------------------------------------
    num_docs = manifest_field("num_docs", doc="Number of documents in the index.")

    @property
    def encoder(self) -> dict:
        """What the index was built with (type, model, dataset fingerprint …)."""
        return dict(self.manifest.get("encoder") or {})

    @property
    def encoder_dir(self) -> Path | None:
        """The query encoder folder inside the index, if it holds one."""
        rel = self.manifest.get("encoder_dir")
        return self.path / rel if rel else None

    @property
    def docstore_dir(self) -> Path | None:
        """The document store (titles and text) inside the index, if it holds one."""
        rel = self.manifest.get("docstore_dir")
        return self.path / rel if rel else None

    @property
    def doc_ids(self) -> list[str]:
        return self._doc_ids

    def _position_map(self) -> dict[str, int]:
        if getattr(self, "_positions", None) is None:
            self._positions = {d: i for i, d in enumerate(self.doc_ids)}
        return self._positions

    def doc_index(self, doc_id: str) -> int:
        """The position of document ``doc_id``."""
        try:
            return self._position_map()[doc_id]
        except KeyError:
            raise HeronError(f"{self.path}: unknown document id {doc_id!r}") from None

    def positions_of(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Sorted positions of the known ids among ``doc_ids`` (unknown ids are skipped)."""
        positions = self._position_map()
        known = {positions[d] for d in doc_ids if d in positions}
        return np.array(sorted(known), dtype=np.int64)


# -- helpers for index directories whose manifest lists {bytes, xxh3_128[, dtype, shape]} per file ----------
def read_index_manifest(root: Path, format_name: str, version: int, what: str) -> dict:
    """The manifest of a ``what`` index at ``root``; one-line errors for missing, corrupt (an
    :class:`~heron.errors.IntegrityError`, as is a broken seal), foreign, old."""
    return read_versioned_json(Path(root) / MANIFEST_FILE, format_name, version, f"heron {what} index",
                               "rebuild the index", version_key="format_version")


def npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` from a ``.npy`` header, without reading the data."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if fortran and len(shape) > 1:
            raise ValueError("Fortran-ordered arrays are not used by heron")
        return tuple(shape), np.dtype(dtype), handle.tell()


def check_npy(path: Path, entry: dict) -> None:
    """The ``.npy`` file at ``path`` has the shape and dtype its manifest ``entry`` records, and its data
    fills the file exactly."""
    try:
        shape, dtype, offset = npy_header(path)
    except (OSError, ValueError, SyntaxError, tokenize.TokenError) as exc:  # (a damaged header dict can end early)
        raise IntegrityError(path, f"not a readable .npy array ({exc}); rebuild the index") from None
    if list(shape) != list(entry["shape"]) or dtype.name != entry.get("dtype"):
        raise IntegrityError(path, f"array is {dtype.name}{list(shape)}, the manifest records "
                                   f"{entry.get('dtype')}{entry['shape']}; rebuild the index")
    if offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != path.stat().st_size:
        raise IntegrityError(path, "array data does not match its header (corrupt file); rebuild the index")


def check_files(root: Path, files: dict, verify: bool = False) -> None:
    """Every file of a manifest's ``files`` checked under ``root``: present, its recorded size, ``.npy``
    header, and content hash (:func:`heron.storage.check_file`: small files in full and large files' ends
    at open, and every file of ``encoder/``, which loads whole; every byte with ``verify``). The first
    problem is raised as an IntegrityError naming the file."""
    if not isinstance(files, dict):
        raise IntegrityError(root / MANIFEST_FILE, "malformed manifest (files is not a mapping); rebuild the index")
    for rel, entry in files.items():
        path = root / safe_relative(rel, root / MANIFEST_FILE)
        if not isinstance(entry, dict):
            raise IntegrityError(root / MANIFEST_FILE, f"malformed entry for {rel!r}; rebuild the index")
        if "shape" in entry:  # a readable header first: its error says more than a checksum mismatch
            check_file(path, entry, "size")
            check_npy(path, entry)
        # the query encoder's files are read whole when it loads: hashed in full whatever their size
        check_file(path, entry, "full" if verify or rel.startswith(f"{ENCODER_DIR}/") else "open")


def describe_index_file(root: Path, rel: str) -> dict:
    """The manifest entry of one index file: bytes, xxh3 (:func:`heron.storage.describe_file`) and, for an
    array, its dtype and shape."""
    path = Path(root) / rel
    entry = describe_file(path)
    if rel.endswith(".npy"):
        shape, dtype, _ = npy_header(path)
        entry.update(dtype=dtype.name, shape=list(shape))
    return entry


def describe_files(root: Path) -> dict:
    """:func:`describe_index_file` of every file under ``root`` (the manifest's ``files``)."""
    root = Path(root)
    return {rel: describe_index_file(root, rel) for rel in describe_tree(root)}


def watch_files(root: Path, rels) -> SizeGuard:
    """A :class:`~heron.storage.SizeGuard` over the index files ``rels`` (those it memory-maps)."""
    guard = SizeGuard()
    for rel in rels:
        guard.watch(Path(root) / rel)
    return guard


@contextlib.contextmanager
def building(output_dir) -> Iterator[tuple[Path, Path]]:
    """``with building(output) as (output, staging):`` build into ``staging``, which is published as ``output``
    when the block ends normally and removed on any error (:func:`heron.storage.staged`), so a failed or
    interrupted build leaves the previous index as it was. An existing ``output`` must be a heron index."""
    output = Path(output_dir).absolute()
    if output.exists() and not (output / MANIFEST_FILE).is_file():
        raise HeronError(f"{output}: exists and is not a heron index; choose another output directory")
    with staged(output) as staging:
        yield output, staging


def finish_index(staging: Path, manifest: dict, *, encoder_dir=None, docstore_dir=None,
                 started: float | None = None) -> None:
    """Copy the query encoder and document store into ``staging`` and write ``manifest.json`` listing every
    file with its checksum (the last step inside :func:`building`)."""
    for name, source in (("encoder", encoder_dir), ("docstore", docstore_dir)):
        if source is not None:
            shutil.copytree(source, staging / name)
        manifest[f"{name}_dir"] = name if source is not None else None
    if started is not None:
        manifest.setdefault("build", {})["seconds"] = round(time.monotonic() - started, 3)
    manifest["files"] = describe_files(staging)
    write_manifest(staging / MANIFEST_FILE, manifest, durable=False)  # publishing fsyncs the whole tree


def read_doc_ids(path: Path, count: int | None = None, entry: dict | None = None) -> list[str]:
    """One document id per line (the ``doc_ids.txt`` of an index); with ``count``, the file must end with a
    newline and hold exactly that many lines; with its manifest ``entry``, the bytes read must match its
    size and hash (whatever the file's size: it is read whole anyway)."""
    try:
        data = path.read_bytes()
        check_bytes(path, data, entry)
        ids = data.decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(path, f"unreadable document ids ({exc}); rebuild the index") from None
    if count is not None and (ids[-1] != "" or len(ids) - 1 != count):
        raise IntegrityError(path, f"{len(ids) - 1} lines for {count} documents (corrupt file); rebuild the index")
    return ids[:-1]


def finite_within(array: np.ndarray, limit: float = MAX_WEIGHT) -> bool:
    """True when every entry of ``array`` is finite and within ``±limit`` (query vectors from users)."""
    return bool(np.all(np.isfinite(array)) and (not array.size or np.abs(array).max() <= limit))


def dense_queries(raw, dim: int) -> np.ndarray:
    """Precomputed dense query vectors from a user (parsed JSON) as a float32 ``Q × dim`` array: QueryError
    unless they are ``dim`` finite numbers each, within ``±MAX_WEIGHT`` (FAISS and Milvus dense members)."""
    from heron.errors import QueryError

    try:
        array = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 2 or array.shape[1] != dim or not finite_within(array):
        raise QueryError(f"a dense index: the vector must be {dim} numbers in [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]")
    return array
