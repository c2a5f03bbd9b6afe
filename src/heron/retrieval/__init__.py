"""Retrieval: encoders turn text into vectors; retrievers turn queries into ranked runs.

``get_retriever(spec)`` gives the retriever behind ``heron eval --retriever SPEC``:

- a registered name (:data:`RETRIEVERS`): ``bm25``, ``bm25-lucene``, ``splade`` (splade-tiny on heron's
  inverted index), ``dense`` (MiniLM on FAISS Flat); the index-backed ones build an index of the
  dataset into heron's cache on first use;
- a path to an index built by ``heron build-index`` (inverted or FAISS);
- members joined by ``+`` (``splade+dense``, ``bm25+indexes/scifact-csr-k32``): their runs fused by
  ``fusion`` (``rrf`` or ``linear``, :mod:`heron.retrieval.fusion`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from heron.errors import HeronError
from heron.retrieval.base import Retriever, Run


def _bm25(**kw) -> Retriever:
    from heron.retrieval.bm25 import BM25Retriever

    return BM25Retriever(**kw)


def _bm25_lucene(**kw) -> Retriever:
    from heron.retrieval.bm25_lucene import LuceneBM25Retriever

    return LuceneBM25Retriever(**kw)


#: Builds a named retriever's index into the cache (``config`` mapping → index path). Building is the build
#: layer's job (:mod:`heron.build`, above this package): it registers itself here when imported, and so does
#: the command line, so that retrieval never imports the layer above it.
_index_builder: Callable[[dict], Path] | None = None


def set_index_builder(builder: Callable[[dict], Path]) -> None:
    """Register the function that builds a named retriever's index into the cache on first use."""
    global _index_builder
    _index_builder = builder


class CachedIndexRetriever(Retriever):
    """A named retriever backed by an index of the dataset that heron builds once into its cache."""

    def __init__(self, name: str, config: dict, **options):
        self.name, self.config, self.options = name, config, options

    def index_path(self, dataset) -> Path:
        from heron.settings import cache_dir

        return cache_dir() / "indexes" / f"{dataset.name}-{dataset.fingerprint()}" / self.name

    def for_dataset(self, dataset) -> Retriever:
        """The opened retriever over this dataset's cached index (built on first use, opened once per
        process: every CachedIndexRetriever of the same name and options shares it)."""
        from heron.storage import build_once

        path = self.index_path(dataset)
        if not path.is_dir() and _index_builder is None:
            raise HeronError(f"{self.name}: no index of {dataset.name} in the cache yet ({path}); import "
                             f"heron.build (or use the heron command) to build it on first use")

        def build() -> None:
            _note(f"building the {self.name} index of {dataset.name} into {path} (first use)")
            _index_builder({**self.config, "dataset": str(dataset.root), "output": str(path)})
            _note(f"built the {self.name} index of {dataset.name}")

        build_once(path, build, "cached index")  # another process building it: wait, then use what it built
        return _open_shared(path, self.options)

    def describe(self) -> dict:
        return {"name": self.name, "index_config": self.config}

    def retrieve(self, dataset, queries: dict[str, str], k: int = 1000) -> Run:
        return self.for_dataset(dataset).retrieve(dataset, queries, k=k)


def _cached(name: str, config: dict) -> Callable[..., Retriever]:
    return lambda **options: CachedIndexRetriever(name, config, **options)


#: retriever name → (factory, one-line description)
RETRIEVERS: dict[str, tuple[Callable[..., Retriever], str]] = {
    "bm25": (_bm25, "native BM25 (Lucene formula, k1=0.9 b=0.4) as sparse vectors, scored with scipy"),
    "bm25-lucene": (_bm25_lucene, "Lucene BM25 through Pyserini (needs the `lucene` extra)"),
    "splade": (_cached("splade", {"encoder": {"type": "splade", "model": "splade-tiny"}}),
               "splade-tiny on heron's inverted index (exact), built into the cache on first use"),
    "dense": (_cached("dense", {"encoder": {"type": "dense", "model": "minilm"}, "faiss": {"type": "flat"}}),
              "all-MiniLM-L6-v2 on FAISS Flat (exact inner product), built into the cache on first use"),
}


