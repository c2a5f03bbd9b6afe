"""A heron index or bundle served from a Milvus collection (written by ``heron export milvus``,
:mod:`heron.build.export_milvus`).

``MilvusCollection.open("milvus://…")`` needs nothing but the address (and a token where the server wants one):
heron's metadata (members, kinds, encoder descriptions, default retriever, fusion, dimensions, what was exported)
and every member's query-encoder files live in the companion collection (:mod:`heron.indexing.milvus_store`).
Opening checks that the export finished, that each member's vector field has the recorded type and dimension,
and that the collection holds the recorded number of documents. A member's encoder files are fetched on first
use, checked (size and sha256 of the transfer, then xxh3 against the exported index's manifest) and cached under
heron's cache dir (``milvus/encoders/<checksum>/``, published atomically), so later opens only re-hash them.

:class:`MilvusIndex` is one member as a :class:`~heron.indexing.base.SearchIndex` (``kind`` ``milvus``,
``space`` ``sparse`` or ``dense``); :mod:`heron.retrieval.milvus` encodes queries with the member's own encoder
and :class:`heron.Index` fuses members and applies PRF on top, as for an index directory.

Search is Milvus's: a sparse member's inverted index is exact (inner product over every posting, no pruning:
``drop_ratio_search`` 0), so results equal heron's exact search up to float rounding and the order of ties; a
dense member's HNSW is approximate (``ef_search`` as for FAISS HNSW, at least ``k``). An allow-list becomes a
Milvus filter (``id in [...]``) applied during the search: exact for a sparse member.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError, IntegrityError, QueryError
from heron.indexing.base import MAX_WEIGHT, SearchIndex, dense_queries
from heron.indexing.milvus_store import (
    PRIMARY,
    MilvusAddress,
    connect,
    load,
    milvus_errors,
    parse_address,
    read_blob,
    read_json_blob,
)

EXPORT_FORMAT = "heron-milvus-export"
EXPORT_VERSION = 1
#: the marker file of a cached encoder folder (its files' sizes and xxh3, checked at every open)
CACHE_MARKER = "heron-milvus-encoder.json"
#: queries per Milvus search request
QUERY_CHUNK = 256
#: HNSW ``ef`` when the member records none
DEFAULT_EF = 128


def encoder_cache_root() -> Path:
    from heron.settings import cache_dir

    return cache_dir() / "milvus" / "encoders"


def _encoder_key(files: dict) -> str:
    import hashlib

    listing = json.dumps({rel: entry["sha256"] for rel, entry in sorted(files.items())}, sort_keys=True)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()[:32]


def verify_cached_encoder(folder: str | Path) -> None:
    """Every file of a cached encoder folder hashed against its marker (IntegrityError on a mismatch)."""
    from heron.storage import check_tree, read_json

    folder = Path(folder)
    files = read_json(folder / CACHE_MARKER, "cached encoder listing", stored=True)
    if not isinstance(files, dict):
        raise IntegrityError(folder / CACHE_MARKER, "malformed listing; remove the folder to fetch it again")
    check_tree(folder, files, "full", hint="remove the folder to fetch it again")


def is_cached_encoder(folder: str | Path) -> bool:
    """True for a folder holding a query encoder fetched from Milvus (what a served member's path is)."""
    return (Path(folder) / CACHE_MARKER).is_file()


class MilvusCollection:
    """An exported collection, opened and checked (module docstring); ``member(name)`` gives its members."""

    def __init__(self, address: MilvusAddress, client, meta: dict, token: str | None):
        self.address, self.client, self.meta, self._token = address, client, meta, token
        self._members: dict[str, MilvusIndex] = {}

    @classmethod
    def open(cls, address: str | MilvusAddress, token: str | None = None) -> MilvusCollection:
        """Open and check the collection at ``address``; one-line errors for a missing collection, one not
        written by heron, an unfinished export, a field of the wrong type or dimension, a wrong count."""
        addr = address if isinstance(address, MilvusAddress) else parse_address(address)
        addr = addr.collection_address()
        client = connect(addr, token)
        with milvus_errors(addr, "list collections"):
            exists, companion = client.has_collection(addr.collection), client.has_collection(addr.companion)
        if not exists:
            raise HeronError(f"{addr}: no collection {addr.collection!r} at {addr.uri}; export an index into it "
                             f"with heron export milvus")
        if not companion:
            raise HeronError(f"{addr}: collection {addr.collection!r} was not written by heron export milvus (no "
                             f"{addr.companion} beside it)")
        load(client, addr, addr.companion)
        meta = read_json_blob(client, addr, "meta")
        check_meta(meta, addr)
        opened = cls(addr, client, meta, token)
        check_schema(client, addr, meta)
        load(client, addr, addr.collection)
        count = opened.count()
        if count != int(meta["num_docs"]):
            raise IntegrityError(f"{addr}", f"holds {count} documents, the export recorded {meta['num_docs']} (an "
                                            f"export or sync running or interrupted?); rerun heron export milvus")
        return opened

    # -- metadata ------------------------------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        """Member names in the bundle's order."""
        order = [n for n in self.meta.get("order") or [] if n in self.meta["members"]]
        return order + [n for n in self.meta["members"] if n not in order]

    @property
    def default(self) -> str:
        return str(self.meta.get("default") or self.members[0])

    @property
    def fusion(self) -> str:
        return str(self.meta.get("fusion") or "rrf")

    @property
    def num_docs(self) -> int:
        return int(self.meta["num_docs"])

    def count(self) -> int:
        """The number of documents in the collection now."""
        with milvus_errors(self.address, "count the documents"):
            rows = self.client.query(self.address.collection, filter="", output_fields=["count(*)"],
                                     consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def member(self, name: str) -> MilvusIndex:
        """The :class:`MilvusIndex` of member ``name``."""
        if name not in self.meta["members"]:
            raise HeronError(f"{self.address}: no member {name!r} (members: {', '.join(self.members)})")
        if name not in self._members:
            self._members[name] = MilvusIndex(self, name, self.meta["members"][name])
        return self._members[name]

    def documents(self, doc_ids: list[str]) -> dict[str, dict]:
        """``{id: {"title", "text"}}`` of the documents ``doc_ids``; empty when the collection was exported without
        them (``heron export milvus --fields``): hits then carry no title and text."""
        if not self.meta.get("fields"):
            return {}
        rows = self.query_ids(doc_ids, ["title", "text"])
        return {d: {"title": r.get("title") or "", "text": r.get("text") or ""} for d, r in rows.items()}

    def query_ids(self, doc_ids: list[str], fields: list[str]) -> dict[str, dict]:
        """``{id: row}`` of ``fields`` for the documents ``doc_ids`` present in the collection."""
        out: dict[str, dict] = {}
        with milvus_errors(self.address, "read documents"):
            for start in range(0, len(doc_ids), 1000):
                chunk = [str(d) for d in doc_ids[start:start + 1000]]
                for row in self.client.query(self.address.collection, filter=f"{PRIMARY} in {json.dumps(chunk)}",
                                             output_fields=[PRIMARY, *fields], consistency_level="Strong"):
                    out[str(row[PRIMARY])] = row
        return out

    def cache_folder(self, name: str) -> Path:
        """Where member ``name``'s query encoder is cached (``encoder/`` and the marker; maybe not fetched yet)."""
        return encoder_cache_root() / _encoder_key(self.meta["members"][name]["encoder_files"])

    def encoder_dir(self, name: str) -> Path:
        """The query encoder folder of member ``name``, fetched into the cache on first use (checked)."""
        from heron.storage import describe_file, staged, write_json_atomic

        files = self.meta["members"][name]["encoder_files"]
        root = self.cache_folder(name)
        if is_cached_encoder(root):
            try:
                verify_cached_encoder(root)
                return root / "encoder"
            except (HeronError, OSError):
                pass  # damaged or partial: fetched again below, published over it
        root.parent.mkdir(parents=True, exist_ok=True)
        with staged(root) as staging:
            listing = {}
            for rel, entry in sorted(files.items()):
                data = read_blob(self.client, self.address, f"file:{entry['sha256']}", entry)
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                listing[rel] = describe_file(target)
                if entry.get("xxh3_128") and listing[rel]["xxh3_128"] != entry["xxh3_128"]:
                    raise IntegrityError(f"{self.address}", f"encoder file {rel} of member {name!r} differs from the "
                                                            f"exported index's manifest; export the index again")
            write_json_atomic(staging / CACHE_MARKER, listing, durable=False)
        return root / "encoder"

    def vocab(self, name: str) -> list[str]:
        """The vocabulary (term strings by id) of sparse member ``name``."""
        spec = self.meta["members"][name]
        data = read_blob(self.client, self.address, f"vocab:{name}", spec["vocab"])
        vocab = json.loads(gzip.decompress(data).decode("utf-8"))
        if not isinstance(vocab, list) or len(vocab) != int(spec["dim"]):
            raise IntegrityError(f"{self.address}", f"the vocabulary of member {name!r} does not have {spec['dim']} "
                                                    f"terms; export the index again")
        return vocab

    def describe(self) -> dict:
        return {"address": str(self.address), "collection": self.address.collection, "num_docs": self.num_docs,
                "exported": self.meta.get("exported"), "fields": bool(self.meta.get("fields"))}


def check_meta(meta, address: MilvusAddress) -> None:
    """The metadata read from the companion collection is heron's, of this version, and finished."""
    if meta is None:
        raise HeronError(f"{address}: no heron metadata in {address.companion} (an export that never started); "
                         f"run heron export milvus")
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise IntegrityError(f"{address}", f"{address.companion} holds no heron export metadata")
    if meta.get("format_version") != EXPORT_VERSION:
        raise HeronError(f"{address}: exported by another heron (metadata version {meta.get('format_version')}, this "
                         f"heron reads {EXPORT_VERSION}); export the index again")
    if meta.get("state") != "complete":
        raise HeronError(f"{address}: the export into this collection has not finished; rerun heron export milvus "
                         f"(it resumes)")
    members = meta.get("members")
    if not isinstance(members, dict) or not members:
        raise IntegrityError(f"{address}", "the heron metadata lists no members; export the index again")


def schema_fields(client, address: MilvusAddress) -> dict[str, dict]:
    """``field name → {"type": DataType name, "dim": int | None}`` of the collection."""
    with milvus_errors(address, "describe the collection"):
        info = client.describe_collection(address.collection)
    out = {}
    for field in info.get("fields", []):
        kind = field.get("type")
        params = field.get("params") or {}
        out[str(field["name"])] = {"type": getattr(kind, "name", str(kind)),
                                   "dim": int(params["dim"]) if "dim" in params else None}
    return out


def check_schema(client, address: MilvusAddress, meta: dict) -> None:
    """Every member's vector field exists with the recorded type and dimension (a one-line error naming the
    field otherwise)."""
    fields = schema_fields(client, address)
    if PRIMARY not in fields or fields[PRIMARY]["type"] != "VARCHAR":
        raise HeronError(f"{address}: the collection has no VARCHAR primary key {PRIMARY!r}; it was not written by "
                         f"heron export milvus")
    for name, spec in meta["members"].items():
        want = "SPARSE_FLOAT_VECTOR" if spec["space"] == "sparse" else "FLOAT_VECTOR"
        found = fields.get(spec["field"])
        if found is None:
            raise HeronError(f"{address}: member {name!r} has no vector field {spec['field']!r} in the collection")
        if found["type"] != want:
            raise HeronError(f"{address}: field {spec['field']!r} is {found['type']}, member {name!r} needs {want}")
        if want == "FLOAT_VECTOR" and found["dim"] != int(spec["dim"]):
            raise HeronError(f"{address}: field {spec['field']!r} has dimension {found['dim']}, member {name!r} has "
                             f"{spec['dim']}")


class MilvusIndex(SearchIndex):
    """One member of an exported collection (module docstring). Search options: ``mode`` (``exact`` /
    ``taat``: both exact) for a sparse member, ``ef_search`` for a dense one, and ``threads`` (ignored: Milvus
    decides)."""

    format_name = "heron-milvus-member"
    kind = "milvus"

    def __init__(self, collection: MilvusCollection, name: str, spec: dict):
        self.collection, self.name, self.spec = collection, name, spec
        self.path = f"{collection.address}/{name}"
        self.space = str(spec["space"])
        self.field = str(spec["field"])
        self.manifest = {"format": self.format_name, "format_version": EXPORT_VERSION,
                         "num_docs": collection.num_docs, "encoder": spec.get("encoder") or {}}
        self.search_options = frozenset({"mode", "threads"} if self.space == "sparse" else {"ef_search", "threads"})
        self._vocab: list[str] | None = None
        self._term_ids: dict[str, int] | None = None
        self._handles: dict[str, int] = {}
        self._handle_ids: list[str] = []
        self._encoder_dir: Path | None = None

    @classmethod
    def open(cls, path, verify: bool = False, **options) -> MilvusIndex:
        """Open the member named by ``path`` (``milvus://…/COLLECTION/MEMBER``, or a one-member collection)."""
        address = parse_address(path)
        collection = MilvusCollection.open(address)
        name = address.member or (collection.members[0] if len(collection.members) == 1 else None)
        if name is None:
            raise HeronError(f"{address}: a bundle of {', '.join(collection.members)}; name one member "
                             f"(…/{address.collection}/MEMBER)")
        return collection.member(name)

    # -- metadata ------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.spec["dim"])

    @property
    def vocab_size(self) -> int:
        """The vocabulary size of a sparse member (its dimension)."""
        return self.dim

    @property
    def encoder_dir(self) -> Path:
        """The member's query encoder, fetched and cached on first use."""
        if self._encoder_dir is None:
            self._encoder_dir = self.collection.encoder_dir(self.name)
        return self._encoder_dir

    @property
    def docstore_dir(self) -> None:
        return None

    @property
    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = self.collection.vocab(self.name)
        return self._vocab

    @property
    def term_ids(self) -> dict[str, int]:
        if self._term_ids is None:
            self._term_ids = {t: i for i, t in enumerate(self.vocab)}
        return self._term_ids

    @property
    def doc_ids(self) -> list[str]:
        raise HeronError(f"{self.path}: a Milvus collection does not list its document ids here; query the collection")

    def describe(self) -> dict:
        return {**super().describe(), "space": self.space, "dim": self.dim,
                "milvus": {"address": str(self.collection.address), "field": self.field,
                           "index": self.spec.get("milvus_index"), "exported_from": self.spec.get("source_kind")}}

    # -- documents: handles stand for positions (PRF asks for vectors by position) --------------------------
    def doc_index(self, doc_id: str) -> int:
        """A handle for document ``doc_id`` that :meth:`vectors` takes (numbered on first use, per opened index)."""
        handle = self._handles.get(doc_id)
        if handle is None:
            handle = self._handles[doc_id] = len(self._handle_ids)
            self._handle_ids.append(doc_id)
        return handle

    def positions_of(self, doc_ids) -> np.ndarray:
        return np.array(sorted({self.doc_index(d) for d in doc_ids}), dtype=np.int64)

    def vectors(self, positions) -> sp.csr_matrix | np.ndarray:
        """The stored vectors of the documents with handles ``positions`` (:meth:`doc_index`)."""
        ids = [self._handle_ids[int(p)] for p in positions]
        rows = self.collection.query_ids(ids, [self.field])
        missing = [d for d in ids if d not in rows]
        if missing:
            raise HeronError(f"{self.path}: document {missing[0]!r} is not in the collection")
        if self.space == "dense":
            out = np.zeros((len(ids), self.dim), np.float32)
            for i, d in enumerate(ids):
                vector = np.asarray(rows[d][self.field], dtype=np.float32)
                if vector.shape != (self.dim,):
                    raise IntegrityError(self.path, f"document {d!r} has a vector of {vector.size} dimensions, the "
                                                    f"member {self.dim}")
                out[i] = vector
            return out
        indptr, indices, data = [0], [], []
        for d in ids:
            entries = _sparse_entries(rows[d][self.field])
            for term, weight in sorted(entries):
                if term < self.dim:  # the placeholder of an empty document (milvus_store) is not a term
                    indices.append(term)
                    data.append(weight)
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int32), np.asarray(indptr)),
                             shape=(len(ids), self.dim))

    # -- searching -----------------------------------------------------------------------------------------
    def check_queries(self, raw: list):
        if self.space == "sparse":
            out = []
            for v in raw:
                if not isinstance(v, dict) or not all(isinstance(t, str) and isinstance(w, (int, float)) and
                                                      not isinstance(w, bool) and math.isfinite(w) and
                                                      0 <= w <= MAX_WEIGHT for t, w in v.items()):
                    raise QueryError(f"a sparse index: the vector must map terms to weights in [0, {MAX_WEIGHT:g}], "
                                     f"e.g. {{\"coffee\": 1.2}}")
                out.append({t: float(w) for t, w in v.items()})
            return out
        return dense_queries(raw, self.dim)

    def search_batch(self, queries, k: int = 10, allow=None, mode: str | None = None, threads: int | None = None,
                     ef_search: int | None = None):
        """Top-``k`` ids and float32 scores per query: a ``Q × V`` sparse matrix / ``{term: weight}`` dicts /
        ``(terms, weights)`` pairs for a sparse member, a ``Q × D`` array for a dense one."""
        if mode not in (None, "exact", "taat"):
            raise HeronError(f"{self.path}: Milvus searches a sparse member exactly; mode {mode!r} does not apply")
        if self.space == "sparse":
            data = self._sparse_queries(queries)
            params = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}
        else:
            array = np.atleast_2d(np.asarray(queries, dtype=np.float32))
            if array.shape[1] != self.dim:
                raise HeronError(f"{self.path}: queries have {array.shape[1]} dimensions, the member has {self.dim}")
            data = [row.tolist() for row in array]
            ef = int(ef_search or self.spec.get("search", {}).get("ef_search") or DEFAULT_EF)
            params = {"metric_type": "IP", "params": {"ef": max(ef, int(k))}}
        empty = ([], np.zeros(0, np.float32))
        results = [empty] * len(data)
        expr = ""
        if allow is not None:
            allowed = [str(d) for d in allow]
            if not allowed:
                return [r[0] for r in results], [r[1] for r in results]
            expr = f"{PRIMARY} in {json.dumps(allowed)}"
        todo = [i for i, q in enumerate(data) if self.space == "dense" or q]  # a query of no term finds nothing
        for start in range(0, len(todo), QUERY_CHUNK):
            chunk = todo[start:start + QUERY_CHUNK]
            with milvus_errors(self.collection.address, "search"):
                found = self.collection.client.search(
                    self.collection.address.collection, data=[data[i] for i in chunk], anns_field=self.field,
                    limit=int(k), search_params=params, filter=expr, output_fields=[PRIMARY],
                    consistency_level="Strong")
            if len(found) != len(chunk):
                raise IntegrityError(self.path, f"Milvus answered {len(found)} result lists for {len(chunk)} queries")
            for i, hits in zip(chunk, found):
                results[i] = self._checked_hits(hits, int(k))
        return [r[0] for r in results], [r[1] for r in results]

    def _checked_hits(self, hits, k: int) -> tuple[list[str], np.ndarray]:
        ids = [str(h["id"]) for h in hits]
        scores = np.asarray([float(h["distance"]) for h in hits], dtype=np.float32)
        if len(ids) > k or len(set(ids)) != len(ids) or not np.all(np.isfinite(scores)):
            raise IntegrityError(self.path, "Milvus returned more hits than asked, a document twice or a score that "
                                            "is not finite")
        if len(scores) > 1 and np.any(np.diff(scores) > 1e-5 * (1 + np.abs(scores[:-1]))):
            raise IntegrityError(self.path, "Milvus returned hits out of score order")
        return ids, scores

    def _sparse_queries(self, queries) -> list[dict[int, float]]:
        """Sparse queries as Milvus takes them: ``{term id: weight}`` (float32-rounded sums of repeated terms;
        unknown terms, out-of-range ids and zero weights dropped)."""
        from heron.indexing.inverted.index import query_pairs

        out = []
        for terms, weights in query_pairs(queries):
            if isinstance(terms, dict):
                terms, weights = list(terms.keys()), list(terms.values())
            terms = terms.tolist() if isinstance(terms, np.ndarray) else list(terms)
            weights = [1.0] * len(terms) if weights is None else np.asarray(weights, dtype=np.float64).tolist()
            if len(weights) != len(terms):
                raise ValueError(f"{len(terms)} query terms but {len(weights)} weights")
            if terms and isinstance(terms[0], str):
                lookup = self.term_ids
                terms = [lookup.get(t, -1) for t in terms]
            acc: dict[int, float] = {}
            for term, weight in zip(terms, weights):
                if not math.isfinite(weight) or weight < 0:
                    raise ValueError("query weights must be finite and non-negative")
                term = int(term)
                if 0 <= term < self.dim and weight > 0:
                    acc[term] = acc.get(term, 0.0) + weight
            out.append({t: float(np.float32(w)) for t, w in sorted(acc.items())})
        return out

    def verify(self) -> None:
        """The cached encoder files hashed again and the collection's document count checked."""
        verify_cached_encoder(self.encoder_dir.parent)
        count = self.collection.count()
        if count != self.num_docs:
            raise IntegrityError(self.path, f"holds {count} documents, the export recorded {self.num_docs}")


def _sparse_entries(value) -> list[tuple[int, float]]:
    """``(term, weight)`` pairs of a sparse vector as pymilvus returns it (a dict, or a one-row scipy matrix)."""
    if isinstance(value, dict):
        return [(int(t), float(w)) for t, w in value.items()]
    if sp.issparse(value):
        row = sp.csr_matrix(value)
        return list(zip(row.indices.tolist(), row.data.tolist()))
    raise IntegrityError("milvus", f"unexpected sparse vector of type {type(value).__name__}")


__all__ = ["CACHE_MARKER", "EXPORT_FORMAT", "EXPORT_VERSION", "MilvusCollection", "MilvusIndex", "is_cached_encoder",
           "verify_cached_encoder"]
