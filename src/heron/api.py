"""The Python API: open an index (or a bundle of indexes) and search it — what ``heron query`` and the
HTTP server call.

A *bundle* (``heron build-index --config FILE`` with ``indexes:``, :mod:`heron.build.bundle`) holds
several indexes of one corpus under names (``splade``, ``dense``, ``colbert`` …); a single index directory
opens as a bundle of one. ``retriever`` picks a member by name, or fuses members joined by ``+``.

Example::

    >>> import heron
    >>> index = heron.Index.open("indexes/scifact-bundle")                          # doctest: +SKIP
    >>> index.retrievers                                                              # doctest: +SKIP
    ['splade', 'dense', 'colbert']
    >>> hits = index.search("coffee and cancer", k=3, retriever="splade+dense", fusion="rrf")  # doctest: +SKIP
    >>> hits[0].doc_id, round(hits[0].score, 4)                                       # doctest: +SKIP
    ('4983', 0.0325)
    >>> [[h.doc_id for h in r] for r in index.search_batch(["a query", "another"], k=2)]  # doctest: +SKIP

Indexes change: :meth:`Index.add` / :meth:`Index.upsert` encode new documents into a new segment (with the
index's own encoders, :mod:`heron.build.segment`), :meth:`Index.delete` marks documents deleted, and
:meth:`Index.commit` makes the changes visible (a new generation, :mod:`heron.indexing.segments`); until
then searches see the last commit. A classic (write-once) index is converted in place to a segmented one
by its first change. :meth:`Index.refresh` picks up commits made by other processes; :meth:`Index.merge`
merges segments. One writer per index at a time (the index's build lock, held from the first change to
the commit)::

    >>> index.upsert([{"_id": "new-1", "title": "Coffee", "text": "Coffee and cancer …"}])  # doctest: +SKIP
    1
    >>> index.delete(["4983"]), index.commit(), index.generation                     # doctest: +SKIP
    (1, 3, 3)
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from heron.errors import HeronError, IntegrityError, NotFoundError, QueryError
from heron.indexing.bundle import MEMBER_NAME, read_bundle

#: the most results one search may ask for
MAX_K = 1000
#: depth each member is searched to before fusion (as ``heron eval`` fuses: results do not depend on k)
FUSION_DEPTH = 1000
#: the most hits one request may return in all (queries × k)
MAX_TOTAL_HITS = 20000


class IndexBusy(HeronError):
    """Another writer (process or :class:`Index`) holds the index's write lock; retry once it has committed."""


@dataclass
class Hit:
    """One result: document id, score, rank (from 1) and, when asked for, title and text."""

    doc_id: str
    score: float
    rank: int
    title: str | None = None
    text: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Member:
    """One index of a bundle: its directory and the search options it is opened with (``source``: its name
    in a segmented index's snapshot, whose ``path`` is then the index's root; ``index``: the opened index of a
    member that is no directory, e.g. a Milvus collection's, whose ``path`` is then its cached query encoder)."""

    name: str
    path: Path
    search: dict
    source: str | None = None
    index: object = None


