"""Build a segment from new documents: what ``heron index add`` and :meth:`heron.Index.add` encode.

:func:`build_segment` encodes ONLY the new documents, with each member's own recorded encoder, into a
complete index directory (or bundle directory) of the same layout, members and kinds as the index it
is added to; :class:`heron.indexing.segments.IndexWriter` then moves it into ``segments/`` and commits.
The *template* is the index's first segment (or the classic index itself): its manifests say which
encoder made the vectors and how they were stored, and every setting that decides a score is frozen
to it, so that searching the segmented index gives what a from-scratch build with the same frozen
settings gives:

* **inverted** members (SPLADE, CSR, BM25) use the template's quantisation ``scale`` and ``dtype`` (a
  from-scratch build with that scale stores the very same impacts), its vocabulary, block size and
  approximate-search parameters;
* **BM25** keeps the template's saved statistics — document count ``N``, ``avgdl``, document
  frequencies (so idf) and vocabulary — frozen: a new document's weights are computed with them, not
  with statistics refitted over old + new documents. A fresh build over all documents would refit them,
  so its BM25 scores differ (slightly, for a small addition); rebuild the index to refresh them. Terms
  that are not in the frozen vocabulary are **dropped** (a query could never reach them: the query
  encoder knows only the frozen vocabulary); their count is printed. The document's length still counts
  them, as Lucene's field length does;
* **SPLADE / CSR / dense / multi-vector** members encode with the same model files (the index's
  ``encoder/``, or the document model the manifest names for SPLADE with a separate or IDF query side);
  the IDF query weights of an inference-free SPLADE member stay those of the first build;
* **FAISS** members are built with the template's type and parameters. Flat and HNSW need no training
  (HNSW's graph is built over the new segment's vectors). IVF and IVF-PQ segments train their coarse
  quantiser (and PQ codebooks) on the new segment's own vectors, with the template's seed; ``nlist``
  and ``pq_bits`` are re-resolved for the segment's size (never above the template's), since k-means
  cannot train more centroids than it has vectors. (Cloning the template's trained quantiser would need
  a hook in :mod:`heron.indexing.faiss_index`; merges rebuild the merged segment anyway.) Approximate
  members give approximate results per segment, merged into one global top-k;
* **multi-vector** members keep the template's document reduction, query reduction and MUVERA
  parameters (same seed, so the same FDE projections).

Input documents are ``{"_id", "title", "text"}`` objects — a BEIR ``corpus.jsonl`` file
(:func:`read_documents`) or a list of dicts — checked as strictly as a corpus: an ``_id`` that is a
non-empty string without white space (or an integer), unique within the batch, string ``title`` /
``text`` that are valid UTF-8.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError, InputFormatError
from heron.eval.datasets import Document, check_id, iter_jsonl
from heron.indexing.bundle import MANIFEST_FILE, read_bundle
from heron.indexing.docstore import write_docstore
from heron.storage import scratch, staged, write_manifest

#: documents encoded per batch (one progress step)
CHUNK = 256


# -- input ---------------------------------------------------------------------------------------------
def _document(obj, where, line) -> Document:
    """One checked document from a parsed object (``where``/``line`` name it in errors)."""
    if isinstance(obj, Document):
        obj = {"_id": obj.id, "title": obj.title, "text": obj.text}
    if not isinstance(obj, dict):
        raise InputFormatError(where, line, "expected a JSON object with _id, title and text")
    value = obj.get("_id")
    if value is None:
        raise InputFormatError(where, line, "missing field '_id'")
    if isinstance(value, int) and not isinstance(value, bool):
        doc_id = str(value)
    elif isinstance(value, str):
        doc_id = check_id(value, where, line, "_id")
    else:
        raise InputFormatError(where, line, f"field '_id' must be a string or an integer, got {type(value).__name__}")
    fields = {}
    for key in ("_id", "title", "text"):
        raw = doc_id if key == "_id" else obj.get(key)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise InputFormatError(where, line, f"field '{key}' must be a string, got {type(raw).__name__}")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise InputFormatError(where, line, f"field '{key}' is not valid UTF-8 text (a lone surrogate)") \
                from None
        fields[key] = raw
    if "\n" in doc_id:
        raise InputFormatError(where, line, "field '_id' holds a newline")
    return Document(id=doc_id, title=fields["title"], text=fields["text"])


def read_documents(source) -> list[Document]:
    """The documents of a BEIR-style ``corpus.jsonl`` file (a path) or of a list of dicts, checked: valid
    UTF-8 and JSON, ``_id`` present, non-empty and unique, ``title``/``text`` strings. An empty input is an
    error too (there is nothing to add)."""
    docs: list[Document] = []
    seen: dict[str, int] = {}
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise HeronError(f"{path}: no such corpus file")
        rows = ((path, line, obj) for line, obj in iter_jsonl(path))
    else:
        if isinstance(source, dict | str | bytes):
            raise HeronError("documents: give a list of {'_id', 'title', 'text'} objects")
        rows = (("documents", i, obj) for i, obj in enumerate(source))
    where = "documents"
    for where, line, obj in rows:
        doc = _document(obj, where, line)
        if doc.id in seen:
            raise InputFormatError(where, line, f"field '_id': duplicate id {doc.id!r} (first at "
                                                f"{seen[doc.id]}); ids must be unique")
        seen[doc.id] = line
        docs.append(doc)
    if not docs:
        raise InputFormatError(where, None, "no documents to add")
    return docs


# -- the template: what the new segment must look like ----------------------------------------------------
def template_dir(index_path: str | os.PathLike) -> Path:
    """The directory whose layout and frozen settings a new segment copies: the index itself when it is a
    classic (write-once) index or bundle, else the first segment of its latest commit."""
    root = Path(index_path)
    from heron.indexing.segments import SegmentedIndex, is_segmented

    if not is_segmented(root):
        if (root / MANIFEST_FILE).is_file():
            return root
        raise HeronError(f"{root}: not a heron index (no manifest.json and no commit)")
    snapshot = SegmentedIndex.open(root)
    if not snapshot.segments:
        raise HeronError(f"{root}: the index has no segments to copy settings from")
    return root / "segments" / snapshot.segments[0]["name"]


def _members(template: Path) -> tuple[dict | None, dict[str, Path]]:
    """The bundle manifest (None for a single index) and member name → directory of the template."""
    bundle = read_bundle(template)
    if bundle is None:
        return None, {"index": template}
    return bundle, {name: template / entry.get("path", name) for name, entry in bundle["indexes"].items()}


# -- building ------------------------------------------------------------------------------------------
def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"heron: {message}", file=sys.stderr, flush=True)


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="doc", desc=desc, disable=not progress, dynamic_ncols=True, mininterval=1.0)


def build_segment(index_path: str | os.PathLike, docs, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Encode ``docs`` (a corpus file path, or an iterable of ``{"_id","title","text"}`` dicts / documents)
    with the encoders of the index at ``index_path`` and build them into ``out_dir``: an index directory
    (or bundle directory, every member) laid out as the index's segments are. Published atomically (a
    killed build leaves no ``out_dir``); returns its path. See the module docstring for what is frozen."""
    documents = read_documents(docs)
    template = template_dir(index_path)
    bundle, members = _members(template)
    out = Path(out_dir).absolute()
    if out.exists():
        raise HeronError(f"{out}: exists; a segment is built into a new directory")
    from heron.indexing.registry import verify_index

    started = time.monotonic()
    with scratch(out, "aux") as aux:
        docstore = aux / "docstore"
        write_docstore(docstore, ((d.id, d.title, d.text) for d in documents))
        if bundle is None:  # the index builders stage and publish their output directory themselves
            _build_member(members["index"], documents, out, docstore, progress)
            verify_index(out)
            return out
        with staged(out) as work:
            summaries = {}
            for i, (name, member_dir) in enumerate(members.items(), start=1):
                _say(progress, f"[{i}/{len(members)}] {name}: encoding {len(documents):,} new documents")
                _build_member(member_dir, documents, work / name, docstore, progress)
                summaries[name] = _summary(work / name)
            manifest = dict(bundle)
            manifest.pop("checksum", None)
            manifest["indexes"] = {name: {**entry, "index": summaries[name]}
                                   for name, entry in bundle["indexes"].items()}
            manifest["segment"] = {"num_docs": len(documents),
                                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "seconds": round(time.monotonic() - started, 3)}
            write_manifest(work / MANIFEST_FILE, manifest, durable=False)
    verify_index(out)  # every byte of every member, as a from-scratch build checks its output
    return out


