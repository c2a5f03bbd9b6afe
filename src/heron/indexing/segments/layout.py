"""The on-disk layout of a segmented index: directory names, segment names, live-document bitmaps,
what a segment directory is (a single index or a bundle), and converting a classic index in place.

::

    INDEX/
      commit-<N>.json            the commit points (heron.storage.commits); the highest one is the index
      segments/<seg>/            immutable: a complete heron index directory or bundle directory
      live/<seg>-g<N>.npy        live-document bitmap of <seg> as of commit N (np.packbits, little bit order)

A segment without deletions has no bitmap (``live: null`` in the commit). Each bitmap is recorded in the
commit with its size and xxh3 and the number of live documents, and checked when it is read.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from heron.errors import HeronError, IntegrityError
from heron.indexing.base import MANIFEST_FILE
from heron.indexing.bundle import MEMBER_NAME, read_bundle
from heron.storage import build_lock, check_file, describe_file, fsync_path, publish, read_json, recover, staging_dir
from heron.storage.commits import generations, write_commit

SEGMENTS_DIR = "segments"
LIVE_DIR = "live"
SEGMENT_NAME = re.compile(r"^s([0-9]{6,})$")
#: the merge policy every new segmented index starts with (:mod:`heron.indexing.segments.merging`)
DEFAULT_MERGE_POLICY = {"segments_per_tier": 10, "max_merged_docs": 5_000_000, "min_docs": 1000,
                        "enabled": True}


def segment_name(number: int) -> str:
    """The directory name of segment ``number`` (``s000001``)."""
    return f"s{int(number):06d}"


def segment_number(name: str) -> int:
    match = SEGMENT_NAME.match(name)
    if not match:
        raise HeronError(f"{name!r}: not a segment name")
    return int(match.group(1))


def is_segmented(path: str | os.PathLike) -> bool:
    """True for a directory holding at least one commit point (``commit-<N>.json``)."""
    return bool(generations(path))


def live_file(name: str, generation: int) -> str:
    """The relative path of segment ``name``'s bitmap written by commit ``generation``."""
    return f"{LIVE_DIR}/{name}-g{int(generation)}.npy"


def write_live(root: Path, rel: str, live: np.ndarray) -> dict:
    """Write the bool array ``live`` as a packed bitmap at ``root/rel`` (atomically, fsynced); returns its
    manifest entry (``bytes``, ``xxh3_128``)."""
    from heron.storage import save_array_atomic

    path = root / rel
    path.parent.mkdir(exist_ok=True)
    save_array_atomic(path, np.packbits(np.asarray(live, dtype=bool), bitorder="little"))
    return describe_file(path)


def read_live(root: Path, entry: dict) -> np.ndarray | None:
    """The live-document bool array of the commit's segment ``entry`` (None: every document is live), its
    file checked against the commit (size, xxh3) and its count of live documents."""
    rel = entry.get("live")
    if rel is None:
        if entry.get("deleted"):
            raise IntegrityError(root, f"segment {entry.get('name')!r} records deletions but no live bitmap")
        return None
    if not isinstance(rel, str) or not rel.startswith(f"{LIVE_DIR}/") or ".." in rel:
        raise IntegrityError(root, f"segment {entry.get('name')!r}: malformed live bitmap path {rel!r}")
    path = root / rel
    check_file(path, entry.get("live_file") or {}, "full", "restore the index from a backup")
    try:
        packed = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IntegrityError(path, f"unreadable live bitmap ({exc})") from None
    num_docs = int(entry["num_docs"])
    if packed.dtype != np.uint8 or packed.ndim != 1 or len(packed) != (num_docs + 7) // 8:
        raise IntegrityError(path, f"a bitmap of {packed.dtype}{list(packed.shape)} for {num_docs} documents")
    live = np.unpackbits(packed, count=num_docs, bitorder="little").astype(bool)
    if int(live.sum()) != num_docs - int(entry.get("deleted", 0)):
        raise IntegrityError(path, f"{int(live.sum())} live documents, the commit records "
                                   f"{num_docs - int(entry.get('deleted', 0))}")
    return live


