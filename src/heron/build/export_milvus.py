"""``heron export milvus INDEX --uri URI --collection NAME``: a heron index or bundle into a Milvus collection
(layout: :mod:`heron.indexing.milvus_store`), and ``--sync`` after ``heron index add / delete``.

One procedure does both, bringing the collection to the index's current commit:

1. create the collection (or check that the existing one has this index's members, types and dimensions) and
   its companion; write the metadata with ``state: exporting`` and every member's query-encoder files (and
   vocabulary) as checked blobs;
2. upsert the live documents of every segment not exported yet, in batches (``BATCH`` documents), recording
   after each batch how far it got (the ``progress`` blob): a rerun after an interruption goes on from the last
   recorded batch, and upserts make a batch sent twice harmless — no duplicates. Segments are immutable, so
   one exported whole (named by its manifest's checksum) is never sent again; a classic (write-once) index is
   one segment, and stays the same one when its first change converts it to a segmented index;
3. delete every document of the collection that is not live in the index (deleted, or left over from an
   interrupted export of another state), then check the collection holds exactly the index's live documents;
4. write the metadata with ``state: complete`` and what was exported (generation, segments).

A replaced document (``heron index upsert``) lives in a new segment, so step 2 overwrites it; a merge makes a
new segment whose documents are sent again (idempotent). Kill points (``HERON_TEST_KILL_AT``):
``milvus.batch`` after each batch's progress is recorded, ``milvus.documents`` after step 2.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heron.errors import HeronError
from heron.indexing.milvus_index import EXPORT_FORMAT, EXPORT_VERSION, check_schema, schema_fields
from heron.indexing.milvus_store import (
    MAX_ID_BYTES,
    MAX_VARCHAR,
    PRIMARY,
    MilvusAddress,
    connect,
    create_companion,
    field_name,
    load,
    milvus_errors,
    read_json_blob,
    write_blob,
    write_json_blob,
)
from heron.storage import kill_point
from heron.storage.integrity import check_bytes

#: documents per upsert (``HERON_MILVUS_BATCH`` overrides it: the resume tests use small batches)
BATCH = 500
BATCH_ENV = "HERON_MILVUS_BATCH"
#: HNSW parameters of a dense member's Milvus index
HNSW_PARAMS = {"M": 16, "efConstruction": 200}


@dataclass
class SourceSegment:
    """The live documents of one segment of the index: its members' indexes, ids and live positions."""

    ident: str
    members: dict[str, object]
    doc_ids: list[str]
    live: np.ndarray
    document: Callable[[int], dict | None]


@dataclass
class Source:
    """The index (or bundle) at its current commit, as the exporter reads it."""

    path: Path
    layout: str
    generation: int | None
    members: dict[str, dict]  # name → {"kind", "search", "source"}
    default: str
    fusion: str
    bundle: dict | None
    segments: list[SourceSegment] = field(default_factory=list)

    @property
    def num_docs(self) -> int:
        return sum(len(s.live) for s in self.segments)

    def first(self, name: str):
        """Member ``name``'s index in the first segment (encoder files, vocabulary, dimension)."""
        return self.segments[0].members[self.members[name]["source"]]


