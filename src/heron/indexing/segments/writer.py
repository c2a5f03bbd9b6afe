"""Changing a segmented index: :class:`IndexWriter` adds segments, deletes documents, commits and merges.

One writer per index at a time (:func:`heron.storage.build_lock`, ``.<name>.lock`` beside the index, held
from construction to :meth:`IndexWriter.close`). Changes are pending in memory until :meth:`commit`, which
writes the changed live-document bitmaps and then the next commit point; readers see nothing of a change
before its commit and all of it after (every member of a bundle moves in the same commit). An external
document id is live in at most one segment: adding ids that are live already is an error unless
``upsert=True``, which deletes the older copies in the same commit.

**Crash safety.** Nothing a commit references is ever modified: new segments are complete directories
moved (renamed) into ``segments/`` before the commit that lists them, bitmaps get new file names per
commit, and the commit point itself is published atomically (:mod:`heron.storage.commits`). A process
killed at any step leaves the last commit intact and readable; what it wrote beyond (a moved or merged
segment no commit lists, a bitmap, a temporary file, a merge's scratch directory) is removed by the next
writer, which keeps the files of the last two commits and removes everything else.

Kill points (``HERON_TEST_KILL_AT``): ``segments.add.moved`` (a new segment moved into ``segments/``, not
committed), ``segments.live`` (the bitmaps of a commit written, not the commit point), ``commit.data``,
``commit.publish``, ``commit.linked``, ``commit.published`` (:func:`heron.storage.commits.write_commit`),
``segments.committed`` (a commit published, old files not yet removed), ``segments.merge.built`` (a merged
segment complete in its scratch directory), ``segments.merge.moved`` (moved into ``segments/``, not
committed).
"""

from __future__ import annotations

import contextvars
import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from heron.errors import HeronError
from heron.indexing.segments import merging
from heron.indexing.segments.layout import (
    LIVE_DIR,
    SEGMENT_NAME,
    SEGMENTS_DIR,
    describe_layout,
    is_segmented,
    live_file,
    manifest_checksum,
    segment_name,
    segment_number,
    write_live,
)
from heron.indexing.segments.reader import SegmentedIndex
from heron.storage import build_lock, fsync_path, kill_point, publish, recover, staging_dir
from heron.storage.commits import generations, read_commit, remove_temporaries, write_commit

#: commits whose files a writer keeps (the latest and the one before)
KEEP_COMMITS = 2
#: where :meth:`IndexWriter.new_build_dir` places new segments being built
INCOMING_DIR = "incoming"


class _Entry:
    """A segment in the writer's working state: its documents and live bitmap (None: all live)."""

    def __init__(self, name: str, num_docs: int, ids: list[str], positions, live: np.ndarray | None,
                 committed: dict | None, checksum: str | None):
        self.name, self.num_docs, self.ids, self._positions = name, num_docs, ids, positions
        self.live, self.committed, self.checksum = live, committed, checksum
        self.dirty = False

    @property
    def positions(self) -> dict[str, int]:
        """Document id → position (built on first use: a segment's ``Segment.positions``, or from its ids)."""
        if callable(self._positions):
            self._positions = self._positions()
        if self._positions is None:
            self._positions = {d: i for i, d in enumerate(self.ids)}
        return self._positions

    @property
    def deleted(self) -> int:
        return 0 if self.live is None else int(self.num_docs - self.live.sum())

    def is_live(self, position: int) -> bool:
        return self.live is None or bool(self.live[position])

    def delete(self, position: int) -> None:
        if self.live is None:
            self.live = np.ones(self.num_docs, dtype=bool)
        elif not self.dirty:
            self.live = self.live.copy()  # the snapshot's array stays as it was
        self.live[position] = False
        self.dirty = True


