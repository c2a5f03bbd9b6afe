"""FAISS indexes for dense vectors and MUVERA fixed dimensional encodings (a :class:`FaissIndex`).

An index is a directory::

    manifest.json     format name + version, FAISS type and parameters, dim, counts, metric, encoder,
                      build info, ``files``: {relative path: {bytes, xxh3_128[, dtype, shape]}}, ``checksum``
    index.faiss       the FAISS index (inner product), written by ``faiss.write_index``
    vectors.npy       optional: the float32 vectors (exact rescoring, PRF, truncation experiments)
    doc_ids.txt       one external document id per line, in index order
    encoder/          optional: files that re-create the query encoder
    docstore/         optional: titles and text for display

Types (``type`` in the config; every one scores by inner product, so cosine for normalised vectors):

====================  =========================================  ==========================================
``flat``              ``IndexFlatIP``: exact                       ``-``
``hnsw``              ``IndexHNSWFlat``                            ``m`` (32), ``ef_construction`` (200),
                                                                   ``ef_search`` (128)
``ivf-flat``          ``IndexIVFFlat`` over a flat quantiser       ``nlist`` (≈ 4√N), ``nprobe`` (16)
``ivf-pq``            ``IndexIVFPQ``                               ``nlist``, ``nprobe``, ``pq_m`` (dim/8),
                                                                   ``pq_bits`` (8)
``sq8``               ``IndexScalarQuantizer`` (8-bit)            ``-``
====================  =========================================  ==========================================

Trained types (IVF, PQ, SQ8) are trained on a random sample of ``train_size`` vectors (default
``min(N, 100_000)``), seeded. The build writes into a temporary sibling directory and renames it into
place, so an interrupted build leaves any previous index intact; it does not resume (the slow part, encoding,
does: :mod:`heron.retrieval.encoders.cache`), and the next build removes what a killed one left. Kill points
(``HERON_TEST_KILL_AT``): ``faiss.spool``, ``faiss.train``, ``faiss.add`` (per block of vectors added),
``faiss.write``. Opening memory-maps ``index.faiss`` where FAISS can (``IO_FLAG_MMAP``) and reads it otherwise.

On a CUDA machine with ``faiss-gpu``, flat, IVF and SQ8 indexes are searched on the GPU. FAISS's GPU
search takes ``k ≤ 2048``; for a larger ``k`` heron searches document shards on the GPU and merges them,
splitting again any shard whose every hit reached the merged top-k (:func:`search_sharded`), which
returns the exact top-k of an exact index.

Bad input: a query of the wrong dimension, a missing or modified file, and an unknown type raise a
one-line :class:`~heron.errors.HeronError`; ``k`` larger than the corpus is clamped to the corpus size.

Example::

    >>> import numpy as np, tempfile, os
    >>> vectors = np.eye(4, dtype=np.float32)
    >>> path = build_faiss_index([(["a", "b", "c", "d"], vectors)], os.path.join(tempfile.mkdtemp(), "ix"),
    ...                          dim=4, index_type="flat", progress=False)
    >>> ids, scores = FaissIndex.open(path).search(np.array([0, 1, 0, 0], np.float32), k=2)
    >>> ids[0], float(scores[0])
    ('b', 1.0)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from heron.errors import HeronError, IntegrityError
from heron.indexing.base import (
    BatchResult,
    SearchIndex,
    building,
    check_files,
    dense_queries,
    finish_index,
    manifest_field,
    read_doc_ids,
    read_index_manifest,
    watch_files,
)
from heron.storage import kill_point

FORMAT_NAME = "heron-faiss-index"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.npy"
DOC_IDS_FILE = "doc_ids.txt"
ENCODER_DIR = "encoder"
DOCSTORE_DIR = "docstore"
TYPES = ("flat", "hnsw", "ivf-flat", "ivf-pq", "sq8")
GPU_K_LIMIT = 2048  # FAISS's largest k (and nprobe) on the GPU


def _faiss():
    import faiss

    return faiss


def default_params(index_type: str, num_docs: int, dim: int, params: dict | None = None) -> dict:
    """The resolved parameters of an index type for ``num_docs`` vectors of ``dim`` dimensions."""
    if index_type not in TYPES:
        raise HeronError(f"unknown FAISS index type {index_type!r} (choose from {', '.join(TYPES)})")
    p = dict(params or {})
    allowed = {"flat": set(), "sq8": set(), "hnsw": {"m", "ef_construction", "ef_search"},
               "ivf-flat": {"nlist", "nprobe"}, "ivf-pq": {"nlist", "nprobe", "pq_m", "pq_bits"}}[index_type]
    allowed |= {"train_size", "seed"}
    unknown = sorted(set(p) - allowed)
    if unknown:
        raise HeronError(f"FAISS {index_type}: unknown parameter(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(allowed))})")
    out = {"train_size": int(p.get("train_size") or min(num_docs, 100_000)), "seed": int(p.get("seed", 0))}
    if index_type == "hnsw":
        out.update(m=int(p.get("m", 32)), ef_construction=int(p.get("ef_construction", 200)),
                   ef_search=int(p.get("ef_search", 128)))
    if index_type.startswith("ivf"):
        nlist = int(p.get("nlist") or max(1, min(int(4 * np.sqrt(max(num_docs, 1))), max(num_docs // 39, 1))))
        if nlist > num_docs:
            raise HeronError(f"FAISS {index_type}: nlist={nlist} exceeds the {num_docs} vectors to train on")
        out.update(nlist=nlist, nprobe=int(p.get("nprobe", min(16, nlist))))
    if index_type == "ivf-pq":
        pq_m = int(p.get("pq_m") or next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m and dim % m == 0))
        if dim % pq_m:
            raise HeronError(f"FAISS ivf-pq: pq_m={pq_m} must divide the dimension {dim}")
        bits = int(p.get("pq_bits", 8))
        while bits > 1 and (1 << bits) > num_docs:  # a PQ codebook needs at least 2^bits training points
            bits -= 1
        out.update(pq_m=pq_m, pq_bits=bits)
    for key, value in out.items():
        if key != "seed" and value < 1:
            raise HeronError(f"FAISS {index_type}: {key} must be at least 1, not {value}")
    return out


def make_index(index_type: str, dim: int, params: dict):
    """An empty FAISS index (inner product) of ``index_type`` with resolved ``params``."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if index_type == "flat":
        return faiss.IndexFlatIP(dim)
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["m"], ip)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
        return index
    if index_type == "sq8":
        return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
    quantizer = faiss.IndexFlatIP(dim)
    if index_type == "ivf-flat":
        index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"], ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["pq_m"], params["pq_bits"], ip)
    index.nprobe = params["nprobe"]
    return index


