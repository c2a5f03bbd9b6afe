"""Reading a segmented index: one commit's snapshot (:class:`SegmentedIndex`) and, per member, one
:class:`~heron.indexing.base.SearchIndex` over the live documents of every segment (:class:`SegmentedMember`).

**Document order.** The live documents of a snapshot are numbered in *global order*: segment after segment
(the commit's order), and within a segment by position. ``doc_ids`` lists them in that order and
``vectors(positions)`` takes global positions.

**Search.** Inverted members in the exact modes (``exact``, ``taat``) are searched in *one compiled call* over
every segment (:mod:`heron.indexing.inverted.multisegment`): the segments in global order share one top-k heap,
so each starts from the k-th best score of those before it (as one index over all their documents would), ties
go to the lower global position, and deleted documents and an allow-list are masks the kernel skips — no
over-fetching, no second pass, no per-segment Python (:data:`ONE_CALL`; measured in docs/LIFECYCLE.md).

Every other member type and mode (FAISS, multi-vector, inverted ``approx``) searches each segment with its own
index and merges the per-segment top lists into the global top-k, ranked by score (descending) and then by
global position (ascending). A segment holding a fraction ``f`` of the live documents is first asked for about
``k · f · SHARE_SLACK + SHARE_MIN`` hits, not ``k`` (a segment's top-``k`` threshold is far lower than the global
one, and its pruning weaker: at 1M documents in 11 segments, inverted top-1000 took 4.5× a single index's time
with ``k`` per segment); a segment whose every
returned hit entered the global top-k may hold more and is searched again with ``k``, so the result is exact.
A FAISS segment's deleted documents are skipped inside FAISS's own search (its live bitmap as an
``IDSelectorBitmap``: FAISS's search-time filter, for every type — flat exactly, HNSW / IVF on the same graph walk
or lists), so it returns live hits only. ``remove_ids`` is not used: it rewrites the index in place (and renumbers a
flat index), while a segment is immutable and may be read by older snapshots; merges drop the deleted vectors. Any
other segment of ``n`` documents, ``d`` of them deleted, first over-fetches ``min(d, 2·share·d/n +
OVERFETCH_SLACK)`` more hits (twice the deleted ones expected among its share) and drops the deleted ones; when its
live hits may fall short (the same rule), it is searched again with ``k`` and either every deleted document
over-fetched — the top ``k`` live hits are always among ``k + d`` — while ``d ≤ max(OVERFETCH_MIN,
OVERFETCH_FACTOR·k)`` (and always for an approximate FAISS type searched with ``truncate_dims``), or an *allow
filter* of the live documents (the inverted kernels' filter for ``approx``; the exact MaxSim pool of a multi-vector
member; FAISS's exact search over its stored vectors).

With exact per-segment search (inverted ``exact``/``taat``, FAISS ``flat``, multi-vector brute force) the
result equals a from-scratch index over the live documents in global order built with the same parameters
(for the inverted index: the same quantisation ``scale`` and ``dtype``, so every impact is the same): the
same ids, the same float32 scores, and the same tie order — every heron kernel breaks ties by the lower
document position, which is the global order here. Approximate modes (inverted ``approx``, HNSW, IVF,
MUVERA candidates) search each segment approximately and merge into one global top-k.

**Snapshots.** A :class:`SegmentedIndex` sees one commit until :meth:`SegmentedIndex.refresh`. Segments are
immutable, so a refresh reopens only the new segments and the changed live bitmaps. A writer removes the
files of commits older than its last two; a reader still holding such a snapshot keeps searching (on Linux
its memory-mapped files and the document ids it read at open stay valid), but reading a document's title
and text from a removed segment is a one-line error asking to refresh.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError, IntegrityError
from heron.indexing.base import BatchResult, SearchIndex
from heron.indexing.segments.layout import SEGMENTS_DIR, manifest_checksum, read_live
from heron.storage.commits import latest_generation, read_commit

#: over-fetch (see the module docstring) while a segment's deleted documents are at most
#: ``max(OVERFETCH_MIN, OVERFETCH_FACTOR * k)``; otherwise filter with the live documents
OVERFETCH_MIN = 256
OVERFETCH_FACTOR = 4
#: times :meth:`SegmentedIndex.open` starts again when a writer removed the files of the commit it was opening
RACE_RETRIES = 5
#: snapshots are opened one at a time in a process: np.load parses .npy headers with ast.literal_eval, which
#: CPython before 3.11.9 / 3.12.3 can fail in two threads at once (gh-106905); an open that still meets
#: another thread's parse (a merge's builder) is retried
_OPENING = threading.Lock()
#: segments searched at once (threads: the compiled kernels release the GIL, the Python around them does not);
#: 1: one after the other (the default on machines of ≤ 2 cores, where threads were measured no faster)
SEGMENT_THREADS = 1 if (os.cpu_count() or 1) <= 2 else min(8, os.cpu_count() or 1)
#: a segment holding a fraction f of the live documents is first asked for ceil(k · f · SHARE_SLACK) + SHARE_MIN
#: hits, not k (with a smaller k its search prunes as a search of the whole index would); exact all the same:
#: a segment whose every hit entered the global top k is searched again with k
SHARE_SLACK = 1.5
SHARE_MIN = 16
#: a segment of n documents, d deleted, first over-fetches ``min(d, 2 · share · d / n + OVERFETCH_SLACK)`` more hits
OVERFETCH_SLACK = 16
#: inverted members searched in exact modes run as one compiled call over every segment sharing one top-k heap
#: (:mod:`heron.indexing.inverted.multisegment`); False: per segment, shares of k and merging, as the other types
ONE_CALL = True
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != SEGMENT_THREADS:
            _POOL = ThreadPoolExecutor(SEGMENT_THREADS, thread_name_prefix="heron-segments")
        return _POOL


#: parsed vocabularies by their file's manifest entry (size and hash): the segments of an index share one list
_VOCABS: dict[tuple, list[str]] = {}
_VOCABS_MAX = 8


def _share_vocab(index) -> None:
    """Give an inverted segment the vocabulary list already parsed for another segment whose vocabulary file the
    manifest records with the same size and hash (and that the open checked against it)."""
    rel = index.manifest.get("vocab_file")
    entry = (index.manifest.get("files") or {}).get(rel) if rel else None
    if not isinstance(entry, dict) or getattr(index, "_vocab", None) is not None:
        return
    hashes = tuple(sorted((k, v) for k, v in entry.items() if k.startswith(("xxh3", "sha256"))))
    if not hashes:  # no hash recorded: nothing to compare
        return
    key = (rel, entry.get("bytes"), hashes)
    with _POOL_LOCK:
        known = _VOCABS.get(key)
    if known is not None and len(known) == index.vocab_size:
        index._vocab = known
        return
    vocab = index.vocab
    with _POOL_LOCK:
        if len(_VOCABS) >= _VOCABS_MAX:
            _VOCABS.pop(next(iter(_VOCABS)))
        _VOCABS[key] = vocab


class Segment:
    """One opened segment directory: every member's index, the document ids, the size on disk. Immutable
    and shared by every snapshot that holds it."""

    def __init__(self, root: Path, entry: dict, members: dict[str, dict], verify: bool, options: dict):
        from heron.indexing.registry import open_index

        self.name = str(entry["name"])
        self.path = root / SEGMENTS_DIR / self.name
        if not self.path.is_dir():
            raise IntegrityError(self.path, "segment directory listed in the commit is missing; restore the index "
                                            "from a backup")
        self.checksum = entry.get("manifest_checksum")
        if self.checksum is not None and manifest_checksum(self.path) != self.checksum:
            raise IntegrityError(self.path / "manifest.json", "not the segment the commit records (manifest "
                                                              "checksum differs); restore the index from a backup")
        self.num_docs = int(entry["num_docs"])
        self.members: dict[str, SearchIndex] = {}
        ids = None
        for name, member in members.items():
            opts = dict(options) if member["kind"] == "faiss" else {}
            index = open_index(self.path / member["path"], verify=verify, **opts)
            if index.kind != member["kind"]:
                raise IntegrityError(self.path / member["path"], f"member {name!r} is a {index.kind} index, the "
                                                                 f"commit records {member['kind']}")
            if index.num_docs != self.num_docs:
                raise IntegrityError(self.path / member["path"], f"member {name!r} holds {index.num_docs} documents, "
                                                                 f"the commit records {self.num_docs}")
            found = index.doc_ids
            if ids is None:
                ids = list(found)
            elif list(found) != ids:
                raise IntegrityError(self.path / member["path"], f"member {name!r} holds other documents than "
                                                                 f"the first member")
            if index.kind == "inverted":
                _share_vocab(index)
                _ = index.vocab  # read now: a snapshot keeps answering term queries after its files are removed
            self.members[name] = index
        self.doc_ids: list[str] = ids or []
        self._positions: dict[str, int] | None = None
        self.bytes = sum(os.path.getsize(os.path.join(folder, f)) for folder, _, files in os.walk(self.path)
                         for f in files)
        self._docstore = None

    @property
    def positions(self) -> dict[str, int]:
        """Document id → position in the segment (built on first use)."""
        if self._positions is None:
            self._positions = {d: i for i, d in enumerate(self.doc_ids)}
        return self._positions

    def document(self, position: int) -> dict | None:
        """Title and text of the document at ``position`` from the first member's docstore, if any."""
        from heron.indexing.docstore import DocStore

        if self._docstore is None:
            folder = next((m.docstore_dir for m in self.members.values() if m.docstore_dir is not None), None)
            if folder is None:
                return None
            try:
                self._docstore = DocStore(folder)
            except (OSError, IntegrityError) as exc:
                raise HeronError(f"{self.path}: document store unreadable ({exc}); if a newer commit removed "
                                 f"this segment, refresh the index") from None
        try:
            row = self._docstore.get(position)
        except FileNotFoundError:
            raise HeronError(f"{self.path}: segment removed by a newer commit; refresh the index") from None
        return {"title": row.get("title", ""), "text": row.get("text", "")}