class IndexWriter:
    """The one writer of a segmented index (module docstring). ``merge_policy`` (keys in
    :mod:`heron.indexing.segments.merging`) updates the index's policy from the next commit on.

    Used as a context manager, it commits pending changes when the block ends normally and drops them
    when it raises; either way the lock is released."""

    def __init__(self, path: str | os.PathLike, merge_policy: dict | None = None):
        self.path = Path(path).absolute()
        if not is_segmented(self.path):
            raise HeronError(f"{self.path}: not a segmented index (no commit-<N>.json); convert it first "
                             f"(heron.indexing.segments.convert_to_segmented)")
        # the lock is taken in a context of its own: another writer of this index is refused even in the
        # same thread (build_lock shares a lock held up the call chain), and close() may run in any thread
        self._lock_context = contextvars.Context()
        self._lock = build_lock(self.path, "segmented index")
        self._lock_context.run(self._lock.__enter__)
        self._closed = False
        self._builds = 0
        try:
            recover(self.path)  # what a killed conversion left beside the index
            commit = read_commit(self.path)
            self.policy = merging.check_policy(merge_policy, commit.get("merge_policy"))
            self._cleanup(opening=True)
            self._load(SegmentedIndex.open(self.path, device="cpu"))
        except BaseException:
            self.close()
            raise

    # -- state ----------------------------------------------------------------------------------------
    def _load(self, reader: SegmentedIndex) -> None:
        self.reader = reader
        self._commit = reader.commit
        entries = {e["name"]: e for e in reader.commit["segments"]}
        self._entries: list[_Entry] = []
        for seg, live in zip(reader._segments, reader._lives):
            entry = _Entry(seg.name, seg.num_docs, seg.doc_ids, lambda seg=seg: seg.positions, live,
                           entries[seg.name], seg.checksum)
            self._add_entry(entry)
        self._next = max([int(self._commit.get("next_segment", 1))] + [segment_number(p.name) + 1 for p in
                         (self.path / SEGMENTS_DIR).iterdir() if SEGMENT_NAME.match(p.name)])
        self._pending = False

    def _add_entry(self, entry: _Entry) -> None:
        self._entries.append(entry)

    def _find(self, doc_id: str) -> tuple[_Entry, int] | None:
        """The segment where ``doc_id`` is live (pending changes included) and its position there, or None. (Each
        segment's id → position map, built on first use and shared with the readers of that segment; the writer
        keeps no map of every id of the index, which cost 0.3–0.5 s per open and per commit at 1M documents.)"""
        for entry in self._entries:
            p = entry.positions.get(doc_id)
            if p is not None and entry.is_live(p):
                return entry, p
        return None

    def _live_among(self, ids: set[str]) -> set[str]:
        """Those of ``ids`` live in some segment."""
        found: set[str] = set()
        for entry in self._entries:
            common = ids.intersection(entry.ids)  # probes the (small) set of new ids: no map of the segment
            if common and entry.live is not None:
                positions = entry.positions
                common = {d for d in common if entry.live[positions[d]]}
            found |= common
        return found

    @property
    def generation(self) -> int:
        """The generation of the last commit."""
        return self.reader.generation

    @property
    def pending(self) -> bool:
        """Whether there are changes not committed yet."""
        return self._pending

    @property
    def num_docs(self) -> int:
        """Live documents, pending changes included."""
        return sum(entry.num_docs - entry.deleted for entry in self._entries)

    def new_build_dir(self) -> Path:
        """A fresh path inside the index (``incoming/b<pid>-<n>``, not created) to build a new segment at: on
        the index's filesystem, so :meth:`add_segment` moves it without copying; whatever is left there is
        removed when the next writer opens the index."""
        incoming = self.path / INCOMING_DIR
        incoming.mkdir(exist_ok=True)
        self._builds += 1
        return incoming / f"b{os.getpid()}-{self._builds}"

    def build_settings(self) -> dict[str, dict]:
        """Per member, the settings a new segment must be built with to join this index (the first segment's):
        inverted ``quantization``, ``scale``, ``block_size``, ``approx``; FAISS ``index_type``, ``params``,
        ``store_vectors``; multi-vector ``reduction``, ``query_reduction``, ``muvera``. Empty when the
        index holds no segment (any settings then)."""
        if not self.reader._segments:
            return {}
        out = {}
        for name, index in self.reader._segments[0].members.items():
            m = index.manifest
            if index.kind == "inverted":
                out[name] = {"kind": "inverted", "quantization": np.dtype(index.dtype).name,
                             "scale": float(index.scale), "block_size": (m.get("block_max") or {}).get("block_size"),
                             "approx": (m.get("approx") or {}).get("params")}
            elif index.kind == "faiss":
                out[name] = {"kind": "faiss", "index_type": index.index_type, "params": m["faiss"]["params"],
                             "store_vectors": index.stored is not None}
            else:
                out[name] = {"kind": index.kind, "reduction": m.get("reduction"),
                             "query_reduction": m.get("query_reduction"), "muvera": m.get("muvera")}
        return out

    def _new_name(self) -> str:
        name = segment_name(self._next)
        self._next += 1
        return name

    # -- changes --------------------------------------------------------------------------------------
    def add_segment(self, built_dir: str | os.PathLike, upsert: bool = False) -> str:
        """Add the index or bundle directory ``built_dir`` (built by heron's builders for the new documents,
        with this index's layout, members and kinds) as a new segment; it is moved into ``segments/`` (a
        copy when it lies on another filesystem), so ``built_dir`` is gone afterwards. Ids live elsewhere
        already are an error unless ``upsert``, which deletes the older copies. Pending until
        :meth:`commit`; returns the new segment's name."""
        built = Path(built_dir).absolute()
        if not built.is_dir():
            raise HeronError(f"{built}: no such index directory")
        layout, members = describe_layout(built)
        spec = {n: m["kind"] for n, m in self._commit["members"].items()}
        if layout != self._commit["layout"] or (layout == "bundle" and {n: m["kind"] for n, m in members.items()}
                                                != spec):
            found = ", ".join(f"{n} ({m['kind']})" for n, m in members.items())
            raise HeronError(f"{built}: a {layout} with members {found}; this index is a {self._commit['layout']} "
                             f"with {', '.join(f'{n} ({k})' for n, k in spec.items())}")
        if layout == "index":
            (name, member), = members.items()
            expected, = self._commit["members"].values()
            if member["kind"] != expected["kind"]:
                raise HeronError(f"{built}: a {member['kind']} index; this index holds a {expected['kind']} index")
            members = {next(iter(self._commit["members"])): member}
        ids = self._check_compatible(built, members)
        new = set(ids)
        if len(new) != len(ids):
            seen, dup = set(), None
            for d in ids:
                if d in seen:
                    dup = d
                    break
                seen.add(d)
            raise HeronError(f"{built}: document id {dup!r} appears twice in the new segment")
        live = self._live_among(new)
        clash = [d for d in ids if d in live] if live else []
        if clash and not upsert:
            raise HeronError(f"{built}: {len(clash)} document ids are in the index already (e.g. {clash[0]!r}); "
                             f"delete them first or add with upsert")
        checksum = manifest_checksum(built)
        name = self._new_name()
        self._move_in(built, self.path / SEGMENTS_DIR / name)
        kill_point("segments.add.moved")
        for doc_id in clash:
            self._delete_one(doc_id)
        self._add_entry(_Entry(name, len(ids), ids, None, None, None, checksum))
        self._pending = True
        return name

    def _check_compatible(self, built: Path, members: dict[str, dict]) -> list[str]:
        """Open every member of ``built``, check it against the first segment's (same vocabulary, scale and
        dtype; same dimension and type) and that all members hold the same ids; returns the ids."""
        from heron.indexing.registry import open_index

        ref = self.reader._segments[0] if self.reader._segments else None
        ids = None
        for name, member in members.items():
            where = built / member["path"]
            index = open_index(where, **({"device": "cpu"} if member["kind"] == "faiss" else {}))
            if ref is not None:
                problem = _incompatibility(index, ref.members[name])
                if problem:
                    raise HeronError(f"{where}: {problem} (member {name!r} of the index); build new segments "
                                     f"with the index's settings")
            found = list(index.doc_ids)
            if ids is None:
                ids = found
            elif found != ids:
                raise HeronError(f"{where}: member {name!r} holds other documents than the first member")
        return ids or []

    def _move_in(self, source: Path, target: Path) -> None:
        target.parent.mkdir(exist_ok=True)
        try:
            os.rename(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            staging = staging_dir(target)  # another filesystem: copy, publish, then remove the source
            shutil.copytree(source, staging, dirs_exist_ok=True)
            publish(staging, target)
            shutil.rmtree(source)
        fsync_path(target.parent)
        fsync_path(source.parent)

    def _delete_one(self, doc_id: str) -> bool:
        found = self._find(doc_id)
        if found is None:
            return False
        entry, position = found
        entry.delete(position)
        self._pending = True
        return True

    def delete(self, doc_ids: Iterable[str]) -> int:
        """Mark live documents deleted (pending until :meth:`commit`); returns how many were live. Unknown
        ids are ignored."""
        if isinstance(doc_ids, str):
            raise HeronError("delete takes a list of document ids, not one string")
        return sum(self._delete_one(str(d)) for d in doc_ids)

    # -- commits --------------------------------------------------------------------------------------
    def commit(self) -> int:
        """Publish the pending changes as the next commit (nothing when there are none), then run the merge
        policy (each merge is one more commit); returns the last generation."""
        self._publish()
        while True:
            window = merging.find_merge([{"num_docs": e.num_docs, "deleted": e.deleted} for e in self._entries],
                                        self.policy)
            if window is None:
                break
            self._merge_window(*window)
        return self.generation

    def merge(self, max_segments: int = 1) -> int:
        """Commit pending changes, then merge adjacent segments (those with the fewest live documents) until at
        most ``max_segments`` remain, in one merge and one commit; returns the generation."""
        if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
            raise HeronError(f"max_segments must be a positive integer, not {max_segments!r}")
        self._publish()
        count = len(self._entries)
        if count > max_segments:
            self._merge_window(*merging.smallest_window(
                [{"num_docs": e.num_docs, "deleted": e.deleted} for e in self._entries], count - max_segments + 1))
        return self.generation

    def rollback(self) -> None:
        """Drop the pending changes (segments added since the last commit are removed)."""
        if self._pending:
            self._load(self.reader)
            self._cleanup()

    def _publish(self) -> int:
        if not self._pending:
            return self.generation
        generation = self.generation + 1
        segments = []
        for entry in self._entries:
            deleted = entry.deleted
            if deleted == entry.num_docs:
                continue  # nothing live: the segment leaves the index
            record = {"name": entry.name, "num_docs": entry.num_docs, "deleted": deleted, "live": None,
                      "live_file": None, "manifest_checksum": entry.checksum}
            if deleted:
                if entry.dirty or entry.committed is None or entry.committed.get("live") is None:
                    rel = live_file(entry.name, generation)
                    record.update(live=rel, live_file=write_live(self.path, rel, entry.live))
                else:
                    record.update(live=entry.committed["live"], live_file=entry.committed["live_file"])
            segments.append(record)
        fsync_path(self.path / LIVE_DIR)
        kill_point("segments.live")
        payload = {"layout": self._commit["layout"], "members": self._commit["members"], "segments": segments,
                   "merge_policy": self.policy, "next_segment": self._next}
        write_commit(self.path, generation, payload)
        kill_point("segments.committed")
        self._load(SegmentedIndex.open(self.path, generation=generation, device="cpu",
                                       _reuse={s.name: s for s in self.reader._segments}))
        self._cleanup()
        return generation

    def _merge_window(self, start: int, stop: int) -> None:
        from heron.storage import scratch

        snapshot = self.reader
        name = self._new_name()
        target = self.path / SEGMENTS_DIR / name
        with scratch(target, "merge") as work:
            out = work / "segment"
            ids = merging.build_merged(snapshot, range(start, stop), out, work)
            kill_point("segments.merge.built")
            os.rename(out, target)
            fsync_path(target.parent)
        kill_point("segments.merge.moved")
        merged = _Entry(name, len(ids), ids, None, None, None, manifest_checksum(target))
        entries = self._entries
        self._entries = []
        for entry in entries[:start] + [merged] + entries[stop:]:
            self._add_entry(entry)
        self._pending = True
        self._publish()

    # -- clean-up -------------------------------------------------------------------------------------
    def _cleanup(self, opening: bool = False) -> None:
        """Remove old commits (all but the last :data:`KEEP_COMMITS`) and every segment directory, bitmap and
        temporary file none of the kept commits lists (what killed writers and older commits left)."""
        found = generations(self.path)
        keep = found[-KEEP_COMMITS:]
        referenced: set[str] = set()
        for generation in keep:
            try:
                commit = read_commit(self.path, generation)
            except HeronError:
                return  # a damaged commit: remove nothing
            for entry in commit.get("segments", []):
                referenced.add(f"{SEGMENTS_DIR}/{entry['name']}")
                if entry.get("live"):
                    referenced.add(entry["live"])
        for entry in getattr(self, "_entries", []):  # pending, not committed yet: kept
            referenced.add(f"{SEGMENTS_DIR}/{entry.name}")
        for generation in found[:-KEEP_COMMITS]:
            (self.path / f"commit-{generation}.json").unlink(missing_ok=True)
        remove_temporaries(self.path)
        segments = self.path / SEGMENTS_DIR
        if segments.is_dir():
            for child in segments.iterdir():
                if SEGMENT_NAME.match(child.name):
                    if f"{SEGMENTS_DIR}/{child.name}" not in referenced:
                        shutil.rmtree(child, ignore_errors=True)
                elif child.name.startswith(".s") and ".staged-" in child.name:
                    recover(segments / child.name[1:].split(".staged-")[0])
        if opening:  # no build of this writer is under way yet
            shutil.rmtree(self.path / INCOMING_DIR, ignore_errors=True)
        live = self.path / LIVE_DIR
        if live.is_dir():
            for child in live.iterdir():
                if f"{LIVE_DIR}/{child.name}" not in referenced and child.is_file():
                    child.unlink()
        fsync_path(self.path)

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the writer's lock (pending changes are dropped: commit first)."""
        if not self._closed:
            self._closed = True
            self._lock_context.run(self._lock.__exit__, None, None, None)

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()


def _incompatibility(new, ref) -> str | None:
    """Why a new segment's member ``new`` cannot join ``ref``'s member (None when it can)."""
    if new.kind != ref.kind:
        return f"a {new.kind} index, not {ref.kind}"
    if new.kind == "inverted":
        if np.dtype(new.dtype) != np.dtype(ref.dtype) or float(new.scale) != float(ref.scale):
            return (f"quantized as {np.dtype(new.dtype).name} with scale={float(new.scale)!r}, the index as "
                    f"{np.dtype(ref.dtype).name} with scale={float(ref.scale)!r}")
        if list(new.vocab) != list(ref.vocab):
            return "another vocabulary than the index"
    elif new.kind == "faiss":
        if new.dim != ref.dim or new.index_type != ref.index_type:
            return f"FAISS {new.index_type} of dimension {new.dim}, the index {ref.index_type} of dimension {ref.dim}"
    elif new.kind == "multivector" and new.dim != ref.dim:
        return f"token vectors of dimension {new.dim}, the index's of dimension {ref.dim}"
    return None