def _summary(path: Path) -> dict:
    from heron.indexing.registry import open_index

    out = {k: v for k, v in open_index(path).describe().items() if k != "encoder"}
    out["bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return out


def _build_member(member_dir: Path, documents: list[Document], output: Path, docstore: Path, progress: bool) -> Path:
    """One member (an index directory of any kind) over ``documents``, frozen to ``member_dir``'s settings."""
    from heron.indexing.registry import open_index

    template = open_index(member_dir)
    if template.encoder_dir is None:
        raise HeronError(f"{member_dir}: the index holds no encoder (encoder/), so new documents cannot be encoded; "
                         f"rebuild it with heron build-index")
    if template.kind == "inverted":
        return _build_inverted(template, documents, output, docstore, progress)
    if template.kind == "faiss":
        return _build_faiss(template, documents, output, docstore, progress)
    if template.kind == "multivector":
        return _build_multivector(template, documents, output, docstore, progress)
    raise HeronError(f"{member_dir}: cannot add documents to a {template.kind} index")


def _chunks(documents: list[Document]):
    for start in range(0, len(documents), CHUNK):
        yield documents[start:start + CHUNK]


def _build_inverted(template, documents, output, docstore, progress) -> Path:
    from heron.indexing.inverted import build_inverted_index

    info = template.encoder
    kind = info.get("type")
    ids = [d.id for d in documents]
    if kind == "bm25":
        matrix = frozen_bm25_vectors(template.encoder_dir, [d.contents for d in documents], progress)
    elif kind in ("splade", "csr"):
        encoder = _sparse_encoder(kind, info, template.encoder_dir)
        parts = []
        with _bar(len(documents), f"encoding ({kind})", progress) as bar:
            for chunk in _chunks(documents):
                parts.append(sp.csr_matrix(encoder.encode_documents([d.contents for d in chunk])))
                bar.update(len(chunk))
        matrix = sp.vstack(parts, format="csr")
    else:
        raise HeronError(f"{template.path}: cannot encode new documents for an inverted index of encoder type "
                         f"{kind!r} (bm25, splade or csr)")
    if matrix.shape[1] != template.vocab_size:
        raise HeronError(f"{template.path}: the encoder gives {matrix.shape[1]} dimensions, the index has "
                         f"{template.vocab_size} terms")
    approx = (template.manifest.get("approx") or {}).get("params")
    chunks = ((ids[i:i + CHUNK], matrix[i:i + CHUNK]) for i in range(0, len(ids), CHUNK))
    return build_inverted_index(chunks, output, vocab=template.vocab, encoder=info,
                                quantization=np.dtype(template.dtype).name, scale=template.scale,
                                block_size=template.block_size, approx=approx, encoder_dir=template.encoder_dir,
                                docstore_dir=docstore, resume=False, progress=progress)


def _sparse_encoder(kind: str, info: dict, encoder_dir: Path):
    """The document encoder of a SPLADE or CSR member: the index's own model files where they are kept,
    else (SPLADE with a separate or IDF query side) the document model its manifest names."""
    if kind == "csr":
        from heron.retrieval.encoders.csr import CSREncoder

        return CSREncoder.load(encoder_dir)
    from heron.retrieval.encoders import splade

    encoder = splade.SpladeEncoder.load(encoder_dir)
    if encoder._doc is not None:
        return encoder
    if not info.get("doc_model"):
        raise HeronError(f"{encoder_dir}: the index keeps no document model and its manifest names none")
    return splade.SpladeEncoder(info["doc_model"], doc_max_length=info.get("doc_max_length"),
                                doc_top_k=info.get("doc_top_k"), pooling=info.get("pooling"),
                                activation=info.get("activation"), lowercase=info.get("lowercase"))


def frozen_bm25_vectors(encoder_dir: str | os.PathLike, texts: list[str], progress: bool = False) -> sp.csr_matrix:
    """BM25 document vectors of ``texts`` with the saved statistics of ``encoder_dir`` (``N``, ``avgdl``,
    document frequencies, vocabulary) frozen, in the saved vocabulary's columns; terms outside it are
    dropped (counted in the document length; the count is printed). The weights are the very floats
    :meth:`~heron.retrieval.encoders.bm25.BM25Encoder.document_vectors` gives with those statistics."""
    from heron.retrieval.encoders.bm25 import BM25Encoder

    encoder = BM25Encoder.load(encoder_dir)
    indptr, indices, counts, lengths = [0], [], [], []
    dropped_terms: set[str] = set()
    dropped = 0
    with _bar(len(texts), "BM25 (frozen statistics)", progress) as bar:
        for text in texts:
            terms = encoder.analyzer(text)
            bag: dict[int, int] = {}
            for term in terms:
                tid = encoder.vocab.get(term)
                if tid is None:
                    dropped += 1
                    dropped_terms.add(term)
                else:
                    bag[tid] = bag.get(tid, 0) + 1
            indices.extend(bag)
            counts.extend(bag.values())
            indptr.append(len(indices))
            lengths.append(len(terms))
            bar.update(1)
    if dropped:
        _say(progress, f"BM25: {len(dropped_terms):,} new terms ({dropped:,} occurrences) are not in the frozen "
                       f"vocabulary and were dropped (rebuild the index to include them)")
    encoder._tf = sp.csr_matrix(
        (np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr)),
        shape=(len(texts), len(encoder.vocab)))
    encoder._lengths = np.asarray(lengths, dtype=np.int64)
    return encoder.document_vectors()  # idf from the saved df and N, avgdl as saved