class SegmentedIndex:
    """One commit of a segmented index, read-only (module docstring)."""

    def __init__(self, path: Path, commit: dict, segments: list[Segment], lives: list[np.ndarray | None],
                 verify: bool, options: dict):
        self.path = path
        self.commit = commit
        self.generation = int(commit["generation"])
        self.layout = str(commit["layout"])
        self._members_spec: dict[str, dict] = dict(commit["members"])
        self.members: list[str] = list(self._members_spec)
        self._segments = segments
        self._lives = lives
        self._verify, self._options = verify, options
        self._live_positions = [np.arange(s.num_docs) if live is None else np.flatnonzero(live)
                                for s, live in zip(segments, lives)]
        counts = [len(p) for p in self._live_positions]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_docs = int(self._starts[-1])
        self._deleted: dict[int, frozenset[str]] = {}
        entries = {e["name"]: e for e in commit["segments"]}
        self.segments: list[dict] = [
            {"name": s.name, "num_docs": s.num_docs, "deleted": int(entries[s.name].get("deleted", 0)),
             "live": int(c), "bytes": s.bytes} for s, c in zip(segments, counts)]
        self._doc_ids: list[str] | None = None
        self._global: dict[str, int] | None = None
        self._opened: dict[str, SegmentedMember] = {}

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False, generation: int | None = None,
             _reuse: dict[str, Segment] | None = None, **options) -> SegmentedIndex:
        """Open commit ``generation`` (default: the latest) of the segmented index at ``path``; ``verify``
        hashes every byte of every segment file. ``options`` (``device``) go to the FAISS members."""
        root = Path(path).absolute()
        if not root.is_dir():
            raise HeronError(f"{root}: index directory does not exist")
        for attempt in range(RACE_RETRIES):
            latest = generation if generation is not None else latest_generation(root)
            try:
                with _OPENING:
                    return cls._open(root, latest, verify, _reuse, options)
            except SystemError as exc:  # CPython < 3.11.9 / 3.12.3: ast.parse (np.load's header) in two threads
                if "AST constructor recursion depth" not in str(exc) or attempt == RACE_RETRIES - 1:
                    raise
            except (HeronError, OSError):
                if generation is not None or latest_generation(root) == latest or attempt == RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _open(cls, root: Path, generation: int | None, verify: bool, _reuse: dict[str, Segment] | None,
              options: dict) -> SegmentedIndex:
        commit = read_commit(root, generation)
        where = root / f"commit-{commit['generation']}.json"
        try:
            members = {str(n): {"kind": str(m["kind"]), "path": str(m["path"])} for n, m in commit["members"].items()}
            entries = list(commit["segments"])
            if commit["layout"] not in ("index", "bundle"):
                raise ValueError(f"layout {commit['layout']!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(where, f"malformed commit ({type(exc).__name__}: {exc})") from None
        segments, lives = [], []
        for entry in entries:
            cached = (_reuse or {}).get(entry.get("name"))
            if cached is not None and cached.checksum == entry.get("manifest_checksum") \
                    and cached.num_docs == int(entry["num_docs"]):
                segments.append(cached)
            else:
                segments.append(Segment(root, entry, members, verify, options))
            lives.append(read_live(root, entry))
        return cls(root, commit, segments, lives, verify, options)

    def refresh(self) -> SegmentedIndex | None:
        """The newest commit as a new snapshot when it is newer than this one (segments already open are
        reused), else None."""
        latest = latest_generation(self.path)
        if latest is None or latest <= self.generation:
            return None
        reuse = {s.name: s for s in self._segments}
        return SegmentedIndex.open(self.path, verify=self._verify, _reuse=reuse, **self._options)

    # -- documents ----------------------------------------------------------------------------------
    @property
    def doc_ids(self) -> list[str]:
        """The live document ids in global order."""
        if self._doc_ids is None:
            self._doc_ids = [seg.doc_ids[i] for seg, pos in zip(self._segments, self._live_positions)
                             for i in pos.tolist()]
        return self._doc_ids

    def global_positions(self) -> dict[str, int]:
        """Live document id → global position."""
        if self._global is None:
            self._global = {d: i for i, d in enumerate(self.doc_ids)}
        return self._global

    def deleted_ids(self, s: int) -> frozenset[str]:
        """The ids of segment ``s``'s deleted documents (built on first use)."""
        if s not in self._deleted:
            live = self._lives[s]
            seg = self._segments[s]
            self._deleted[s] = frozenset() if live is None else \
                frozenset(seg.doc_ids[i] for i in np.flatnonzero(~live).tolist())
        return self._deleted[s]

    def locate(self, doc_id: str) -> tuple[int, int] | None:
        """``(segment index, position in the segment)`` of a live document, or None."""
        for s, seg in enumerate(self._segments):
            p = seg.positions.get(doc_id)
            if p is not None and (self._lives[s] is None or self._lives[s][p]):
                return s, p
        return None

    def document(self, doc_id: str) -> dict | None:
        """``{"title", "text"}`` of a live document from its segment's docstore; None when the document is
        not live or the index has no docstore."""
        found = self.locate(doc_id)
        if found is None:
            return None
        return self._segments[found[0]].document(found[1])

    def bundle_manifest(self) -> dict | None:
        """The first segment's bundle manifest (default member, fusion, search options); None for the
        ``index`` layout or an empty index."""
        from heron.indexing.bundle import read_bundle

        if self.layout != "bundle" or not self._segments:
            return None
        return read_bundle(self._segments[0].path)

    # -- members ------------------------------------------------------------------------------------
    def member(self, name: str) -> SegmentedMember:
        """The :class:`SegmentedMember` (a SearchIndex) of member ``name`` over every segment's live docs."""
        if name not in self._members_spec:
            raise HeronError(f"{self.path}: no member {name!r} (members: {', '.join(self.members)})")
        if not self._segments:
            raise HeronError(f"{self.path}: the index holds no documents (commit {self.generation})")
        if name not in self._opened:
            self._opened[name] = SegmentedMember(self, name)
        return self._opened[name]

    def describe(self) -> dict:
        """Generation, layout, members, segments (documents, deleted, live, bytes), totals and the bytes per
        posting of the inverted members (all their files over all postings, deleted documents' included)."""
        postings = index_bytes = 0
        for seg in self._segments:
            for index in seg.members.values():
                nnz = getattr(index, "nnz", None) if index.kind == "inverted" else None
                if nnz:
                    postings += int(nnz)
                    index_bytes += sum(os.path.getsize(os.path.join(f, n)) for f, _, files in os.walk(index.path)
                                       for n in files)
        return {"generation": self.generation, "layout": self.layout,
                "members": {n: m["kind"] for n, m in self._members_spec.items()},
                "segments": [dict(s) for s in self.segments], "num_docs": self.num_docs,
                "deleted_docs": sum(s["deleted"] for s in self.segments),
                "bytes": sum(s["bytes"] for s in self.segments),
                "postings": postings, "bytes_per_posting": round(index_bytes / postings, 3) if postings else None,
                "merge_policy": self.commit.get("merge_policy")}

    def __repr__(self) -> str:
        return (f"SegmentedIndex({str(self.path)!r}, generation={self.generation}, segments={len(self._segments)}, "
                f"docs={self.num_docs})")


#: attributes a segmented member takes from its first segment: the same in every segment (the writer checks
#: the vocabulary, quantisation, dimension and FAISS type of each new segment), or per-type helpers
_SHARED_ATTRIBUTES = frozenset({"vocab", "term_ids", "vocab_size", "dim", "scale", "dtype", "block_size",
                                "index_type", "fde", "fde_encoder", "check_truncation"})


class _Task:
    """One segment's part of a search: ``share`` hits asked for, plus ``extra`` to make up for deleted documents
    that are ``drop``ped from its results, or a filter ``filt``. A task not :meth:`final` may fall short of the
    global top k; :meth:`escalate` makes it final: ``k`` hits, over-fetching all ``deleted`` documents or, where
    that costs more than a filter (``fallback``), filtering by the live documents. ``live`` (a FAISS segment's live
    bitmap): the deleted documents are skipped inside FAISS's own search, nothing to drop or over-fetch."""

    def __init__(self, s: int, part: SearchIndex, share: int, filt=None, drop: frozenset[str] | None = None,
                 fallback=None, live: np.ndarray | None = None):
        self.s, self.part, self.share, self.filt, self.drop, self.fallback = s, part, share, filt, drop, fallback
        self.live = live
        self.deleted = len(drop) if drop else 0
        expected = 2 * share * self.deleted / max(part.num_docs, 1)  # twice the deleted hits expected among share
        self.extra = min(self.deleted, math.ceil(expected) + OVERFETCH_SLACK)
        self.requested = 0
        self.ids: list[list[str]] = []
        self.scores: list[np.ndarray] = []

    def final(self, k: int) -> bool:
        return self.share >= k and self.extra >= self.deleted

    def escalate(self, k: int) -> None:
        self.share = k
        if self.drop and self.extra < self.deleted:
            if self.fallback is not None:
                self.filt, self.drop, self.deleted, self.extra = self.fallback(), None, 0, 0
            else:
                self.extra = self.deleted


class SegmentedMember(SearchIndex):
    """One member over every segment of a snapshot (the :class:`~heron.indexing.base.SearchIndex`
    interface; positions are global, module docstring). ``vocab``, ``term_ids``, ``vocab_size``, ``dim``,
    ``scale``, ``dtype``, ``index_type`` … (:data:`_SHARED_ATTRIBUTES`) are the first segment's, the same in
    every segment; any other attribute of the segments' index types is an AttributeError. ``docstore_dir`` is None:
    read titles and text with :meth:`SegmentedIndex.document`."""

    def __init__(self, snapshot: SegmentedIndex, name: str):
        self.snapshot = snapshot
        self.name = name
        self.parts: list[SearchIndex] = [seg.members[name] for seg in snapshot._segments]
        first = self.parts[0]
        self._first = first
        self.path = snapshot.path
        self.manifest = {**first.manifest, "num_docs": snapshot.num_docs}  # the rest: the first segment's
        self.kind = first.kind
        self.format_name = first.format_name
        self.search_options = first.search_options
        self._multi = None  # the segments' arrays for one-call inverted search, built on first use
        self._every_term: np.ndarray | None = None  # query preparation: no term dropped for lack of postings
        self._all_ids: list[str] | None = None
        self._guards: list | None = None

    @classmethod
    def open(cls, path, verify: bool = False, **options) -> SegmentedMember:
        raise HeronError(f"{path}: open a segmented index with SegmentedIndex.open(path).member(name)")

    def __getattr__(self, attr):
        if attr in _SHARED_ATTRIBUTES:
            return getattr(self._first, attr)
        if attr.startswith("_"):
            raise AttributeError(attr)
        raise AttributeError(f"{attr!r}: not available on a segmented {self.kind} member (it would describe the "
                             f"first segment only)")

    def set_search_params(self, **params) -> None:
        """FAISS search parameters (``ef_search``, ``nprobe``) set on every segment."""
        for part in self.parts:
            part.set_search_params(**params)

    def df(self) -> np.ndarray:
        """Per-term document frequency over every segment (inverted members; documents deleted but not yet
        merged away still count)."""
        return np.sum([part.df() for part in self.parts], axis=0)

    @property
    def nnz(self) -> int:
        """Postings over every segment (deleted documents' included until a merge drops them)."""
        return int(sum(int(part.nnz) for part in self.parts))

    # -- metadata -----------------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return self.snapshot.num_docs

    @property
    def doc_ids(self) -> list[str]:
        return self.snapshot.doc_ids

    def _position_map(self) -> dict[str, int]:
        return self.snapshot.global_positions()

    @property
    def encoder_dir(self) -> Path | None:
        return self._first.encoder_dir

    @property
    def docstore_dir(self) -> Path | None:
        return None

    def check_queries(self, raw: list) -> object:
        return self._first.check_queries(raw)

    def check_in_use(self) -> None:
        for part in self.parts:
            part.check_in_use()

    def verify(self) -> None:
        for part in self.parts:
            part.verify()

    def describe(self) -> dict:
        return {**self._first.describe(), "num_docs": self.num_docs, "segments": len(self.parts),
                "generation": self.snapshot.generation}

    def __repr__(self) -> str:
        return (f"SegmentedMember({self.name!r}, {self.kind}, generation={self.snapshot.generation}, "
                f"segments={len(self.parts)}, docs={self.num_docs})")

    # -- vectors ------------------------------------------------------------------------------------
    def vectors(self, positions: Sequence[int]) -> object:
        """The stored vectors of the live documents at global ``positions`` (each member type's form: CSR rows,
        float32 rows, or token matrices)."""
        snap = self.snapshot
        positions = np.asarray(list(positions), dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= snap.num_docs):
            raise IndexError(f"positions outside [0, {snap.num_docs})")
        seg_of = np.searchsorted(snap._starts, positions, side="right") - 1
        pieces, order = [], []
        for s in np.unique(seg_of).tolist():
            where = np.flatnonzero(seg_of == s)
            local = snap._live_positions[s][positions[where] - snap._starts[s]]
            pieces.append(self.parts[s].vectors(local.tolist()))
            order.append(where)
        if not pieces:
            return self._first.vectors([])
        inverse = np.argsort(np.concatenate(order), kind="stable")
        if sp.issparse(pieces[0]):
            return sp.csr_matrix(sp.vstack(pieces, format="csr")[inverse])
        if isinstance(pieces[0], np.ndarray):
            return np.concatenate(pieces)[inverse]
        flat = [v for piece in pieces for v in piece]
        return [flat[i] for i in inverse.tolist()]

    # -- search -------------------------------------------------------------------------------------
    def search_batch(self, queries, k: int = 10, allow: Sequence[str] | None = None, **options) -> BatchResult:
        """The global top-``k`` per query over every segment's live documents (module docstring); ``allow``:
        document ids (only those are ranked)."""
        snap = self.snapshot
        k = int(k)
        allowed = None if allow is None else set(allow)
        if self.kind == "inverted" and self._one_call(options):
            return self._search_inverted(queries, k, allowed, **options)
        if self.kind == "inverted":
            queries = self._term_ids(queries)
        tasks = []
        for s, part in enumerate(self.parts):
            live = snap._lives[s]
            deleted = 0 if live is None else int(len(live) - live.sum())
            if k <= 0:
                continue
            fraction = len(snap._live_positions[s]) / max(snap.num_docs, 1)
            share = k if len(self.parts) == 1 else min(k, math.ceil(k * SHARE_SLACK * fraction) + SHARE_MIN)
            if allowed is not None:
                seg = snap._segments[s]
                local = sorted(p for d in allowed if (p := seg.positions.get(d)) is not None
                               and (live is None or live[p]))
                if local:
                    tasks.append(_Task(s, part, share, filt=self._filter(part, seg, np.asarray(local, np.int64))))
            elif deleted and part.kind == "faiss" and not options.get("truncate_dims"):
                tasks.append(_Task(s, part, share, live=live))  # FAISS skips them itself (IDSelectorBitmap)
            elif deleted:
                fallback = None if self._overfetch(part, deleted, k) else \
                    (lambda part=part, s=s: self._filter(part, snap._segments[s], snap._live_positions[s]))
                tasks.append(_Task(s, part, share, drop=snap.deleted_ids(s), fallback=fallback))
            else:
                tasks.append(_Task(s, part, share))
        self._run(tasks, queries, options)
        while True:  # a segment asked for its share of k whose hits all made the top k may hold more: ask again
            merged, again = self._merge(tasks, k, queries)
            if not again:
                return merged
            for task in again:
                task.escalate(k)
            self._run(again, queries, options)

    # -- inverted members: every segment in one compiled call --------------------------------------
    def _one_call(self, options: dict) -> bool:
        """Whether an inverted search runs as one call over every segment (:mod:`.multisegment`): the exact
        modes over compressed postings, options ``mode`` and ``threads`` only."""
        if not ONE_CALL or set(options) - {"mode", "threads"} or options.get("mode", "exact") not in ("exact", "taat"):
            return False
        return all("postings_words" in part.arrays for part in self.parts)

    def _segment_arrays(self):
        from heron.indexing.inverted.multisegment import SegmentArrays

        if self._multi is None:
            self._multi = SegmentArrays(self.parts, self.snapshot._lives)
        return self._multi

    def _search_inverted(self, queries, k: int, allowed: set[str] | None, mode: str = "exact",
                         threads: int | None = None) -> BatchResult:
        """Exact top-``k`` over every segment in one compiled call sharing one heap (module docstring of
        :mod:`heron.indexing.inverted.multisegment`): deleted documents and ``allowed`` filtered by masks."""
        from heron.indexing.inverted import multisegment

        snap = self.snapshot
        self._check_in_use()
        segments = self._segment_arrays()
        q_indptr, q_terms, q_weights = self._prepared(queries)
        masks = None
        if allowed is not None:
            built = []
            for s, seg in enumerate(snap._segments):
                mask = np.zeros(seg.num_docs, dtype=np.uint8)
                local = [p for d in allowed if (p := seg.positions.get(d)) is not None]
                if local:
                    mask[np.asarray(local, np.int64)] = 1
                if snap._lives[s] is not None:
                    mask &= snap._lives[s]
                built.append(mask)
            masks = segments.with_masks(built)
        verify = all(part.verify_blocks for part in self.parts)
        idx, scores = multisegment.search_batch(segments, masks, mode, q_indptr, q_terms, q_weights, k,
                                                int(threads or os.cpu_count() or 1), verify,
                                                [part.path for part in self.parts])
        scale = np.float32(self._first.scale)
        if self._all_ids is None:  # every segment's ids, deleted ones included: by global position
            self._all_ids = [d for seg in snap._segments for d in seg.doc_ids]
        all_ids = self._all_ids
        out_ids, out_scores = [], []
        for row_idx, row_scores in zip(idx, scores):
            keep = row_scores != -np.inf
            out_ids.append([all_ids[i] for i in row_idx[keep].tolist()])
            out_scores.append((row_scores[keep] / scale).astype(np.float32))
        return out_ids, out_scores

    def _check_in_use(self) -> None:
        """Every segment's :meth:`~heron.indexing.base.SearchIndex.check_in_use` (the size of each memory-mapped
        file), as one loop over their descriptors."""
        if self._guards is None:
            guards = [getattr(part, "_guard", None) for part in self.parts]
            self._guards = [(part, fd, size) for part, guard in zip(self.parts, guards) if guard is not None
                            for _, fd, size in getattr(guard, "_files", ())]
            self._guards += [(part, None, None) for part, guard in zip(self.parts, guards)
                             if guard is not None and not hasattr(guard, "_files")]
        fstat = os.fstat
        for part, fd, size in self._guards:
            if fd is None or fstat(fd).st_size != size:
                part.check_in_use()  # raises the IntegrityError naming the file

    def _prepared(self, queries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Queries as the kernels' ``(q_indptr, q_terms, q_weights)``: per query its term ids ascending and
        unique (weights of a repeated term summed, as one index does), terms unknown to the vocabulary or of
        weight 0 dropped; ValueError for negative or non-finite weights. Terms absent from a segment are
        dropped by the kernel per segment."""
        from heron.indexing.inverted.index import prepare_queries

        vocab_size = int(self._first.vocab_size)
        if self._every_term is None or len(self._every_term) != vocab_size + 1:
            self._every_term = np.arange(vocab_size + 1, dtype=np.int64)  # "every term has postings"
        return prepare_queries(queries, lambda: self._first.term_ids, self._every_term, vocab_size)

    @staticmethod
    def _run(tasks: list[_Task], queries, options: dict) -> None:
        def run(task: _Task) -> None:
            task.requested = min(task.share + task.extra, task.part.num_docs)
            live = {} if task.live is None else {"live": task.live}
            task.ids, task.scores = task.part.search_batch(queries, task.requested, allow=task.filt, **live, **options)

        if min(SEGMENT_THREADS, len(tasks)) > 1:
            list(_pool().map(run, tasks))
        else:
            for task in tasks:
                run(task)

    def _term_ids(self, queries):
        """Inverted queries with term strings turned into term ids once (every segment has the same vocabulary,
        as the writer checks), so that no segment looks them up again: ``(ids, weights)`` pairs, unknown terms
        as -1 (which every segment ignores, as it ignores unknown terms)."""
        if sp.issparse(queries):
            return queries
        lookup = None
        out = []
        for q in queries:
            if isinstance(q, dict):
                terms, weights = list(q.keys()), list(q.values())
            elif isinstance(q, tuple | list) and len(q) == 2:
                terms, weights = q
            else:
                return queries  # another form: each segment reads it itself
            if len(terms) and isinstance(terms[0], str):
                lookup = lookup or self._first.term_ids
                terms = np.array([lookup.get(t, -1) for t in terms], dtype=np.int64)
            out.append((terms, weights))
        return out

    def _overfetch(self, part: SearchIndex, deleted: int, k: int) -> bool:
        if part.kind == "faiss" and (part.index_type != "flat" or part.stored is None):
            return True  # approximate types (or no stored vectors) with truncate_dims: over-fetch and drop
        return deleted <= max(OVERFETCH_MIN, OVERFETCH_FACTOR * k)

    @staticmethod
    def _filter(part: SearchIndex, seg: Segment, local: np.ndarray):
        if part.kind == "inverted":
            mask = np.zeros(seg.num_docs, dtype=np.uint8)
            mask[local] = 1
            return mask
        return [seg.doc_ids[i] for i in local.tolist()]

    def _merge(self, tasks: list[_Task], k: int, queries) -> tuple[BatchResult, list[_Task]]:
        """The global top-``k`` of per-segment results, and the tasks to run again with the whole ``k``.

        Each segment's list is ranked by score, then by position in the segment, and segments come in global
        order, so ordering by (score descending, segment, rank in the segment's list) is ordering by (score,
        global position) — without mapping any id back to a position. A segment asked for fewer than ``k`` hits
        that returned as many as asked and saw every live one of them enter the top ``k`` may hold more of it:
        it is searched again with ``k`` (otherwise its unreturned hits rank below one that did not make it)."""
        if not tasks:
            nq = queries.shape[0] if sp.issparse(queries) else len(np.atleast_2d(queries)) \
                if isinstance(queries, np.ndarray) else len(queries)
            return ([[] for _ in range(nq)], [np.zeros(0, np.float32) for _ in range(nq)]), []
        nq = len(tasks[0].ids)
        out_ids, out_scores, again = [], [], set()
        for q in range(nq):
            ids: list[str] = []
            score_parts, seg_parts, rank_parts, counts = [], [], [], []
            for t, task in enumerate(tasks):
                row_ids, row = task.ids[q], np.asarray(task.scores[q], dtype=np.float32)
                cut = not task.final(k) and len(row_ids) == task.requested < task.part.num_docs
                if task.drop:
                    keep = [i for i, d in enumerate(row_ids) if d not in task.drop]
                    row_ids, row = [row_ids[i] for i in keep], row[keep]
                ids += row_ids
                score_parts.append(row)
                seg_parts.append(np.full(len(row), t, dtype=np.int64))
                rank_parts.append(np.arange(len(row)))
                counts.append(len(row) if cut else -1)
            sc = np.concatenate(score_parts)
            order = np.lexsort((np.concatenate(rank_parts), np.concatenate(seg_parts), -sc))[:k]
            taken = np.bincount(np.concatenate(seg_parts)[order], minlength=len(tasks))
            again.update(t for t, count in enumerate(counts) if count >= 0 and taken[t] == count)
            out_ids.append([ids[i] for i in order.tolist()])
            out_scores.append(sc[order])
        return (out_ids, out_scores), [tasks[t] for t in sorted(again)]


def segmented_problems(path: str | os.PathLike, generation: int | None = None) -> list[IntegrityError]:
    """Every damaged file of commit ``generation`` (default: the latest) of the segmented index at ``path``:
    the commit's seal, each live bitmap (size, xxh3, count) and every byte of every segment's files against
    their manifests (:func:`heron.indexing.registry.index_problems`). Empty when all is well — what ``heron
    index check`` and a server's background check run on a segmented index."""
    from heron.indexing.registry import index_problems

    root = Path(path).absolute()
    try:
        commit = read_commit(root, generation)
    except IntegrityError as exc:
        return [exc]
    problems: list[IntegrityError] = []
    for entry in commit.get("segments", []):
        try:
            read_live(root, entry)
            segment = root / SEGMENTS_DIR / str(entry["name"])
            if entry.get("manifest_checksum") is not None and manifest_checksum(segment) != entry["manifest_checksum"]:
                raise IntegrityError(segment / "manifest.json", "not the segment the commit records")
        except IntegrityError as exc:
            problems.append(exc)
            continue
        problems += index_problems(segment)
    return problems