def build_faiss_index(
    chunks: Iterable[tuple[list[str], np.ndarray]] | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dim: int,
    index_type: str = "flat",
    params: dict | None = None,
    encoder: dict | None = None,
    encoder_dir: str | os.PathLike | None = None,
    docstore_dir: str | os.PathLike | None = None,
    store_vectors: bool = True,
    kind: str = "dense",
    progress: bool = True,
) -> Path:
    """Build a FAISS index at ``output_dir`` from ``(doc_ids, float32 n × dim)`` chunks or a
    ``DenseShardWriter`` directory (:mod:`heron.indexing.shards`); returns its path.

    The vectors are spooled to ``vectors.npy`` first (memory-mapped, so memory stays bounded by one
    chunk plus what FAISS itself holds), the index trained on a seeded sample, then filled chunk by chunk.
    """
    from tqdm.auto import tqdm

    faiss = _faiss()
    if index_type not in TYPES:
        raise HeronError(f"unknown FAISS index type {index_type!r} (choose from {', '.join(TYPES)})")
    started = time.monotonic()
    with building(output_dir) as (output, build):
        if isinstance(chunks, str | os.PathLike):
            from heron.indexing.shards import iter_dense_shards

            chunks = iter_dense_shards(chunks)
        doc_ids: list[str] = []
        spool = build / "vectors.f32"
        with open(spool, "wb") as handle:
            for ids, vectors in chunks:
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                if vectors.ndim != 2 or vectors.shape[1] != dim:
                    raise HeronError(f"vectors of shape {tuple(vectors.shape)} do not match the index dimension {dim}")
                if len(ids) != len(vectors):
                    raise HeronError(f"{len(ids)} document ids for {len(vectors)} vectors")
                if not np.isfinite(vectors).all():
                    raise HeronError("vectors contain NaN or infinite values")
                handle.write(vectors.tobytes())
                doc_ids.extend(str(i) for i in ids)
        kill_point("faiss.spool")
        num_docs = len(doc_ids)
        if num_docs == 0:
            raise HeronError("no documents to index")
        if len(set(doc_ids)) != num_docs:
            raise HeronError("duplicate document ids")
        if any("\n" in d for d in doc_ids):
            raise HeronError("a document id contains a newline")
        vectors = np.memmap(spool, dtype=np.float32, mode="r", shape=(num_docs, dim))
        resolved = default_params(index_type, num_docs, dim, params)
        index = make_index(index_type, dim, resolved)
        if not index.is_trained:
            rng = np.random.default_rng(resolved["seed"])
            size = min(resolved["train_size"], num_docs)
            sample = np.sort(rng.choice(num_docs, size=size, replace=False))
            for owner in (index, getattr(index, "pq", None)):  # k-means seeds of the coarse and PQ training
                if owner is not None and hasattr(owner, "cp"):
                    owner.cp.seed = resolved["seed"]
            index.train(np.ascontiguousarray(vectors[sample]))
            kill_point("faiss.train")
        step = 65536
        bar = tqdm(total=num_docs, unit="vec", desc=f"FAISS {index_type}", disable=not progress,
                   dynamic_ncols=True)
        for start in range(0, num_docs, step):
            index.add(np.ascontiguousarray(vectors[start:start + step]))
            bar.update(min(step, num_docs - start))
            kill_point("faiss.add")
        bar.close()
        faiss.write_index(index, str(build / INDEX_FILE))
        kill_point("faiss.write")
        if store_vectors:
            np.save(build / VECTORS_FILE, vectors)
        del vectors
        spool.unlink()
        (build / DOC_IDS_FILE).write_text("".join(d + "\n" for d in doc_ids), encoding="utf-8")
        manifest = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": kind,
            "faiss": {"type": index_type, "params": resolved, "faiss_version": faiss.__version__},
            "metric": "inner_product", "dim": int(dim), "num_docs": num_docs,
            "encoder": encoder or {}, "has_vectors": bool(store_vectors),
            "build": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        }
        finish_index(build, manifest, encoder_dir=encoder_dir, docstore_dir=docstore_dir, started=started)
    return output  # published as the with block ended