class Index:
    """Search one index directory or a bundle of them; see the module docstring.

    Retrievers (and their query encoders) are opened on first use, or all at once by :meth:`load`;
    an opened ``Index`` may be searched from several threads.
    """

    def __init__(self, path: Path, members: dict[str, Member], default: str, fusion: str = "rrf",
                 manifest: dict | None = None, device: str | None = "auto", threads: int | None = None):
        self.path, self.members, self.default, self.fusion = path, members, default, fusion
        self.manifest = manifest or {}
        self.device, self.threads = device, threads
        self._opened: dict[tuple, object] = {}
        self._lock = threading.RLock()
        self._docstore = None
        #: the commit this Index searches (a segmented index), else None
        self.snapshot = None
        #: the Milvus collection this Index searches (``milvus://…``), else None
        self.milvus = None
        self._writer = None
        self._write_lock = threading.RLock()

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, device: str | None = "auto", threads: int | None = None) -> Index:
        """Open a bundle (``manifest.json`` of format ``heron-index-bundle``), a single index directory, or a
        collection exported to Milvus (``milvus://HOST:PORT/COLLECTION`` or ``milvus:///ABS/FILE.db/COLLECTION``,
        :mod:`heron.indexing.milvus_store`; read-only here: change the index, then ``heron export milvus --sync``)."""
        from heron.indexing.milvus_store import is_milvus_address

        if is_milvus_address(path):
            return cls._open_milvus(path, device=device, threads=threads)
        root = Path(path)
        if not root.is_dir():
            raise HeronError(f"{path}: index directory does not exist")
        from heron.indexing.segments import is_segmented

        if is_segmented(root):
            return cls._open_segmented(root, device=device, threads=threads)
        bundle = read_bundle(root)
        if bundle is None:
            name = root.name if MEMBER_NAME.match(root.name) else "index"
            return cls(root, {name: Member(name, root, {})}, name, device=device, threads=threads)
        members = {name: Member(name, root / entry.get("path", name), dict(entry.get("search") or {}))
                   for name, entry in bundle["indexes"].items()}
        return cls(root, members, bundle.get("default") or next(iter(members)),
                   (bundle.get("fusion") or {}).get("method", "rrf"), bundle, device, threads)

    @classmethod
    def _open_segmented(cls, root: Path, snapshot=None, *, device: str | None = "auto",
                        threads: int | None = None) -> Index:
        """An Index over one commit of the segmented index at ``root`` (the latest, or ``snapshot``)."""
        from heron.indexing.segments import SegmentedIndex

        snap = snapshot if snapshot is not None else SegmentedIndex.open(root)
        bundle = snap.bundle_manifest() if snap.layout == "bundle" else None
        if bundle is None:
            name = root.name if MEMBER_NAME.match(root.name) else "index"
            index = cls(root, {name: Member(name, root, {}, snap.members[0])}, name, device=device, threads=threads)
        else:
            members = {name: Member(name, root, dict(entry.get("search") or {}), name)
                       for name, entry in bundle["indexes"].items()}
            index = cls(root, members, bundle.get("default") or next(iter(members)),
                        (bundle.get("fusion") or {}).get("method", "rrf"), bundle, device, threads)
        index.snapshot = snap
        return index

    @classmethod
    def _open_milvus(cls, address, *, device: str | None = "auto", threads: int | None = None) -> Index:
        """An Index over an exported Milvus collection (every member, or the one the address names)."""
        from heron.indexing.milvus_index import MilvusCollection
        from heron.indexing.milvus_store import parse_address

        parsed = parse_address(address)
        collection = MilvusCollection.open(parsed)
        names = [parsed.member] if parsed.member else collection.members
        members = {}
        for name in names:
            member = collection.member(name)
            members[name] = Member(name, collection.cache_folder(name), dict(member.spec.get("search") or {}),
                                   index=member)
        default = collection.default if collection.default in members or "+" in collection.default else names[0]
        if any(part not in members for part in default.split("+")):
            default = names[0]
        index = cls(str(collection.address), members, default, collection.fusion, {}, device, threads)
        index.milvus = collection
        return index

    @property
    def generation(self) -> int | None:
        """The generation of the commit searched (None for a classic, write-once index)."""
        snap = self.snapshot
        return None if snap is None else snap.generation

    @property
    def retrievers(self) -> list[str]:
        """Member names, in bundle order."""
        return list(self.members)

    def load(self, prf: str | None = None) -> Index:
        """Open every member (query encoders loaded once) and the document store now, so no request pays
        for it; with ``prf``, also the feedback wrapper of every member that supports it."""
        for name in self.members:
            self.retriever(name)
            if prf is not None:
                try:
                    self.retriever(name, prf)
                except QueryError:
                    pass  # e.g. a multi-vector member: a prf request on it gets a 400
        if self.snapshot is None and any(self.retriever(n).index.docstore_dir is not None for n in self.members):
            self._documents()
        return self

    def warm_up(self) -> Index:
        """A few searches per member (queries of several lengths), so compiled kernels and the encoders'
        per-shape caches are ready before the first request."""
        words = "warm up the query encoders and the search kernels of every member".split()
        for name in self.members:
            for n in (1, 3, 6, 12, 24):
                self.search(" ".join(words[i % len(words)] for i in range(n)), k=1, retriever=name)
        return self

    def retriever(self, name: str, prf: str | None = None):
        """The opened :class:`~heron.retrieval.base.IndexRetriever` of member ``name`` (with ``prf`` applied)."""
        member = self.members.get(name)
        if member is None:
            raise NotFoundError(f"unknown retriever {name!r} (this index has: {', '.join(self.members)}; fuse "
                                f"them with '+')")
        key = (name, prf)
        opened = self._opened.get(key)
        if opened is not None:
            return opened
        with self._lock:
            if key not in self._opened:
                if prf is None and member.index is not None:
                    from heron.retrieval import open_member_retriever

                    self._opened[key] = open_member_retriever(member.index, device=self.device, threads=self.threads,
                                                              **member.search)
                elif prf is None and self.snapshot is not None:
                    from heron.retrieval import open_member_retriever

                    self._opened[key] = open_member_retriever(self.snapshot.member(member.source), device=self.device,
                                                              threads=self.threads, **member.search)
                elif prf is None:
                    from heron.retrieval import open_index_retriever

                    self._opened[key] = open_index_retriever(member.path, device=self.device, threads=self.threads,
                                                             **member.search)
                else:
                    self._opened[key] = _with_prf(self.retriever(name), prf)
            return self._opened[key]

    def describe(self) -> dict:
        """Name, path, members and their index manifests' summaries (what ``GET /v1/indexes`` shows)."""
        out = {"path": str(self.path), "retrievers": self.retrievers, "default": self.default,
               "fusion": self.fusion, "members": {}}
        snap = self.snapshot
        if snap is not None:
            out["generation"] = snap.generation
            out["segments"] = snap.describe()
        for name, member in self.members.items():
            from heron.indexing.registry import open_index

            opened = self._opened.get((name, None))  # an opened member describes itself; else open its index only
            if member.index is not None:
                index = member.index
            elif snap is not None:
                index = snap.member(member.source)
            else:
                index = opened.index if opened is not None else open_index(member.path)
            out["members"][name] = {"path": str(member.path), "search": member.search, **index.describe()}
        if self.milvus is not None:
            out["milvus"] = self.milvus.describe()
        if self.manifest:
            out["bundle"] = {k: self.manifest.get(k) for k in ("format", "format_version", "dataset", "config",
                                                              "models", "created")}
        return out

    # -- searching ----------------------------------------------------------------------------------
    def parse_retriever(self, retriever: str | None) -> list[str]:
        """Member names of a retriever spec (``None`` = the default; ``a+b`` = fused)."""
        spec = self.default if retriever is None else str(retriever).strip()
        parts = [p.strip() for p in spec.split("+")]
        if any(not p for p in parts):
            raise QueryError(f"retriever {spec!r}: empty member in a '+' fusion")
        for part in parts:
            if part not in self.members:
                raise NotFoundError(f"unknown retriever {part!r} (this index has: {', '.join(self.members)}; fuse "
                                    f"them with '+')")
        if len(set(parts)) != len(parts):
            raise QueryError(f"retriever {spec!r}: a member appears twice")
        return parts

    def search(self, query: str | None = None, k: int = 10, *, retriever: str | None = None,
               fusion: str | None = None, fusion_weights: Sequence[float] | None = None,
               prf: str | None = None, vector=None, allow: Sequence[str] | None = None,
               fields: bool = False) -> list[Hit]:
        """Top-``k`` hits for one query text (or one precomputed ``vector`` in a single member's space:
        ``{term: weight}`` for a sparse index, a list of floats for a dense one, a list of token vectors
        for a multi-vector one). ``allow``: rank only these document ids. ``fields``: add title and text."""
        if vector is not None:
            if query is not None:
                raise QueryError("give a query text or a vector, not both")
            return self._search(None, [vector], k, retriever, fusion, fusion_weights, prf, allow, fields)[0]
        return self.search_batch([query], k, retriever=retriever, fusion=fusion, fusion_weights=fusion_weights,
                                 prf=prf, allow=allow, fields=fields)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, retriever: str | None = None,
                     fusion: str | None = None, fusion_weights: Sequence[float] | None = None,
                     prf: str | None = None, allow: Sequence[str] | None = None,
                     fields: bool = False) -> list[list[Hit]]:
        """:meth:`search` for many query texts at once (each member encodes them in one batch)."""
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of query texts")
        texts = []
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise QueryError(f"query {i}: empty or not text; give some text to search for")
            texts.append(q)
        return self._search(texts, None, k, retriever, fusion, fusion_weights, prf, allow, fields)

    def _search(self, texts, vectors, k, retriever, fusion, fusion_weights, prf, allow, fields):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be an integer between 1 and {MAX_K}, not {k!r}")
        names = self.parse_retriever(retriever)
        snap = self.snapshot  # titles come from the commit searched, even if a refresh swaps it meanwhile
        if allow is not None:
            if isinstance(allow, str):
                raise QueryError("allow must be a list of document ids")
            allow = list(allow)
            if not all(isinstance(d, str) for d in allow):
                raise QueryError("allow must be a list of document ids")
        count = len(texts) if texts is not None else len(vectors)
        if count * k > MAX_TOTAL_HITS:
            raise QueryError(f"{count} queries × k={k} asks for more than {MAX_TOTAL_HITS} hits in one request")
        if vectors is not None and prf is not None:
            raise QueryError("pseudo-relevance feedback starts from a query text; send the text, not a vector")
        if len(names) == 1:
            if fusion_weights is not None:
                raise QueryError("fusion weights need a fused retriever (members joined by '+')")
            ranked = self._member_search(names[0], texts, vectors, k, prf, allow)
        else:
            if vectors is not None:
                raise QueryError("a precomputed vector lives in one member's space: name a single retriever")
            ranked = self._fused(names, texts, k, fusion or self.fusion, fusion_weights, prf, allow)
        return [self._hits(ids, scores, fields, snap) for ids, scores in ranked]

    def _member_search(self, name, texts, vectors, k, prf, allow):
        r = self.retriever(name, prf)
        try:
            if vectors is None:
                return r.search(texts, k=k, allow=allow)
            base = getattr(r, "base", r)  # a feedback wrapper searches its base retriever's index
            try:
                checked = base.index.check_queries(vectors)
            except QueryError as exc:
                raise QueryError(f"{name} is {exc}") from None
            return r.search_vectors(checked, k=k, allow=allow)
        except (QueryError, IntegrityError):  # a damaged file is never a mistake of the request
            raise
        except HeronError as exc:
            if prf is None and allow is None:
                raise
            raise QueryError(str(exc)) from None  # feedback or a filter this index cannot serve

    def _fused(self, names, texts, k, method, weights, prf, allow):
        from heron.retrieval.fusion import FUSIONS, fuse, ranked
        from heron.retrieval.options import MAX_WEIGHT

        if method not in FUSIONS:
            raise QueryError(f"unknown fusion {method!r} (choose from {', '.join(FUSIONS)})")
        if weights is not None:
            weights = list(weights)
            if len(weights) != len(names) or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                                     and 0 <= w <= MAX_WEIGHT for w in weights):
                raise QueryError(f"fusion weights: give {len(names)} numbers in [0, {MAX_WEIGHT:g}], one per member")
        depth = max(k, FUSION_DEPTH)
        per_member = [self._member_search(n, texts, None, depth, prf, allow) for n in names]
        out = []
        for i in range(len(texts)):
            runs = [{"q": dict(zip(m[i][0], map(float, m[i][1])))} for m in per_member]
            fused = fuse(runs, method, weights, depth=k)["q"]
            ids = ranked(fused)[:k]
            out.append((ids, np.asarray([fused[d] for d in ids], dtype=np.float32)))
        return out

    def _hits(self, ids, scores, fields: bool, snap=None) -> list[Hit]:
        hits = [Hit(d, float(s), rank) for rank, (d, s) in enumerate(zip(ids, scores), start=1)]
        if fields and hits and snap is not None:
            for hit in hits:
                row = snap.document(hit.doc_id) or {}
                hit.title, hit.text = row.get("title") or "", row.get("text") or ""
        elif fields and hits and self.milvus is not None:
            rows = self.milvus.documents([hit.doc_id for hit in hits])  # none when exported without --fields
            for hit in hits:
                if hit.doc_id in rows:
                    hit.title, hit.text = rows[hit.doc_id]["title"], rows[hit.doc_id]["text"]
        elif fields and hits:
            store, positions = self._documents()
            for hit in hits:
                row = store.get(positions[hit.doc_id])
                hit.title, hit.text = row.get("title") or "", row.get("text") or ""
        return hits

    def _documents(self):
        """The document store shared by the members (they index one corpus) and id → row."""
        if self._docstore is not None:
            return self._docstore
        with self._lock:
            if self._docstore is None:
                from heron.indexing.docstore import DocStore

                for name in self.members:
                    r = self.retriever(name)
                    if r.index.docstore_dir is not None:
                        store = DocStore(r.index.docstore_dir)
                        with open(store.folder / "docs.jsonl", encoding="utf-8") as handle:
                            positions = {json.loads(line)["id"]: i for i, line in enumerate(handle)}
                        self._docstore = (store, positions)
                        break
                else:
                    raise HeronError(f"{self.path}: no member holds a document store (docstore/)")
            return self._docstore

    # -- changing the index ----------------------------------------------------------------------------
    def add(self, documents, *, upsert: bool = False, progress: bool = False) -> int:
        """Encode ``documents`` (a BEIR ``corpus.jsonl`` path, or ``{"_id", "title", "text"}`` dicts) with every
        member's own encoder into a new segment, pending until :meth:`commit`; returns how many. An id
        already in the index is an error unless ``upsert`` (its older copy is then deleted). The first change
        converts a classic index to a segmented one in place and takes the index's write lock."""
        from heron.build.segment import build_segment
        from heron.storage import scratch

        docs = self.check_add(documents, upsert=upsert)  # fails before anything is converted, locked or encoded
        with self._write_lock:
            fresh = self._writer is None
            writer = self._open_writer()
            try:
                with scratch(self.path.parent / f"{self.path.name}.incoming", "add") as work:
                    built = build_segment(self.path, docs, work / "segment", progress=progress)
                    writer.add_segment(built, upsert=upsert)
            except BaseException:
                if fresh:  # nothing of this call is pending: do not keep the lock
                    self._close_writer()
                raise
        return len(docs)

    def check_add(self, documents, *, upsert: bool = False) -> list:
        """``documents`` read and checked for :meth:`add` (:func:`heron.build.segment.read_documents`); without
        ``upsert``, an id already in the searched commit is a one-line error too."""
        from heron.build.segment import read_documents

        self._refuse_milvus()
        docs = read_documents(documents)
        if not upsert:
            snap = self.snapshot
            if snap is not None:
                known = snap.global_positions()
            else:
                from heron.indexing.registry import open_index

                known = set(open_index(next(iter(self.members.values())).path).doc_ids)
            taken = [d.id for d in docs if d.id in known]
            if taken:
                raise HeronError(f"{self.path}: {len(taken)} document id(s) are in the index already (e.g. "
                                 f"{taken[0]!r}); add them with upsert to replace them")
        return docs

    def upsert(self, documents, *, progress: bool = False) -> int:
        """:meth:`add` where an id already in the index replaces its older copy (delete + add, one commit)."""
        return self.add(documents, upsert=True, progress=progress)

    def delete(self, doc_ids) -> int:
        """Mark the documents ``doc_ids`` deleted (pending until :meth:`commit`); returns how many were live."""
        if isinstance(doc_ids, str):
            raise HeronError("delete takes a list of document ids")
        ids = [str(d) for d in doc_ids]
        with self._write_lock:
            return int(self._open_writer().delete(ids))

    def commit(self) -> int:
        """Publish the pending changes as a new commit, release the write lock and search the new commit;
        returns its generation (the current one when nothing was pending)."""
        with self._write_lock:
            if self._writer is None:
                return self.generation or 0
            return self._publish(self._writer.commit)

    def _refuse_empty(self) -> None:
        """A commit may not delete every document: the index would keep no segment, so no encoder to encode
        new documents with (and nothing to search). The pending changes stay; roll them back or add some."""
        if int(self._writer.num_docs) == 0:
            raise HeronError(f"{self.path}: this commit would delete every document of the index (it would lose "
                             f"its encoders); keep at least one, or rebuild the index")

    def close(self) -> None:
        """Drop pending changes and release the write lock (:meth:`rollback`)."""
        self.rollback()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.rollback()

    def rollback(self) -> None:
        """Drop the pending changes and release the write lock."""
        with self._write_lock:
            self._close_writer()

    def merge(self, max_segments: int = 1) -> int:
        """Merge the segments down to at most ``max_segments`` (pending changes are committed with it);
        returns the new generation."""
        if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
            raise HeronError(f"max_segments must be a positive integer, not {max_segments!r}")
        with self._write_lock:
            writer = self._open_writer()
            return self._publish(lambda: writer.merge(max_segments))

    def _publish(self, step) -> int:
        """Run the writer's ``step`` (commit or merge; the write lock held), release the writer and search the
        new commit; on any failure the pending changes are dropped with the writer."""
        self._refuse_empty()
        try:
            generation = int(step())
        except BaseException:
            self._close_writer()
            raise
        self._close_writer(rollback=False)
        self.refresh()
        return generation

    def refresh(self) -> bool:
        """Search the newest commit if there is a newer one (made here or by another process); True if it
        changed. Searches running meanwhile finish on the commit they started with."""
        snap = self.snapshot
        if self.milvus is not None:
            return False  # the collection itself changes (heron export milvus --sync): searches see it at once
        if snap is None:
            from heron.indexing.segments import is_segmented

            if not is_segmented(self.path):
                return False
            with self._write_lock:  # converted by another process: search its commit from now on
                if self.snapshot is None:
                    self._adopt_segmented()
            return True
        newer = snap.refresh()
        if newer is None:
            return False
        with self._lock:
            if self.snapshot is not snap and self.snapshot.generation >= newer.generation:
                return False  # another thread installed it (or a newer one) first
            self._install(newer)
        return True

    def _install(self, snap) -> None:
        """Search ``snap`` from now on: each opened member's retriever is rebound to the new commit's member
        (its query encoder kept: every segment of a member shares it), feedback wrappers reopened lazily."""
        opened = {}
        for (name, prf), retriever in list(self._opened.items()):
            if prf is None:
                member = self.members[name]
                opened[(name, None)] = _rebind(retriever, snap.member(member.source))
        self._opened, self.snapshot, self._docstore = opened, snap, None

    def _open_writer(self):
        """The index's writer (converting a classic index first), held until commit, merge or rollback."""
        if self._writer is not None:
            return self._writer
        self._refuse_milvus()
        from heron.indexing.segments import IndexWriter, convert_to_segmented, is_segmented

        try:
            if self.snapshot is None:
                if not is_segmented(self.path):  # (another writer may have converted it since it was opened)
                    convert_to_segmented(self.path)
                self._adopt_segmented()
            self._writer = IndexWriter(self.path)
        except HeronError as exc:
            if "another build of this" in str(exc):  # heron.storage.build_lock: the lock is held elsewhere
                raise IndexBusy(str(exc)) from None
            raise
        return self._writer

    def _refuse_milvus(self) -> None:
        if self.milvus is not None:
            raise HeronError(f"{self.path}: a Milvus collection is searched here, not changed; change the heron index "
                             f"and run heron export milvus --sync")

    def _adopt_segmented(self) -> None:
        """This classic index was converted to a segmented one in place: search its latest commit from now on
        (members reopened on first use)."""
        converted = Index._open_segmented(self.path, device=self.device, threads=self.threads)
        with self._lock:
            for name, member in self.members.items():
                member.path, member.source = self.path, converted.members[name].source
            self._opened, self.snapshot, self._docstore = {}, converted.snapshot, None

    def _close_writer(self, rollback: bool = True) -> None:
        """Release the write lock, dropping pending changes unless they were just committed."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            if rollback:
                writer.rollback()
        finally:
            writer.close()


def _rebind(retriever, index):
    """A copy of ``retriever`` searching ``index`` (a newer commit's member), its encoder shared."""
    import copy

    rebound = copy.copy(retriever)
    rebound.__dict__.pop("_encoded", None)
    rebound.index = index  # search options (ef_search, nprobe, mode …) go with every search_batch call
    return rebound


def _with_prf(retriever, spec: str):
    try:
        from heron.retrieval.prf import with_prf
    except ImportError:  # pragma: no cover - PRF ships with heron.retrieval.prf
        raise QueryError("pseudo-relevance feedback is not available in this heron") from None
    try:
        return with_prf(retriever, spec)
    except (QueryError, IntegrityError):
        raise
    except HeronError as exc:
        raise QueryError(str(exc)) from None


__all__ = ["Hit", "Index", "IndexBusy", "MAX_K"]
