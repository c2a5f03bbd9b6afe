"""Merging segments: which ones (the tiered policy), and building the merged segment.

**Policy** (``merge_policy`` in the commit; run by :meth:`IndexWriter.commit`). Segments are merged only
with their neighbours, so a merge never changes the global order of the documents (and so never the tie
order of a search). A segment's *tier* is ``floor(log_f(max(live, min_docs) / min_docs))`` with
``f = segments_per_tier``: a run of ``f`` adjacent segments of the same tier, together at most
``max_merged_docs`` live documents, is merged into one segment of the next tier — Lucene's log merge
policy on live documents. A segment with more than ``max_deleted_fraction`` of its documents deleted is
rewritten alone (its deleted documents dropped). Keys (defaults in
:data:`~heron.indexing.segments.layout.DEFAULT_MERGE_POLICY`): ``segments_per_tier`` (10),
``max_merged_docs`` (5,000,000), ``min_docs`` (1,000), ``max_deleted_fraction`` (0.5), ``enabled`` (true).

**Building** (:func:`build_merged`): the live documents' stored vectors are read from each segment with
``SearchIndex.vectors`` and the merged member is built by the member type's own builder, with the first
segment's settings, into a scratch directory:

* inverted: ``build_inverted_index`` with the first segment's vocabulary, ``scale``, ``dtype``, block size
  and approximate-search parameters. ``vectors`` returns ``impact / scale``; re-quantising with the same
  scale gives back every impact exactly, so merged scores are the original ones;
* FAISS: ``build_faiss_index`` with the type and parameters of the first segment (IVF's ``nlist`` /
  ``nprobe`` and the training sample size are re-derived for the merged size). The vectors are the stored
  float32 copy (``store_vectors``, the default); without it, FAISS's reconstruction: exact for flat and
  HNSW, IVF-flat, SQ8 to its 8-bit precision, and for IVF-PQ the PQ approximation — a merge then
  re-encodes approximated vectors, which drifts: keep the vectors stored for PQ indexes that take adds;
* multi-vector: ``build_multivector_index`` from the stored (already reduced) token matrices, fp16 → float32
  → fp16 without loss, MUVERA FDEs recomputed with the same parameters; the manifest keeps the original
  ``reduction`` record.

The query encoder (``encoder/``) is the first segment's; the document store is rebuilt from the live rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from heron.errors import HeronError
from heron.indexing.base import MANIFEST_FILE
from heron.storage import read_json, write_manifest

#: documents read per chunk when merging
CHUNK_DOCS = 32768
POLICY_KEYS = {"segments_per_tier": int, "max_merged_docs": int, "min_docs": int, "max_deleted_fraction": float,
               "enabled": bool}


def check_policy(policy: dict | None, base: dict | None = None) -> dict:
    """``base`` updated with ``policy``, every key known and of the right type (one-line HeronError)."""
    from heron.indexing.segments.layout import DEFAULT_MERGE_POLICY

    out = {**DEFAULT_MERGE_POLICY, "max_deleted_fraction": 0.5, **(base or {})}
    for key, value in (policy or {}).items():
        if key not in POLICY_KEYS:
            raise HeronError(f"merge_policy: unknown key {key!r} (known: {', '.join(sorted(POLICY_KEYS))})")
        kind = POLICY_KEYS[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise HeronError(f"merge_policy.{key}: expected true or false, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise HeronError(f"merge_policy.{key}: expected a number, not {value!r}")
        out[key] = kind(value)
    if out["segments_per_tier"] < 2 or out["min_docs"] < 1 or out["max_merged_docs"] < 1 \
            or not 0 < out["max_deleted_fraction"] <= 1:
        raise HeronError("merge_policy: segments_per_tier ≥ 2, min_docs ≥ 1, max_merged_docs ≥ 1 and "
                         "0 < max_deleted_fraction ≤ 1 are required")
    return out


def tier(live: int, policy: dict) -> int:
    """The tier of a segment of ``live`` documents (module docstring)."""
    floor = policy["min_docs"]
    ratio = max(live, floor) / floor
    return int(math.floor(math.log(ratio) / math.log(policy["segments_per_tier"]) + 1e-9))


def find_merge(segments: list[dict], policy: dict) -> tuple[int, int] | None:
    """The first window ``[start, stop)`` of adjacent segments the policy merges now, or None. ``segments``:
    ``{"num_docs", "deleted"}`` per segment, in commit order."""
    if not policy.get("enabled", True):
        return None
    f = policy["segments_per_tier"]
    live = [s["num_docs"] - s["deleted"] for s in segments]
    tiers = [tier(n, policy) for n in live]
    for start in range(len(segments) - f + 1):
        window = range(start, start + f)
        if len({tiers[i] for i in window}) == 1 and sum(live[i] for i in window) <= policy["max_merged_docs"]:
            return start, start + f
    for i, s in enumerate(segments):
        if s["num_docs"] and s["deleted"] / s["num_docs"] > policy.get("max_deleted_fraction", 0.5):
            return i, i + 1
    return None


def smallest_window(segments: list[dict], size: int) -> tuple[int, int]:
    """The window of ``size`` adjacent segments with the fewest live documents (an explicit merge)."""
    live = [s["num_docs"] - s["deleted"] for s in segments]
    sums = [sum(live[i:i + size]) for i in range(len(segments) - size + 1)]
    start = int(np.argmin(sums))
    return start, start + size


# -- building --------------------------------------------------------------------------------------------
def _chunks(snapshot, window: range, member: str, read) -> Iterator[tuple[list[str], object]]:
    for s in window:
        seg = snapshot._segments[s]
        part = seg.members[member]
        positions = snapshot._live_positions[s]
        for lo in range(0, len(positions), CHUNK_DOCS):
            chunk = positions[lo:lo + CHUNK_DOCS]
            yield [seg.doc_ids[i] for i in chunk.tolist()], read(part, chunk)


def _merged_docstore(snapshot, window: range, folder: Path) -> Path | None:
    from heron.indexing.docstore import write_docstore

    if not any(m.docstore_dir is not None for s in window for m in snapshot._segments[s].members.values()):
        return None

    def rows():
        for s in window:
            seg = snapshot._segments[s]
            for i in snapshot._live_positions[s].tolist():
                row = seg.document(i) or {}
                yield seg.doc_ids[i], row.get("title", ""), row.get("text", "")

    write_docstore(folder, rows(), max_text=1 << 62)
    return folder


def build_merged(snapshot, window: range, out: Path, work: Path) -> list[str]:
    """Build the segment holding the live documents of ``snapshot``'s segments ``window`` (in global order)
    at ``out`` (a new directory); returns its document ids. ``work`` is scratch space."""
    from heron.indexing.bundle import read_bundle

    docstore = _merged_docstore(snapshot, window, work / "docstore")
    first = snapshot._segments[window[0]]
    ids = [first_id for s in window for first_id in
           (snapshot._segments[s].doc_ids[i] for i in snapshot._live_positions[s].tolist())]
    if snapshot.layout == "bundle":
        out.mkdir()
    for name, spec in snapshot._members_spec.items():
        dest = out if spec["path"] == "." else out / spec["path"]
        ref = first.members[name]
        store = docstore if ref.docstore_dir is not None else None
        _BUILDERS[ref.kind](snapshot, window, name, ref, dest, store)
    if snapshot.layout == "bundle":
        manifest = {k: v for k, v in read_bundle(first.path).items() if k != "checksum"}
        for entry in manifest["indexes"].values():
            if isinstance(entry.get("index"), dict) and "num_docs" in entry["index"]:
                entry["index"] = {**entry["index"], "num_docs": len(ids)}
        manifest["merged_from"] = [snapshot._segments[s].name for s in window]
        write_manifest(out / MANIFEST_FILE, manifest)
    return ids


def _build_inverted(snapshot, window, name, ref, dest, docstore) -> None:
    from heron.indexing.inverted.builder import build_inverted_index

    approx = (ref.manifest.get("approx") or {}).get("params") if ref.approx else None
    block_size = ref.manifest.get("block_max", {}).get("block_size")
    options = {"block_size": int(block_size)} if block_size else {}
    build_inverted_index(_chunks(snapshot, window, name, lambda part, pos: part.vectors(pos)), dest,
                         vocab=list(ref.vocab), encoder=ref.encoder, quantization=np.dtype(ref.dtype).name,
                         scale=float(ref.scale), approx=approx, encoder_dir=ref.encoder_dir, docstore_dir=docstore,
                         resume=False, progress=False, **options)


def _build_faiss(snapshot, window, name, ref, dest, docstore) -> None:
    from heron.indexing.faiss_index import build_faiss_index

    params = dict(ref.manifest["faiss"]["params"])
    params.pop("train_size", None)
    if ref.index_type.startswith("ivf"):
        params.pop("nlist", None)
        params.pop("nprobe", None)
    build_faiss_index(_chunks(snapshot, window, name, lambda part, pos: part.vectors(pos)), dest, dim=ref.dim,
                      index_type=ref.index_type, params=params, encoder=ref.encoder, encoder_dir=ref.encoder_dir,
                      docstore_dir=docstore, store_vectors=ref.stored is not None,
                      kind=ref.manifest.get("kind", "dense"), progress=False)


def _build_multivector(snapshot, window, name, ref, dest, docstore) -> None:
    from heron.indexing.multivector_store import build_multivector_index

    muvera = ref.manifest.get("muvera")
    if muvera:
        muvera = {k: v for k, v in muvera.items() if k in ("reps", "k_sim", "d_proj", "seed", "fill_empty",
                                                           "final_dim", "faiss", "faiss_params")}
    build_multivector_index(_chunks(snapshot, window, name, lambda part, pos: part.vectors(pos)), dest,
                            dim=ref.dim, encoder=ref.encoder, encoder_dir=ref.encoder_dir, docstore_dir=docstore,
                            reduction=None, query_reduction=ref.manifest.get("query_reduction"), muvera=muvera,
                            progress=False)
    if ref.manifest.get("reduction") is not None:  # the vectors are already reduced: keep the record
        manifest = read_json(dest / MANIFEST_FILE, "index manifest", stored=True)
        manifest = {k: v for k, v in manifest.items() if k != "checksum"}
        manifest["reduction"] = ref.manifest.get("reduction")
        write_manifest(dest / MANIFEST_FILE, manifest)


_BUILDERS = {"inverted": _build_inverted, "faiss": _build_faiss, "multivector": _build_multivector}