class FaissIndex(SearchIndex):
    """An opened FAISS index (the :class:`~heron.indexing.base.SearchIndex` interface).

    Search options: ``ef_search`` (hnsw), ``nprobe`` (ivf), ``truncate_dims`` (score by the first n
    dimensions, renormalised, over the stored vectors: Matryoshka-style truncation).
    """

    format_name = FORMAT_NAME
    kind = "faiss"
    search_options = frozenset({"ef_search", "nprobe", "truncate_dims"})

    def __init__(self, path: Path, manifest: dict, index, vectors: np.ndarray | None, doc_ids: list[str]):
        self.path = path
        self.manifest = manifest
        self.index = index
        self.stored = vectors
        self._doc_ids = doc_ids
        self._gpu = None
        self._truncated: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False, device: str | None = "auto") -> FaissIndex:
        faiss = _faiss()
        root = Path(path)
        manifest = read_index_manifest(root, FORMAT_NAME, FORMAT_VERSION, "FAISS")
        files = manifest.get("files") or {}
        for rel in [INDEX_FILE, DOC_IDS_FILE] + ([VECTORS_FILE] if manifest.get("has_vectors") else []):
            if rel not in files:
                raise HeronError(f"{root / rel}: not listed in {MANIFEST_FILE} (incomplete index); rebuild it")
        check_files(root, files, verify)
        mapped = [INDEX_FILE] + ([VECTORS_FILE] if manifest.get("has_vectors") else [])
        guard = watch_files(root, mapped)
        try:
            index = faiss.read_index(str(root / INDEX_FILE), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            try:
                index = faiss.read_index(str(root / INDEX_FILE))
            except RuntimeError as exc:
                raise IntegrityError(root / INDEX_FILE, f"unreadable FAISS index ({str(exc).splitlines()[0]}); "
                                                        f"rebuild the index") from None
        if index.d != int(manifest["dim"]) or index.ntotal != int(manifest["num_docs"]):
            raise IntegrityError(root / INDEX_FILE, f"holds {index.ntotal} vectors of dimension {index.d}, the "
                                                    f"manifest records {manifest['num_docs']} of {manifest['dim']}; "
                                                    f"rebuild the index")
        params = manifest["faiss"]["params"]
        if "ef_search" in params:
            faiss.downcast_index(index).hnsw.efSearch = int(params["ef_search"])
        if "nprobe" in params:
            faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
        vectors = np.load(root / VECTORS_FILE, mmap_mode="r", allow_pickle=False) \
            if manifest.get("has_vectors") else None
        doc_ids = read_doc_ids(root / DOC_IDS_FILE, index.ntotal, files[DOC_IDS_FILE])
        opened = cls(root, manifest, index, vectors, doc_ids)
        opened._guard = guard
        if device != "cpu":
            opened._gpu = _to_gpu(index, manifest["faiss"]["type"], device)
        return opened

    # -- metadata -------------------------------------------------------------------------------------
    dim = manifest_field("dim", doc="Dimension of the vectors.")
    index_type = manifest_field("faiss", "type", cast=str, doc="The FAISS index type (flat, hnsw, …).")

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        faiss = _faiss()
        if ef_search is not None:
            if self.index_type != "hnsw":
                raise HeronError(f"{self.path}: ef_search applies to hnsw indexes, this one is {self.index_type}")
            faiss.downcast_index(self.index).hnsw.efSearch = int(ef_search)
        if nprobe is not None:
            if not self.index_type.startswith("ivf"):
                raise HeronError(f"{self.path}: nprobe applies to ivf indexes, this one is {self.index_type}")
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe)
            if self._gpu is not None:
                self._gpu.nprobe = min(int(nprobe), GPU_K_LIMIT)

    # -- search ---------------------------------------------------------------------------------------
    def search_arrays(self, queries: np.ndarray, k: int, live: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``(Q × k' float32 scores, Q × k' int64 positions)``, ``k' = min(k, N)``; -1 marks no hit.
        ``live`` (bool per position): documents marked False are skipped by FAISS itself while it searches
        (an ``IDSelectorBitmap`` in the search parameters: exact for ``flat``, the same graph walk or lists
        for HNSW / IVF), so the top ``k`` are ``k`` live documents where that many exist."""
        self.check_in_use()
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.shape[1] != self.dim:
            raise HeronError(f"{self.path}: queries have {queries.shape[1]} dimensions, the index has {self.dim} "
                             f"(was it built with another encoder?)")
        k = min(int(k), self.num_docs)
        if k <= 0 or not len(queries):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if live is not None:
            return self.index.search(queries, k, params=self._live_params(live))
        if self._gpu is None:
            return self.index.search(queries, k)
        if k <= GPU_K_LIMIT:
            return self._gpu.search(queries, k)
        if self.index_type == "flat" and self.stored is not None:
            return search_sharded(lambda lo, hi: _gpu_flat_shard(self.stored, lo, hi), self.num_docs, queries, k,
                                  GPU_K_LIMIT)
        return self.index.search(queries, k)  # approximate GPU index and k > 2048: the CPU copy

    def _live_params(self, live: np.ndarray):
        """FAISS search parameters that skip the documents ``live`` marks False, keeping the index's own
        ``ef_search`` / ``nprobe`` (a parameters object replaces them otherwise)."""
        faiss = _faiss()
        live = np.asarray(live, dtype=bool)
        if live.shape != (self.num_docs,):
            raise HeronError(f"{self.path}: a live mask of {live.shape} for {self.num_docs} documents")
        bitmap = np.packbits(live, bitorder="little")
        selector = faiss.IDSelectorBitmap(bitmap)
        if self.index_type == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=faiss.downcast_index(self.index).hnsw.efSearch)
        elif self.index_type.startswith("ivf"):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=faiss.extract_index_ivf(self.index).nprobe)
        else:
            params = faiss.SearchParameters(sel=selector)
        params._heron_keep = (bitmap, selector)  # the selector reads the bitmap's memory: keep both alive
        return params

    def search_batch(self, queries, k: int = 10, allow=None, *, live: np.ndarray | None = None,
                     ef_search: int | None = None, nprobe: int | None = None,
                     truncate_dims: int | None = None) -> BatchResult:
        """Top-``k`` per query vector (``Q × dim``); ``allow`` (document ids): exact inner products over those
        documents; ``live`` (bool per position): skip the documents marked False inside FAISS's own search
        (deleted documents of a segment); ``truncate_dims``: exact search on the first dimensions of the
        stored vectors."""
        self.check_in_use()
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise HeronError(f"{self.path}: query vectors have {queries.shape[1]} dimensions, the index "
                             f"has {self.dim}")
        if ef_search is not None or nprobe is not None:
            self.set_search_params(ef_search=ef_search, nprobe=nprobe)
        if truncate_dims is not None:
            self.check_truncation(truncate_dims)
        if live is not None and (allow is not None or truncate_dims):
            raise HeronError(f"{self.path}: live applies to a plain search, not with allow or truncate_dims")
        if allow is None and not truncate_dims:
            scores, positions = self.search_arrays(queries, k, live)
            ids, out = [], []
            for row_pos, row_scores in zip(positions, scores):
                keep = row_pos >= 0
                ids.append([self._doc_ids[i] for i in row_pos[keep].tolist()])
                out.append(row_scores[keep].astype(np.float32))
            return ids, out
        if self.stored is None:
            raise HeronError(f"{self.path}: an allow-list needs the stored vectors (this index was built with "
                             f"store_vectors: false)")
        positions = self.positions_of(allow) if allow is not None else np.arange(self.num_docs)
        if truncate_dims:
            docs = self._truncated_vectors(truncate_dims)
            docs = docs if allow is None else docs[positions]  # the whole cached matrix is not copied
            queries = _unit(queries[:, :truncate_dims])
        else:
            docs = np.asarray(self.stored[positions], dtype=np.float32)
        results = [_top_k(row, positions, self._doc_ids, k) for row in queries @ docs.T]
        return [r[0] for r in results], [r[1] for r in results]

    def check_truncation(self, n: int) -> None:
        """A one-line error unless ``truncate_dims=n`` can be searched: 1 ≤ n ≤ dim, vectors stored."""
        if not 1 <= n <= self.dim:
            raise HeronError(f"truncate_dims={n} must be between 1 and the dimension {self.dim}")
        if self.stored is None:
            raise HeronError(f"{self.path}: truncation needs the stored vectors (this index was built with "
                             f"store_vectors: false)")

    def _truncated_vectors(self, n: int) -> np.ndarray:
        if n not in self._truncated:
            self._truncated = {n: _unit(np.asarray(self.stored[:, :n], dtype=np.float32))}
        return self._truncated[n]

    def check_queries(self, raw: list) -> np.ndarray:
        return dense_queries(raw, self.dim)

    def vectors(self, positions) -> np.ndarray:
        """Float32 vectors of the documents at ``positions``: the stored copy, else FAISS's reconstruction."""
        positions = [int(p) for p in positions]
        if not positions:
            return np.zeros((0, self.dim), np.float32)
        self.check_in_use()
        if self.stored is not None:
            return np.asarray(self.stored[positions], dtype=np.float32)
        try:
            return np.stack([self.index.reconstruct(p) for p in positions]).astype(np.float32)
        except RuntimeError:
            raise HeronError(f"{self.path}: this FAISS index can neither return its vectors nor holds a copy; "
                             f"rebuild it with the vectors stored") from None

    def describe(self) -> dict:
        return {**super().describe(), "dim": self.dim, "faiss": self.manifest.get("faiss")}

    def __repr__(self) -> str:
        return f"FaissIndex({str(self.path)!r}, type={self.index_type}, docs={self.num_docs}, dim={self.dim})"


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _top_k(scores: np.ndarray, positions: np.ndarray, doc_ids: list[str], k: int) -> tuple[list[str], np.ndarray]:
    """The ``k`` best of ``scores`` (over documents ``positions``), ties broken by position."""
    k = min(k, len(scores))
    if k <= 0:
        return [], np.zeros(0, np.float32)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((positions[top], -scores[top]))]
    return [doc_ids[i] for i in positions[top].tolist()], scores[top].astype(np.float32)