#: index kind (:attr:`heron.indexing.base.SearchIndex.kind`) → the retriever that serves it: module, class
RETRIEVER_FOR_KIND: dict[str, tuple[str, str]] = {
    "inverted": ("heron.retrieval.sparse", "SparseIndexRetriever"),
    "faiss": ("heron.retrieval.dense", "DenseIndexRetriever"),
    "multivector": ("heron.retrieval.multivector", "MultiVectorRetriever"),
    "milvus": ("heron.retrieval.milvus", "MilvusRetriever"),
}
#: options every index retriever takes besides its index's search options
_COMMON_OPTIONS = {"threads", "device"}


def open_index_retriever(path: str | os.PathLike, **options) -> Retriever:
    """The retriever for an index directory of any type (its manifest says which).

    ``options`` are the index type's search options (:attr:`~heron.indexing.base.SearchIndex.search_options`:
    ``mode``/``preset``/… for inverted indexes, ``ef_search``/``nprobe``/``truncate_dims`` for FAISS,
    ``candidates`` for multi-vector) plus ``threads`` and ``device``; ``None`` values are ignored and any
    other option is a one-line error.
    """
    import importlib

    from heron.indexing.milvus_store import is_milvus_address

    if is_milvus_address(path):  # a member of an exported Milvus collection (heron export milvus)
        from heron.indexing.milvus_index import MilvusIndex

        return open_member_retriever(MilvusIndex.open(path), **options)
    from heron.indexing.registry import index_type
    from heron.indexing.segments import SegmentedIndex, is_segmented

    if is_segmented(path):  # a segmented single index (heron index add): its latest commit's one member
        snapshot = SegmentedIndex.open(path)
        if len(snapshot.members) != 1:
            raise HeronError(f"{path}: a segmented bundle; open it with heron.Index (or name a member with -r)")
        return open_member_retriever(snapshot.member(snapshot.members[0]), **options)
    kind = index_type(path)
    options = {k: v for k, v in options.items() if v is not None}
    extra = sorted(set(options) - kind.search_options - _COMMON_OPTIONS)
    if extra:
        takes = ", ".join(sorted(kind.search_options))
        article = "an" if kind.kind[0] in "aeiou" else "a"
        verb = "does" if len(extra) == 1 else "do"
        raise HeronError(f"{path}: {', '.join(extra)} {verb} not apply to {article} {kind.kind} index (it takes "
                         f"{takes})")
    module, name = RETRIEVER_FOR_KIND[kind.kind]
    retriever_class = getattr(importlib.import_module(module), name)
    if kind.kind == "inverted":
        options.pop("device", None)  # the inverted index searches on the CPU
    return retriever_class(path, **options)


def open_member_retriever(index, **options) -> Retriever:
    """The retriever for an already opened :class:`~heron.indexing.base.SearchIndex` — e.g. one member of a
    segmented index's commit (:meth:`heron.indexing.segments.SegmentedIndex.member`), which searches every
    segment's live documents and carries the member's query encoder (``encoder`` / ``encoder_dir``).
    ``options`` as for :func:`open_index_retriever`."""
    import importlib

    options = {k: v for k, v in options.items() if v is not None}
    extra = sorted(set(options) - set(index.search_options) - _COMMON_OPTIONS)
    if extra:
        verb = "does" if len(extra) == 1 else "do"
        raise HeronError(f"{index.path}: {', '.join(extra)} {verb} not apply to a {index.kind} index (it takes "
                         f"{', '.join(sorted(index.search_options))})")
    if index.kind not in RETRIEVER_FOR_KIND:
        raise HeronError(f"{index.path}: no retriever serves a {index.kind} index")
    module, name = RETRIEVER_FOR_KIND[index.kind]
    if index.kind == "inverted":
        options.pop("device", None)
    return getattr(importlib.import_module(module), name)(index, **options)


def _note(message: str) -> None:
    """One line on stderr about a slow step (building a cached index)."""
    import sys

    print(f"heron: {message}", file=sys.stderr, flush=True)