# -- what a segment directory holds ----------------------------------------------------------------------
def describe_layout(directory: Path) -> tuple[str, dict[str, dict]]:
    """``(layout, members)`` of a classic index or bundle directory: layout ``"bundle"`` with each member's
    ``{"kind", "path"}``, or ``"index"`` with one member named after the directory (as :class:`heron.Index`
    names a single index; ``"index"`` when the name is not a valid member name) at path ``"."``."""
    from heron.indexing.registry import index_type

    directory = Path(directory)
    if not directory.is_dir():
        raise HeronError(f"{directory}: no such index directory")
    bundle = read_bundle(directory)
    if bundle is not None:
        members = {}
        for name, entry in bundle["indexes"].items():
            rel = str(entry.get("path", name))
            members[name] = {"kind": index_type(directory / rel).kind, "path": rel}
        return "bundle", members
    if not (directory / MANIFEST_FILE).is_file():
        raise HeronError(f"{directory}: not a heron index or bundle (no {MANIFEST_FILE})")
    name = directory.name if MEMBER_NAME.match(directory.name) else "index"
    return "index", {name: {"kind": index_type(directory).kind, "path": "."}}


def manifest_checksum(directory: Path) -> str | None:
    """The seal of a segment directory's top manifest (the bundle's, or the single index's)."""
    manifest = read_json(Path(directory) / MANIFEST_FILE, "index manifest", stored=True)
    return manifest.get("checksum") if isinstance(manifest, dict) else None


def doc_ids_of(directory: Path, members: dict[str, dict]) -> list[str]:
    """The document ids of a segment directory; every member must hold the same ids in the same order."""
    from heron.indexing.registry import open_index

    ids = None
    for name, member in members.items():
        options = {"device": "cpu"} if member["kind"] == "faiss" else {}
        found = list(open_index(Path(directory) / member["path"], **options).doc_ids)
        if ids is None:
            ids = found
        elif found != ids:
            raise HeronError(f"{directory}: member {name!r} holds other documents (or another order) than the "
                             f"first member; every member of a bundle segment must hold the same documents")
    return ids or []


def link_tree(source: Path, target: Path) -> None:
    """Recreate the directory ``source`` at ``target`` with every file hard-linked (no data copied)."""
    for folder, _dirs, files in os.walk(source):
        rel = Path(folder).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            src = Path(folder) / name
            if src.is_symlink():
                shutil.copy2(src, target / rel / name, follow_symlinks=False)
            else:
                os.link(src, target / rel / name)


def convert_to_segmented(path: str | os.PathLike) -> None:
    """Make the classic index or bundle directory ``path`` a segmented index of one segment, in place.

    Crash-safe: the new layout is staged beside it (``.<name>.staged-<pid>``) with every file of the old
    directory hard-linked as ``segments/s000001`` and a first commit, then swapped into place by
    :func:`heron.storage.publish`; a process killed at any point leaves the old directory or the new one,
    whole. Readers that have the old directory open keep working (its files stay, linked from the segment).
    A directory that is already segmented is left as it is."""
    root = Path(path).absolute()
    with build_lock(root, "segmented index"):
        recover(root)  # what a killed conversion left beside it
        if is_segmented(root):
            return
        layout, members = describe_layout(root)
        ids = doc_ids_of(root, members)
        checksum = manifest_checksum(root)
        staging = staging_dir(root)
        try:
            name = segment_name(1)
            link_tree(root, staging / SEGMENTS_DIR / name)
            (staging / LIVE_DIR).mkdir()
            entry = {"name": name, "num_docs": len(ids), "deleted": 0, "live": None, "live_file": None,
                     "manifest_checksum": checksum}
            write_commit(staging, 1, {"layout": layout, "members": members, "segments": [entry],
                                      "merge_policy": dict(DEFAULT_MERGE_POLICY), "next_segment": 2})
            publish(staging, root)
        except BaseException:
            from heron.storage import discard

            discard(staging)
            raise
        fsync_path(root.parent)