def search_sharded(make_shard: Callable[[int, int], Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]],
                   num_docs: int, queries: np.ndarray, k: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over ``num_docs`` documents with a searcher that returns at most ``limit`` hits.

    ``make_shard(lo, hi)`` gives a searcher over documents ``[lo, hi)`` (positions local to the shard).
    The documents are cut into ``ceil(k / limit)`` shards and each searched with ``min(limit, size)``;
    a shard whose every hit lies inside the merged top-k may hold more of it, so it is split in two and
    searched again, until no shard is truncated. With exact shard searchers the result is the exact
    top-k (ties aside). Returns ``(scores, positions)`` like ``faiss.Index.search``.
    """
    nq = len(queries)
    k = min(k, num_docs)
    bounds = np.linspace(0, num_docs, max(1, -(-k // limit)) + 1).astype(np.int64)
    pending = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    done_scores = [np.zeros((nq, 0), np.float32)]
    done_pos = [np.zeros((nq, 0), np.int64)]
    while pending:
        results = []
        for lo, hi in pending:
            kk = min(limit, hi - lo)
            scores, pos = make_shard(lo, hi)(queries, kk)
            pos = np.where(pos >= 0, pos + lo, -1)
            results.append((lo, hi, kk, scores, pos))
        all_scores = np.concatenate(done_scores + [r[3] for r in results], axis=1)
        all_pos = np.concatenate(done_pos + [r[4] for r in results], axis=1)
        kth = _kth_scores(all_scores, all_pos, k)
        pending = []
        for lo, hi, kk, scores, pos in results:
            truncated = kk < hi - lo and bool(np.any((scores[:, -1] >= kth) & (pos[:, -1] >= 0)))
            if truncated:  # this shard may hold more of the top-k than it returned: split it
                mid = (lo + hi) // 2
                pending += [(lo, mid), (mid, hi)]
            else:
                done_scores.append(scores)
                done_pos.append(pos)
    all_scores = np.concatenate(done_scores, axis=1)
    all_pos = np.concatenate(done_pos, axis=1)
    order = np.argsort(-np.where(all_pos >= 0, all_scores, -np.inf), axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_pos, order, 1)


def _kth_scores(scores: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    masked = np.where(positions >= 0, scores, -np.inf)
    if masked.shape[1] < k:
        return np.full(len(scores), -np.inf)
    return -np.partition(-masked, k - 1, axis=1)[:, k - 1]


def flat_shard(vectors: np.ndarray, lo: int, hi: int):
    """A CPU exact searcher over ``vectors[lo:hi]`` (used by the tests of :func:`search_sharded`)."""
    faiss = _faiss()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors[lo:hi], dtype=np.float32))
    return index.search


def _gpu_resources():
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    global _GPU_RES
    try:
        return _GPU_RES
    except NameError:
        _GPU_RES = faiss.StandardGpuResources()
        return _GPU_RES


def _gpu_flat_shard(vectors: np.ndarray, lo: int, hi: int):
    faiss = _faiss()
    cpu = faiss.IndexFlatIP(vectors.shape[1])
    cpu.add(np.ascontiguousarray(vectors[lo:hi], dtype=np.float32))
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, cpu).search


def _to_gpu(index, index_type: str, device: str | None):
    """A GPU copy of ``index`` when faiss-gpu and a CUDA device are present (HNSW stays on the CPU)."""
    if device not in (None, "auto", "cuda") and not str(device).startswith("cuda"):
        raise HeronError(f"unknown device {device!r} (choose auto, cpu or cuda)")
    res = _gpu_resources()
    if res is None:
        if device not in (None, "auto"):
            raise HeronError(f"device {device!r} requested but faiss has no GPU support here (install faiss-gpu)")
        return None
    if index_type == "hnsw":
        return None
    faiss = _faiss()
    gpu = faiss.index_cpu_to_gpu(res, 0, index)
    if index_type.startswith("ivf"):
        gpu.nprobe = min(faiss.extract_index_ivf(index).nprobe, GPU_K_LIMIT)
    return gpu