def read_source(path) -> Source:
    """The index or bundle at ``path`` (classic or segmented) at its latest commit."""
    from heron.indexing.bundle import MEMBER_NAME, read_bundle
    from heron.indexing.registry import open_index
    from heron.indexing.segments import SegmentedIndex, is_segmented

    root = Path(path).absolute()
    if not root.is_dir():
        raise HeronError(f"{root}: index directory does not exist")
    single = root.name if MEMBER_NAME.match(root.name) else "index"
    if is_segmented(root):
        snap = SegmentedIndex.open(root)
        bundle = snap.bundle_manifest() if snap.layout == "bundle" else None
        if bundle is None:
            members = {single: {"kind": snap.commit["members"][snap.members[0]]["kind"], "search": {},
                                "source": snap.members[0]}}
        else:
            members = {n: {"kind": snap.commit["members"][n]["kind"], "search": dict(e.get("search") or {}),
                           "source": n} for n, e in bundle["indexes"].items()}
        source = Source(root, snap.layout, snap.generation, members,
                        (bundle or {}).get("default") or next(iter(members)),
                        ((bundle or {}).get("fusion") or {}).get("method", "rrf"), bundle)
        for seg, live in zip(snap._segments, snap._live_positions):  # the commit's segments and live positions
            ident = _short(seg.checksum) if seg.checksum else f"{seg.name}@none"
            source.segments.append(SourceSegment(ident, seg.members, seg.doc_ids, live, seg.document))
        return source
    bundle = read_bundle(root)
    if bundle is None:
        index = open_index(root)
        opened = {single: index}
        members = {single: {"kind": index.kind, "search": {}, "source": single}}
        ident = index.manifest.get("checksum") or ""
    else:
        opened = {n: open_index(root / e.get("path", n)) for n, e in bundle["indexes"].items()}
        members = {n: {"kind": opened[n].kind, "search": dict(e.get("search") or {}), "source": n}
                   for n, e in bundle["indexes"].items()}
        ident = bundle.get("checksum") or ""
    first = next(iter(opened.values()))
    for name, index in opened.items():
        if index.num_docs != first.num_docs:
            raise HeronError(f"{root}: member {name!r} holds {index.num_docs} documents, another {first.num_docs}")
    store = None
    folder = next((ix.docstore_dir for ix in opened.values() if ix.docstore_dir is not None), None)

    def document(position: int) -> dict | None:
        nonlocal store
        if folder is None:
            return None
        if store is None:
            from heron.indexing.docstore import DocStore

            store = DocStore(folder)
        row = store.get(position)
        return {"title": row.get("title") or "", "text": row.get("text") or ""}

    source = Source(root, "bundle" if bundle else "index", None, members,
                    (bundle or {}).get("default") or next(iter(members)),
                    ((bundle or {}).get("fusion") or {}).get("method", "rrf"), bundle)
    source.segments.append(SourceSegment(_short(ident) if ident else "base@none", opened, first.doc_ids,
                                         np.arange(first.num_docs), document))
    return source


def _short(checksum: str | None) -> str:
    """The hash part of a manifest checksum (``xxh3_128:HEX``), shortened: what names a segment's content (a
    classic index converted to a segmented one keeps its manifest, so its documents are not sent again)."""
    return (checksum or "none").rsplit(":", 1)[-1][:20]


# -- the metadata ------------------------------------------------------------------------------------------------
def _member_spec(source: Source, name: str) -> dict:
    """What the metadata records of member ``name`` (no encoder files yet)."""
    info = source.members[name]
    where = f"{source.path}: member {name!r}"
    if info["kind"] == "multivector":
        raise HeronError(f"{where} is a multi-vector index; Milvus serving takes sparse and dense members "
                         f"(export a bundle without it)")
    index = source.first(name)
    if info["kind"] == "inverted":
        spec = {"space": "sparse", "dim": int(index.vocab_size), "scale": float(index.scale),
                "milvus_index": {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP",
                                 "params": {"drop_ratio_build": 0.0}}, "search": {}}
        mode = info["search"].get("mode", "exact")
        if mode not in ("exact", "taat"):
            raise HeronError(f"{where} searches with mode {mode!r}; Milvus serves sparse members exactly")
    elif info["kind"] == "faiss":
        metric = index.manifest.get("metric", "inner_product")
        if metric != "inner_product":
            raise HeronError(f"{where}: metric {metric!r}; heron exports inner-product FAISS members")
        search = {k: v for k, v in info["search"].items() if k == "ef_search"}
        spec = {"space": "dense", "dim": int(index.dim),
                "milvus_index": {"index_type": "HNSW", "metric_type": "IP", "params": dict(HNSW_PARAMS)},
                "search": search}
    else:
        raise HeronError(f"{where} is a {info['kind']} index, which heron does not export to Milvus")
    if index.encoder_dir is None:
        raise HeronError(f"{where} holds no query encoder (encoder/); build it with heron build-index")
    spec.update(field=field_name(name), kind=info["kind"], metric="IP", encoder=index.encoder,
                source_kind=index.manifest.get("format"))
    return spec