def _faiss_params(template, num_docs: int) -> dict:
    """The template's FAISS parameters, re-resolved for a segment of ``num_docs`` vectors (module docstring)."""
    faiss = template.manifest["faiss"]
    params = dict(faiss.get("params") or {})
    params.pop("train_size", None)
    if "nlist" in params:
        from heron.indexing.faiss_index import default_params

        auto = default_params(faiss["type"], num_docs, template.dim, {"seed": params.get("seed", 0)})["nlist"]
        params["nlist"] = max(1, min(int(params["nlist"]), auto, num_docs))
        params["nprobe"] = min(int(params.get("nprobe", params["nlist"])), params["nlist"])
    params.pop("pq_bits", None)  # re-resolved (never above 8): a PQ codebook needs 2^bits training vectors
    return params


def _build_faiss(template, documents, output, docstore, progress) -> Path:
    from heron.indexing.faiss_index import build_faiss_index
    from heron.retrieval.encoders.dense import DenseEncoder

    info = template.encoder
    if info.get("type", "dense") != "dense":
        raise HeronError(f"{template.path}: cannot encode new documents for a FAISS index of encoder type "
                         f"{info.get('type')!r}")
    encoder = DenseEncoder.load(template.encoder_dir)

    def chunks():
        with _bar(len(documents), "encoding (dense)", progress) as bar:
            for chunk in _chunks(documents):
                yield [d.id for d in chunk], encoder.encode_documents([d.contents for d in chunk])
                bar.update(len(chunk))

    faiss = template.manifest["faiss"]
    return build_faiss_index(chunks(), output, dim=template.dim, index_type=faiss["type"],
                             params=_faiss_params(template, len(documents)), encoder=info,
                             encoder_dir=template.encoder_dir, docstore_dir=docstore,
                             store_vectors=bool(template.manifest.get("has_vectors", True)), progress=progress)