#: retrievers shared within the process: one model load per index, one query encoding per query set
#: (see :func:`get_retriever`); keys: ``("name", name, options)`` and ``("index", path, identity, options)``
_SHARED: dict[tuple, Retriever] = {}


def clear_retriever_cache() -> None:
    """Forget the retrievers :func:`get_retriever` shares within the process (their models are freed
    once nothing else holds them)."""
    _SHARED.clear()


def _frozen(options: dict) -> tuple:
    items = []
    for key, value in sorted(options.items()):
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = tuple(sorted(value.items()))
        items.append((key, value))
    return tuple(items)


def _open_shared(path: str | os.PathLike, options: dict) -> Retriever:
    """:func:`open_index_retriever`, opened once per process for one index folder and options (an index
    rebuilt in place since, a new folder, is opened anew)."""
    path = Path(path)
    stat = path.stat()
    key = ("index", str(path.resolve()), (stat.st_ino, stat.st_mtime_ns),
           _frozen({k: v for k, v in options.items() if v is not None}))
    if key not in _SHARED:
        _SHARED[key] = open_index_retriever(path, **options)
    return _SHARED[key]


def get_retriever(name: str, fusion: str = "rrf", fusion_weights=None, rrf_k: float = 60.0, depth: int = 1000,
                  **options) -> Retriever:
    """The retriever for ``name`` (a registered name, an index path, or ``a+b+…`` fused).

    ``options`` go to every member that accepts them (:func:`accepted_options`: BM25's ``k1``/``b``,
    ``threads`` for index-backed members and bm25-lucene); unknown names raise a one-line HeronError.

    Within one process the same member (name or index folder, with the same options) is the same
    retriever object, in plain and fused specs alike (``-r splade -r splade+dense``): each model loads
    once, and an index retriever encodes a query set once (:meth:`~heron.retrieval.base.IndexRetriever.encode_cached`).
    :func:`clear_retriever_cache` forgets them.
    """
    parts = [p.strip() for p in name.split("+")]
    if len(parts) > 1:
        if any(not p for p in parts):
            raise HeronError(f"retriever '{name}': empty member in a '+' fusion")
        from heron.retrieval.fusion import FusedRetriever

        members = [get_retriever(p, **options) for p in parts]
        return FusedRetriever(members, fusion, fusion_weights, rrf_k=rrf_k, depth=depth)
    entry = RETRIEVERS.get(name)
    if entry is not None:
        accepted = accepted_options(name)
        chosen = {k: v for k, v in options.items() if k in accepted and v is not None}
        key = ("name", name, entry[0], _frozen(chosen))
        if key not in _SHARED:
            _SHARED[key] = entry[0](**chosen)
        return _SHARED[key]
    if Path(name).is_dir():
        return _open_shared(name, {k: v for k, v in options.items() if k in accepted_options(name)})
    raise HeronError(f"unknown retriever '{name}' (known: {', '.join(RETRIEVERS)}, an index directory, "
                     f"or members joined by '+')")


def accepted_options(member: str) -> frozenset[str]:
    """The options a retriever member (a registered name or an index folder) takes from :func:`get_retriever`:
    ``k1``/``b`` for bm25 and bm25-lucene, ``threads`` for bm25-lucene and every index-backed member (bm25
    scores with scipy, on one thread)."""
    if member == "bm25":
        return frozenset({"k1", "b"})
    if member == "bm25-lucene":
        return frozenset({"k1", "b", "threads"})
    return frozenset({"threads"})


def check_retriever_spec(name: str) -> None:
    """Validate a ``--retriever`` value without building anything (every member must be known)."""
    for part in name.split("+"):
        part = part.strip()
        if not part:
            raise HeronError(f"retriever '{name}': empty member in a '+' fusion")
        if part not in RETRIEVERS and not Path(part).is_dir():
            raise HeronError(f"unknown retriever '{part}' (known: {', '.join(RETRIEVERS)}, an index directory, "
                             f"or members joined by '+')")


__all__ = ["RETRIEVERS", "Retriever", "Run", "accepted_options", "check_retriever_spec", "clear_retriever_cache",
           "get_retriever", "open_index_retriever", "open_member_retriever", "set_index_builder"]
