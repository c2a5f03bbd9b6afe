"""What every index bundle directory shares: its manifest, file checks, atomic publish, metadata.

The FAISS and multi-vector bundles (:mod:`heron.indexing.faiss_index`,
:mod:`heron.indexing.multivector_store`) are directories with ``manifest.json`` (format name and
version, ``files``: {relative path: {bytes, sha256}}), ``doc_ids.txt``, and optionally ``encoder/`` and
``docstore/``. The inverted index keeps its own, stricter format module
(:mod:`heron.indexing.inverted.format`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from heron.checksums import sha256_file
from heron.errors import HeronError

MANIFEST_FILE = "manifest.json"


def read_bundle_manifest(root: Path, format_name: str, version: int, what: str) -> dict:
    """The parsed manifest of a ``what`` bundle; one-line errors for missing, corrupt, foreign, old."""
    where = root / MANIFEST_FILE
    if not where.is_file():
        raise HeronError(f"{where}: missing (not a heron {what} index)")
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HeronError(f"{where}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise HeronError(f"{where}: not a heron {what} index manifest")
    if manifest.get("format_version") != version:
        raise HeronError(f"{root}: {what} bundle format version {manifest.get('format_version')}, this heron "
                         f"reads {version}; rebuild the index")
    return manifest


def check_files(root: Path, files: dict, verify: bool) -> None:
    """Every listed file exists with its recorded size (and sha256 when ``verify``)."""
    for rel, entry in files.items():
        file = root / rel
        if not file.is_file():
            raise HeronError(f"{file}: file listed in {MANIFEST_FILE} is missing; rebuild the index")
        if file.stat().st_size != entry.get("bytes"):
            raise HeronError(f"{file}: {file.stat().st_size} bytes, the manifest records {entry.get('bytes')} "
                             f"(truncated or replaced file); rebuild the index")
        if verify and sha256_file(file) != entry.get("sha256"):
            raise HeronError(f"{file}: checksum mismatch (the file was modified or is corrupt); rebuild the index")


def describe_files(root: Path) -> dict:
    """``{relative path: {bytes, sha256[, dtype, shape]}}`` for every file under ``root`` (for the manifest)."""
    import numpy as np

    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            entry: dict = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
            if rel.endswith(".npy"):
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                entry.update(dtype=array.dtype.name, shape=list(array.shape))
            files[rel] = entry
    return files


def start_build(output_dir) -> tuple[Path, Path]:
    """``(output, build)``: the absolute output path and a fresh temporary sibling to build into.

    An existing ``output`` must be a heron bundle (it is replaced only when the build publishes).
    """
    output = Path(output_dir).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists() and not (output / MANIFEST_FILE).is_file():
        raise HeronError(f"{output}: exists and is not a heron index; choose another output directory")
    build = output.parent / f".{output.name}.building-{os.getpid()}"
    if build.exists():
        shutil.rmtree(build)
    build.mkdir()
    return output, build


def publish(build: Path, output: Path) -> None:
    """Move a finished build directory to ``output``, replacing any previous bundle only at the end."""
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        os.rename(output, old)
        os.rename(build, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(build, output)


class BundleInfo:
    """Metadata accessors shared by opened bundles (needs ``path``, ``manifest`` and ``doc_ids``)."""

    path: Path
    manifest: dict
    doc_ids: list[str]

    @property
    def encoder(self) -> dict:
        return dict(self.manifest.get("encoder") or {})

    @property
    def encoder_dir(self) -> Path | None:
        rel = self.manifest.get("encoder_dir")
        return self.path / rel if rel else None

    @property
    def docstore_dir(self) -> Path | None:
        rel = self.manifest.get("docstore_dir")
        return self.path / rel if rel else None

    def _position_map(self) -> dict[str, int]:
        if not hasattr(self, "_positions"):
            self._positions = {d: i for i, d in enumerate(self.doc_ids)}
        return self._positions

    def doc_index(self, doc_id: str) -> int:
        try:
            return self._position_map()[doc_id]
        except KeyError:
            raise HeronError(f"{self.path}: unknown document id {doc_id!r}") from None

    def positions_of(self, doc_ids):
        """Sorted positions of the known ids among ``doc_ids`` (unknown ids are skipped)."""
        import numpy as np

        positions = self._position_map()
        known = {positions[d] for d in doc_ids if d in positions}
        return np.array(sorted(known), dtype=np.int64)
