"""Multi-vector index: token vectors per document (fp16, memory-mapped), optionally MUVERA FDEs in FAISS.

An index is a directory::

    manifest.json   format name + version, dim, counts, encoder, reduction (CRISP / pruning), MUVERA
                    config, ``files``: {relative path: {bytes, xxh3_128[, dtype, shape]}}, ``checksum``
    vectors.npy     float16[T × dim]   every document's (reduced) token vectors, document after document
    offsets.npy     int64[N + 1]       document i owns rows offsets[i]:offsets[i+1]
    doc_ids.txt     one external id per line
    fde/            optional: a FAISS index (:mod:`heron.indexing.faiss_index`) of the documents' FDEs
    encoder/        the query encoder (a PyLate-layout ColBERT folder)
    docstore/       titles and text for display

Search is exact MaxSim over all documents (brute force), or MUVERA: the query FDE fetches the top
``candidates`` documents from ``fde/`` and exact MaxSim reranks them (:mod:`heron.multivector.maxsim`).
Built in a temporary sibling directory and renamed into place (atomic); the next build removes what a killed
one left. Kill points (``HERON_TEST_KILL_AT``): ``multivector.spool``, ``multivector.fde``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from heron.errors import HeronError, IntegrityError, QueryError
from heron.indexing import base
from heron.storage import kill_point

FORMAT_NAME = "heron-multivector-index"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


def build_multivector_index(chunks: Iterable[tuple[list[str], list[np.ndarray]]], output_dir: str | os.PathLike, *,
                            dim: int, encoder: dict | None = None, encoder_dir=None, docstore_dir=None,
                            reduction: dict | None = None, query_reduction: dict | None = None,
                            muvera: dict | None = None, progress: bool = True) -> Path:
    """Write a multi-vector index from ``(doc_ids, [n_i × dim arrays])`` chunks; returns its path.

    ``reduction``: ``{"method": "kmeans"|"tail"|"spacing", "k": int | None, "fraction": float | None}``
    applied to every document (post-hoc CRISP or a pruning baseline). ``muvera``: FDE parameters
    (``reps``, ``k_sim``, ``d_proj``, ``seed``, ``final_dim``; ``faiss`` type, default flat) to add
    ``fde/``. ``query_reduction`` is recorded for the searcher (CRISP clusters queries too).
    """
    from tqdm.auto import tqdm

    from heron.multivector import crisp

    started = time.monotonic()
    with base.building(output_dir) as (output, build):
        fde_encoder = None
        fde_params = None
        if muvera is not None:
            from heron.multivector.muvera import MuveraEncoder

            fde_params = dict(muvera)
            faiss_type = fde_params.pop("faiss", "flat")
            faiss_params = fde_params.pop("faiss_params", None) or {}
            try:
                fde_encoder = MuveraEncoder(dim, **fde_params)
            except TypeError as exc:
                raise HeronError(f"muvera: unknown parameter ({exc}); known: reps, k_sim, d_proj, seed, "
                                 f"fill_empty, final_dim, faiss, faiss_params") from None
            fde_spool = open(build / "fde.f32", "wb")
        doc_ids: list[str] = []
        lengths: list[int] = []
        bar = tqdm(unit="doc", desc="multi-vector index", disable=not progress, dynamic_ncols=True)
        with open(build / "vectors.f16", "wb") as spool:
            for ids, clouds in chunks:
                if len(ids) != len(clouds):
                    raise HeronError(f"{len(ids)} document ids for {len(clouds)} token-vector sets")
                for doc_id, cloud in zip(ids, clouds):
                    cloud = np.asarray(cloud, dtype=np.float32).reshape(-1, dim) if len(cloud) else \
                        np.zeros((0, dim), np.float32)
                    if cloud.shape[1] != dim:
                        raise HeronError(f"document {doc_id!r}: vectors of dimension {cloud.shape[1]}, index has {dim}")
                    if reduction:
                        cloud = crisp.reduce(cloud, reduction.get("method", "kmeans"), reduction.get("k"),
                                             reduction.get("fraction"), seed=reduction.get("seed", 0))
                    spool.write(cloud.astype(np.float16).tobytes())
                    lengths.append(len(cloud))
                    doc_ids.append(str(doc_id))
                    if fde_encoder is not None:
                        fde_spool.write(fde_encoder.encode_document(cloud).astype(np.float32).tobytes())
                bar.update(len(ids))
        bar.close()
        if fde_encoder is not None:
            fde_spool.close()
        kill_point("multivector.spool")
        if not doc_ids:
            raise HeronError("no documents to index")
        if len(set(doc_ids)) != len(doc_ids) or any("\n" in d for d in doc_ids):
            raise HeronError("document ids must be unique and contain no newline")
        total = int(sum(lengths))
        raw = np.memmap(build / "vectors.f16", dtype=np.float16, mode="r", shape=(total, dim)) if total else \
            np.zeros((0, dim), np.float16)
        np.save(build / "vectors.npy", raw)
        del raw
        (build / "vectors.f16").unlink()
        np.save(build / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        (build / "doc_ids.txt").write_text("".join(d + "\n" for d in doc_ids), encoding="utf-8")
        if fde_encoder is not None:
            from heron.indexing.faiss_index import build_faiss_index

            fdes = np.memmap(build / "fde.f32", dtype=np.float32, mode="r", shape=(len(doc_ids), fde_encoder.dimension))
            build_faiss_index([(doc_ids, fdes)], build / "fde", dim=fde_encoder.dimension, index_type=faiss_type,
                              params=faiss_params, encoder=fde_encoder.describe(), store_vectors=False,
                              kind="muvera", progress=False)
            del fdes
            (build / "fde.f32").unlink()
            kill_point("multivector.fde")
        manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "dim": int(dim),
                    "num_docs": len(doc_ids), "num_vectors": total, "encoder": encoder or {},
                    "reduction": reduction, "query_reduction": query_reduction,
                    "muvera": None if fde_encoder is None else {**fde_encoder.describe(), "faiss": faiss_type,
                                                                 "faiss_params": faiss_params}}
        base.finish_index(build, manifest, encoder_dir=encoder_dir, docstore_dir=docstore_dir, started=started)
    return output  # published as the with block ended


class MultiVectorIndex(base.SearchIndex):
    """An opened multi-vector index (the :class:`~heron.indexing.base.SearchIndex` interface); search option
    ``candidates``: MUVERA's top candidates reranked by exact MaxSim (default: brute force over all)."""

    format_name = FORMAT_NAME
    kind = "multivector"
    search_options = frozenset({"candidates"})

    def __init__(self, path: Path, manifest: dict, vectors: np.ndarray, offsets: np.ndarray, doc_ids: list[str],
                 fde):
        self.path, self.manifest, self.tokens, self.offsets, self._doc_ids, self.fde = \
            path, manifest, vectors, offsets, doc_ids, fde

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False) -> MultiVectorIndex:
        root = Path(path)
        manifest = base.read_index_manifest(root, FORMAT_NAME, FORMAT_VERSION, "multi-vector")
        files = manifest.get("files") or {}
        for rel in ("vectors.npy", "offsets.npy", "doc_ids.txt"):
            if rel not in files:
                raise IntegrityError(root / rel, f"not listed in {MANIFEST_FILE} (incomplete index); rebuild it")
        base.check_files(root, files, verify)
        guard = base.watch_files(root, ["vectors.npy"])
        vectors = np.load(root / "vectors.npy", mmap_mode="r", allow_pickle=False)
        offsets = np.load(root / "offsets.npy", allow_pickle=False)
        doc_ids = base.read_doc_ids(root / "doc_ids.txt", entry=files["doc_ids.txt"])
        if len(offsets) != len(doc_ids) + 1 or int(offsets[-1]) != len(vectors) or offsets[0] != 0 \
                or np.any(np.diff(offsets) < 0):
            raise IntegrityError(root / "offsets.npy", "offsets, document ids and vectors disagree; rebuild the index")
        fde = None
        if manifest.get("muvera"):
            from heron.indexing.faiss_index import FaissIndex

            fde = FaissIndex.open(root / "fde", verify=verify, device="cpu")
        opened = cls(root, manifest, vectors, offsets, doc_ids, fde)
        opened._guard = guard
        return opened

    dim = base.manifest_field("dim", doc="Dimension of the token vectors.")

    def document(self, position: int) -> np.ndarray:
        return np.asarray(self.tokens[self.offsets[position]:self.offsets[position + 1]], dtype=np.float32)

    #: Searches score from a float32 copy of the token store, made on first use, when it fits in this many
    #: bytes (converting fp16 rows on every query costs more than the matrix product itself); larger
    #: stores are scored from the memory-mapped fp16 file.
    float32_copy_limit = 4 << 30

    def _scoring_vectors(self) -> np.ndarray:
        if self.tokens.size * 4 > self.float32_copy_limit:
            return self.tokens
        if getattr(self, "_vectors_f32", None) is None:
            self._vectors_f32 = np.asarray(self.tokens, dtype=np.float32)
        return self._vectors_f32

    def fde_encoder(self):
        from heron.multivector.muvera import MuveraEncoder

        cfg = {k: v for k, v in self.manifest["muvera"].items() if k in ("reps", "k_sim", "d_proj", "seed",
                                                                          "fill_empty", "final_dim")}
        return MuveraEncoder(self.dim, **cfg)

    def check_in_use(self) -> None:
        super().check_in_use()
        if self.fde is not None:
            self.fde.check_in_use()

    def search_batch(self, queries, k: int = 10, allow=None, candidates: int | None = None) -> base.BatchResult:
        """:meth:`search` for each query's token-vector matrix."""
        self.check_in_use()
        results = [self.search(q, k=k, allow=allow, candidates=candidates) for q in queries]
        return [r[0] for r in results], [r[1] for r in results]

    def check_queries(self, raw: list) -> list[np.ndarray]:
        out = []
        for v in raw:
            try:
                array = np.asarray(v, dtype=np.float32)
            except (TypeError, ValueError):
                array = None
            if array is None or array.ndim != 2 or array.shape[1] != self.dim or not len(array) \
                    or not base.finite_within(array):
                raise QueryError(f"a multi-vector index: the vector must be a non-empty list of {self.dim}-dimensional "
                                 f"token vectors")
            out.append(array)
        return out

    def vectors(self, positions) -> list[np.ndarray]:
        """The token-vector matrix (float32) of each document at ``positions``."""
        self.check_in_use()
        return [self.document(int(p)) for p in positions]

    def describe(self) -> dict:
        return {**super().describe(), "dim": self.dim, "num_vectors": self.manifest.get("num_vectors"),
                "reduction": self.manifest.get("reduction"), "muvera": self.manifest.get("muvera")}

    def search(self, query: np.ndarray, k: int = 10, allow=None,
               candidates: int | None = None) -> tuple[list[str], np.ndarray]:
        """Top-``k`` by exact MaxSim: over every document, over MUVERA's top ``candidates``, or — when
        ``allow`` (document ids) is given — over exactly those documents."""
        from heron.multivector.maxsim import rerank

        self.check_in_use()
        query = np.asarray(query, dtype=np.float32)
        if query.ndim != 2 or query.shape[1] != self.dim:
            raise HeronError(f"{self.path}: query vectors of shape {query.shape}, the index has dimension {self.dim}")
        if allow is not None:
            pool = self.positions_of(allow)
        elif candidates is None:
            pool = np.arange(self.num_docs)
        else:
            if self.fde is None:
                raise HeronError(f"{self.path}: built without MUVERA FDEs (fde/); rebuild with muvera, or search "
                                 f"by brute force")
            if not hasattr(self, "_fde_encoder"):
                self._fde_encoder = self.fde_encoder()
            _, positions = self.fde.search_arrays(self._fde_encoder.encode_query(query)[None, :], candidates)
            pool = positions[0][positions[0] >= 0]
        idx, scores = rerank(query, self._scoring_vectors(), self.offsets, pool, min(k, len(pool)))
        return [self._doc_ids[i] for i in idx.tolist()], scores
