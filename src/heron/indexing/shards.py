"""Encoded sparse vectors on disk, in shards: what encoders write and index builders read.

A shard directory holds::

    shards.json            {"format": "heron-sparse-shards", "version": 1, "vocab_size", "num_docs",
                            "complete": bool, "meta": {...encoder description...},
                            "shards": [{"file", "num_docs", "nnz", "sha256"}, ...]}
    shard-00000.npz        arrays: indptr (int64), indices (int32), data (float32), doc_ids (unicode)

Dense encoders write the same layout (``"format": "heron-dense-shards"``, ``vocab_size`` = the
dimension) with a ``vectors`` (float32, ``n × dim``) array instead of the CSR arrays:
:class:`DenseShardWriter` and :func:`iter_dense_shards`.

Every shard is a CSR block of rows (documents) over the encoder's vocabulary. Shards are written
whole (temp file, then rename) and recorded in ``shards.json`` after they are on disk, so an
interrupted encoding keeps every finished shard and :meth:`SparseShardWriter.resume` continues after
them; a shard file the manifest does not list (killed between the two steps) and half-written
temporaries are removed there. Nothing is pickled: ``np.load(..., allow_pickle=False)`` reads every array.
Kill points (``HERON_TEST_KILL_AT``): ``shards.written`` (a shard file in place, not yet listed) and
``shards.recorded`` (listed).

Example::

    >>> import scipy.sparse as sp, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with SparseShardWriter(d, vocab_size=5, meta={"encoder": "toy"}) as w:
    ...     w.add(["a", "b"], sp.csr_matrix([[0, 1.5, 0, 0, 0], [2.0, 0, 0, 0, 0]]))
    >>> [ids for ids, _ in iter_shards(d)]
    [['a', 'b']]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError
from heron.storage import commit_file, kill_point, read_versioned_json, sha256_file, write_json_atomic

SHARDS_FORMAT = "heron-sparse-shards"
SHARDS_VERSION = 1
DENSE_SHARDS_FORMAT = "heron-dense-shards"
MANIFEST = "shards.json"


class SparseShardWriter:
    """Append CSR blocks of encoded documents; each ``add`` becomes one shard file."""

    FORMAT = SHARDS_FORMAT

    def __init__(self, directory: str | Path, vocab_size: int, meta: dict | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = {
            "format": self.FORMAT, "version": SHARDS_VERSION, "vocab_size": int(vocab_size),
            "num_docs": 0, "complete": False, "meta": meta or {}, "shards": [],
        }
        write_json_atomic(self.directory / MANIFEST, self.manifest)

    @classmethod
    def resume(cls, directory: str | Path, vocab_size: int, meta: dict | None = None) -> SparseShardWriter:
        """Reopen an interrupted shard directory (same encoder) or start a new one.

        Shards listed in the manifest and intact on disk are kept; ``num_docs`` tells the caller how
        many leading documents to skip.
        """
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            return cls(directory, vocab_size, meta)
        manifest = read_manifest(directory, cls.FORMAT)
        if manifest["vocab_size"] != vocab_size or manifest["meta"] != (meta or {}):
            raise HeronError(f"{path}: shards were written by another encoder configuration; "
                             f"use a new output directory")
        writer = cls.__new__(cls)
        writer.directory = directory
        kept = []
        for shard in manifest["shards"]:
            file = directory / shard["file"]
            if not file.is_file() or sha256_file(file) != shard["sha256"]:
                break
            kept.append(shard)
        manifest["shards"] = kept
        manifest["num_docs"] = sum(s["num_docs"] for s in kept)
        listed = {shard["file"] for shard in kept}
        for stale in directory.glob("*shard-*.npz"):  # unlisted shards and temporaries of a killed run
            if stale.name not in listed:
                stale.unlink()
        manifest["complete"] = False
        writer.manifest = manifest
        write_json_atomic(path, manifest)
        return writer

    @property
    def num_docs(self) -> int:
        return self.manifest["num_docs"]

    def add(self, doc_ids: Sequence[str], matrix: sp.csr_matrix) -> None:
        matrix = sp.csr_matrix(matrix)
        if matrix.shape[0] != len(doc_ids):
            raise ValueError(f"{matrix.shape[0]} rows for {len(doc_ids)} doc ids")
        if matrix.shape[1] != self.manifest["vocab_size"]:
            raise ValueError(f"matrix has {matrix.shape[1]} columns, vocabulary has {self.manifest['vocab_size']}")
        matrix.sum_duplicates()
        matrix.sort_indices()
        self._write_shard(doc_ids, {"indptr": matrix.indptr.astype(np.int64),
                                    "indices": matrix.indices.astype(np.int32),
                                    "data": matrix.data.astype(np.float32)}, int(matrix.nnz))

    def _write_shard(self, doc_ids: Sequence[str], arrays: dict, nnz: int) -> None:
        name = f"shard-{len(self.manifest['shards']):05d}.npz"
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp.npz"
        np.savez(tmp, doc_ids=np.asarray(list(doc_ids), dtype=str), **arrays)
        commit_file(tmp, final)
        kill_point("shards.written")
        self.manifest["shards"].append(
            {"file": name, "num_docs": len(doc_ids), "nnz": nnz, "sha256": sha256_file(final)})
        self.manifest["num_docs"] += len(doc_ids)
        write_json_atomic(self.directory / MANIFEST, self.manifest)
        kill_point("shards.recorded")

    def close(self) -> None:
        self.manifest["complete"] = True
        write_json_atomic(self.directory / MANIFEST, self.manifest)

    def __enter__(self) -> SparseShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class DenseShardWriter(SparseShardWriter):
    """The dense counterpart: each ``add`` of an ``n × dim`` float32 block becomes one shard file.

    The manifest's ``vocab_size`` field holds the dimension; shards hold ``vectors`` and ``doc_ids``.
    """

    FORMAT = DENSE_SHARDS_FORMAT

    def add(self, doc_ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(doc_ids):
            raise ValueError(f"{vectors.shape} vectors for {len(doc_ids)} doc ids")
        if vectors.shape[1] != self.manifest["vocab_size"]:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, expected {self.manifest['vocab_size']}")
        self._write_shard(doc_ids, {"vectors": vectors}, int(vectors.size))


def _checked_shard_paths(directory: Path, manifest: dict, verify: bool) -> Iterator[Path]:
    """The shard files a manifest lists, in order, each checked to exist (and its sha256 when ``verify``)."""
    for shard in manifest["shards"]:
        path = directory / shard["file"]
        if not path.is_file():
            raise HeronError(f"{path}: shard listed in {MANIFEST} is missing")
        if verify and sha256_file(path) != shard["sha256"]:
            raise HeronError(f"{path}: checksum mismatch (the shard is corrupt; re-encode)")
        yield path


def iter_dense_shards(directory: str | Path, verify: bool = True) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield ``(doc_ids, float32 vectors)`` per dense shard in order; checksums verified by default."""
    directory = Path(directory)
    for path in _checked_shard_paths(directory, read_manifest(directory, DENSE_SHARDS_FORMAT), verify):
        try:
            with np.load(path, allow_pickle=False) as arrays:
                ids, vectors = arrays["doc_ids"].tolist(), arrays["vectors"]
        except (OSError, ValueError, KeyError) as exc:
            raise HeronError(f"{path}: unreadable shard ({exc})") from None
        yield ids, vectors


def read_manifest(directory: str | Path, expected: str = SHARDS_FORMAT) -> dict:
    return read_versioned_json(Path(directory) / MANIFEST, expected, SHARDS_VERSION, "heron encoded-shards folder")


def load_shard(path: str | Path) -> tuple[list[str], tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """One shard: its doc ids, its CSR arrays ``(indptr, indices, data)`` and its row count."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            indptr, indices, data = arrays["indptr"], arrays["indices"], arrays["data"]
            ids = arrays["doc_ids"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        raise HeronError(f"{path}: unreadable shard ({exc})") from None
    return ids, (indptr, indices, data), len(ids)


def iter_shards(directory: str | Path, verify: bool = True) -> Iterator[tuple[list[str], sp.csr_matrix]]:
    """Yield ``(doc_ids, csr_matrix)`` per shard in order; checksums are verified by default."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    width = manifest["vocab_size"]
    for path in _checked_shard_paths(directory, manifest, verify):
        ids, (indptr, indices, data), n = load_shard(path)
        yield ids, sp.csr_matrix((data, indices, indptr), shape=(n, width))