def _upload_member_files(client, address: MilvusAddress, source: Source, name: str, spec: dict, log) -> None:
    """Send member ``name``'s query-encoder files (and vocabulary) as blobs; record them in ``spec``."""
    index = source.first(name)
    files = {}
    for rel, entry in sorted((index.manifest.get("files") or {}).items()):
        if not rel.startswith("encoder/"):
            continue
        path = index.path / rel
        data = path.read_bytes()
        check_bytes(path, data, entry)  # what is sent is what the index's manifest records
        sha = hashlib.sha256(data).hexdigest()
        write_blob(client, address, f"file:{sha}", data)
        files[rel] = {"bytes": len(data), "sha256": sha, "xxh3_128": entry.get("xxh3_128")}
    if not files:
        raise HeronError(f"{source.path}: member {name!r} lists no encoder files in its manifest")
    spec["encoder_files"] = files
    log(f"{name}: query encoder sent ({sum(f['bytes'] for f in files.values()) / 1e6:.1f} MB, {len(files)} files)")
    if spec["space"] == "sparse":
        data = gzip.compress(json.dumps(list(index.vocab)).encode("utf-8"), mtime=0)
        spec["vocab"] = write_blob(client, address, f"vocab:{name}", data)


def _create_collection(client, address: MilvusAddress, specs: dict, fields: bool) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(PRIMARY, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    params = client.prepare_index_params()
    for spec in specs.values():
        if spec["space"] == "sparse":
            schema.add_field(spec["field"], DataType.SPARSE_FLOAT_VECTOR)
        else:
            schema.add_field(spec["field"], DataType.FLOAT_VECTOR, dim=spec["dim"])
        index = spec["milvus_index"]
        params.add_index(spec["field"], index_type=index["index_type"], metric_type=index["metric_type"],
                         params=index["params"])
    if fields:
        schema.add_field("title", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
    with milvus_errors(address, f"create the collection {address.collection}"):
        client.create_collection(address.collection, schema=schema, index_params=params, consistency_level="Strong")


def _check_existing(client, address: MilvusAddress, specs: dict, fields: bool, meta) -> None:
    """An existing collection fits this index: the same members, vector types and dimensions, title/text
    fields as asked (one-line errors otherwise)."""
    found = schema_fields(client, address)
    expected = {PRIMARY, *(s["field"] for s in specs.values()), *(("title", "text") if fields else ())}
    for spec in specs.values():
        have = found.get(spec["field"])
        want = "SPARSE_FLOAT_VECTOR" if spec["space"] == "sparse" else "FLOAT_VECTOR"
        if have is not None and have["type"] == want == "FLOAT_VECTOR" and have["dim"] != spec["dim"]:
            raise HeronError(f"{address}: field {spec['field']!r} has dimension {have['dim']}, the index's member "
                             f"has {spec['dim']}; export into another collection (or drop this one)")
        if have is not None and have["type"] != want:
            raise HeronError(f"{address}: field {spec['field']!r} is {have['type']}, the index's member needs {want}; "
                             f"export into another collection (or drop this one)")
    if set(found) != expected:
        extra, missing = sorted(set(found) - expected), sorted(expected - set(found))
        raise HeronError(f"{address}: the collection's fields do not match this index (missing: "
                         f"{', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'}); export into another "
                         f"collection (or drop this one)")
    if meta is not None:
        if meta.get("format") != EXPORT_FORMAT:
            raise HeronError(f"{address}: {address.companion} holds no heron export metadata")
        if {n: (m["space"], m["dim"]) for n, m in meta.get("members", {}).items()} != \
                {n: (s["space"], s["dim"]) for n, s in specs.items()}:
            raise HeronError(f"{address}: the collection holds another index's members; export into another "
                             f"collection (or drop this one)")


# -- documents ---------------------------------------------------------------------------------------------------
def _rows(source: Source, segment: SourceSegment, positions: np.ndarray, specs: dict, fields: bool) -> list[dict]:
    """Milvus rows of the documents at ``positions`` of ``segment``."""
    rows = [{PRIMARY: segment.doc_ids[p]} for p in positions.tolist()]
    for row in rows:
        if len(row[PRIMARY].encode("utf-8")) > MAX_ID_BYTES:
            raise HeronError(f"{source.path}: document id {row[PRIMARY][:40]!r}… is longer than {MAX_ID_BYTES} "
                             f"bytes (Milvus's primary key)")
    for name, spec in specs.items():
        index = segment.members[source.members[name]["source"]]
        vectors = index.vectors(positions)
        if spec["space"] == "sparse":
            vectors = vectors.tocsr()
            for i, row in enumerate(rows):
                lo, hi = vectors.indptr[i], vectors.indptr[i + 1]
                entries = dict(zip(vectors.indices[lo:hi].tolist(), vectors.data[lo:hi].astype(np.float32).tolist()))
                row[spec["field"]] = {t: w for t, w in entries.items() if w != 0} or {spec["dim"]: 1.0}
        else:
            array = np.asarray(vectors, dtype=np.float32)
            if array.shape != (len(rows), spec["dim"]) or not np.all(np.isfinite(array)):
                raise HeronError(f"{source.path}: member {name!r} returned vectors of shape {array.shape}")
            for row, vector in zip(rows, array):
                row[spec["field"]] = vector.tolist()
    if fields:
        for row, p in zip(rows, positions.tolist()):
            doc = segment.document(p)
            if doc is None:
                raise HeronError(f"{source.path}: the index holds no document store (titles and text); export "
                                 f"without --fields")
            for key in ("title", "text"):
                if len(doc[key].encode("utf-8")) > MAX_VARCHAR:
                    raise HeronError(f"{source.path}: document {row[PRIMARY]!r}: its {key} is longer than "
                                     f"{MAX_VARCHAR} bytes (Milvus's VARCHAR); export without --fields")
                row[key] = doc[key]
    return rows


def _delete_stale(client, address: MilvusAddress, live: set[str], log) -> int:
    """Delete every document of the collection that is not in ``live``; returns how many."""
    stale = []
    # milvus-lite has no timestamp service: the iterator's request for one is logged (in-process server) and
    # warned about (pymilvus), then it goes on without; keep both out of the output
    quiet = [logging.getLogger("pymilvus"), logging.getLogger("grpc._server")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    with milvus_errors(address, "list the documents"):
        iterator = client.query_iterator(address.collection, batch_size=5000, filter="", output_fields=[PRIMARY])
        try:
            while True:
                batch = iterator.next()
                if not batch:
                    break
                stale.extend(str(r[PRIMARY]) for r in batch if str(r[PRIMARY]) not in live)
        finally:
            iterator.close()
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
    with milvus_errors(address, "delete documents"):
        for start in range(0, len(stale), 5000):
            client.delete(address.collection, ids=stale[start:start + 5000])
    if stale:
        log(f"deleted {len(stale)} documents no longer in the index")
    return len(stale)


def export_milvus(index_path, address: MilvusAddress, *, token: str | None = None, fields: bool = False,
                  sync: bool = False, progress: bool = True, log: Callable[[str], None] = lambda m: None) -> dict:
    """Bring the collection at ``address`` to the index at ``index_path`` (module docstring); ``sync``: the
    collection must exist already (``heron export milvus --sync``). Returns a summary (documents sent and
    deleted, seconds, generation)."""
    started = time.monotonic()
    source = read_source(index_path)
    if not source.segments or source.num_docs == 0:
        raise HeronError(f"{source.path}: the index holds no documents")
    specs = {name: _member_spec(source, name) for name in source.members}
    client = connect(address, token, create=not sync)
    with milvus_errors(address, "list collections"):
        exists = client.has_collection(address.collection)
        companion = client.has_collection(address.companion)
    if sync and not exists:
        raise HeronError(f"{address}: no collection {address.collection!r} to sync; export the index first "
                         f"(without --sync)")
    if companion:
        load(client, address, address.companion)
    old = read_json_blob(client, address, "meta") if companion else None
    if exists:
        load(client, address, address.collection)
        _check_existing(client, address, specs, fields, old)
        if not companion:
            raise HeronError(f"{address}: collection {address.collection!r} exists and was not written by heron "
                             f"export milvus; choose another collection")
    create_companion(client, address)
    for name, spec in specs.items():
        _upload_member_files(client, address, source, name, spec, log)
    exported = dict((old or {}).get("exported") or {}) if exists else {}  # segments sent by earlier exports
    meta = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "state": "exporting",
            "collection": address.collection, "layout": source.layout, "default": source.default,
            "fusion": source.fusion, "members": specs, "order": list(specs), "fields": bool(fields),
            "num_docs": source.num_docs,
            "bundle": {k: source.bundle.get(k) for k in ("dataset", "config", "models", "created")}
            if source.bundle else None, "exported": exported}
    write_json_blob(client, address, "meta", meta)
    if not exists:
        _create_collection(client, address, specs, fields)
    # -- the documents of every segment not exported yet
    state = (read_json_blob(client, address, "progress") or {}) if exists else {}
    done = set(exported.get("segments") or []) | set(state.get("done") or [])
    current = state.get("current") or {}
    todo = [s for s in source.segments if s.ident not in done]
    batch = int(os.environ.get(BATCH_ENV) or BATCH)
    total = sum(len(s.live) for s in todo)
    sent, sending = 0, time.monotonic()
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="doc", desc=f"export to {address.collection}", disable=not progress,
              dynamic_ncols=True, mininterval=1.0) as bar:
        for segment in todo:
            start = int(current.get("next", 0)) if current.get("segment") == segment.ident else 0
            bar.update(start)
            for lo in range(start, len(segment.live), batch):
                positions = segment.live[lo:lo + batch]
                rows = _rows(source, segment, positions, specs, fields)
                with milvus_errors(address, "upsert documents"):
                    client.upsert(address.collection, rows)
                sent += len(rows)
                state = {"done": sorted(done), "current": {"segment": segment.ident, "next": lo + len(rows)}}
                write_json_blob(client, address, "progress", state)
                bar.update(len(rows))
                kill_point("milvus.batch")
            done.add(segment.ident)
            write_json_blob(client, address, "progress", {"done": sorted(done), "current": {}})
    kill_point("milvus.documents")
    documents_seconds = time.monotonic() - sending
    live = {segment.doc_ids[p] for segment in source.segments for p in segment.live.tolist()}
    deleted = _delete_stale(client, address, live, log)
    with milvus_errors(address, "count the documents"):
        client.flush(address.collection)
        count = int(client.query(address.collection, filter="", output_fields=["count(*)"],
                                 consistency_level="Strong")[0]["count(*)"])
    if count != len(live):
        raise HeronError(f"{address}: holds {count} documents after the export, the index {len(live)}; rerun "
                         f"heron export milvus")
    meta.update(state="complete", exported={"source": str(source.path), "generation": source.generation,
                                            "segments": sorted(s.ident for s in source.segments),
                                            "seconds": round(time.monotonic() - started, 3)})
    write_json_blob(client, address, "meta", meta)
    write_json_blob(client, address, "progress", {"done": [], "current": {}})
    check_schema(client, address, meta)
    return {"address": str(address), "documents": count, "sent": sent, "deleted": deleted,
            "generation": source.generation, "segments": len(source.segments),
            "seconds": round(time.monotonic() - started, 3), "documents_seconds": round(documents_seconds, 3)}


__all__ = ["BATCH", "export_milvus", "read_source"]