def _build_multivector(template, documents, output, docstore, progress) -> Path:
    from heron.indexing.multivector_store import build_multivector_index
    from heron.retrieval.encoders.multivector import MultiVectorEncoder

    manifest = template.manifest
    encoder = MultiVectorEncoder(template.encoder_dir)

    def chunks():
        with _bar(len(documents), "encoding (multi-vector)", progress) as bar:
            for chunk in _chunks(documents):
                yield [d.id for d in chunk], encoder.encode_documents([d.contents for d in chunk])
                bar.update(len(chunk))

    muvera = manifest.get("muvera")
    if muvera:
        muvera = {k: v for k, v in muvera.items() if k in ("reps", "k_sim", "d_proj", "seed", "fill_empty",
                                                           "final_dim", "faiss", "faiss_params")}
    return build_multivector_index(chunks(), output, dim=template.dim, encoder=template.encoder,
                                   encoder_dir=template.encoder_dir, docstore_dir=docstore,
                                   reduction=manifest.get("reduction"), query_reduction=manifest.get("query_reduction"),
                                   muvera=muvera or None, progress=progress)


def describe_template(index_path) -> dict:
    """Member name → ``{kind, encoder type}`` of the index a segment would be added to (for messages)."""
    from heron.indexing.registry import open_index

    _, members = _members(template_dir(index_path))
    out = {}
    for name, path in members.items():
        index = open_index(path)
        out[name] = {"kind": index.kind, "encoder": index.encoder.get("type")}
    return out


__all__ = ["build_segment", "frozen_bm25_vectors", "read_documents", "template_dir"]
