"""Engine-neutral vector sets: the integer document impacts and integer query weights every engine gets.

A vector set is a folder::

    meta.json              name, num_docs, vocab_size, nnz, num_queries, where the vectors came from
    docs_indptr.bin        int64[N+1]   row pointers (raw little-endian, read in chunks without mmap)
    docs_terms.bin         int32[nnz]   term ids, ascending within a row
    docs_impacts.bin       uint8[nnz]   integer impacts 1..255
    df.npy                 int64[V]     document frequency of every term
    queries.npz            indptr, terms (int32), weights (int32, the integerised weights every engine
                           gets), float_weights (float32, before integerisation), qids

Documents are named by their position (``"0"``, ``"1"``, ...) in every engine, so a result is a row
number. Terms are named by their id (``"1037"``) in engines that want strings.

**Query integerisation** (the same for every engine): terms absent from every document are dropped,
then ``q_t = rint(255 * w_t / max_t w_t)``; weights that round to 0 are dropped. Scaling a query by a
positive constant does not change its ranking, and integer weights are what Lucene (``Map<String,
Integer>``), PISA (a weight is a repeat count) and BMP (``u32``) accept; heron and Seismic take them as
floats. Every score is then an exact integer, below 2**24, so float32 engines compute it exactly too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

QUERY_INT_MAX = 255
DOC_CHUNK = 65536


def integerize_query(terms: np.ndarray, weights: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(terms int32 ascending, weights int32 ≥ 1)`` of one float query (see the module docstring)."""
    terms = np.asarray(terms, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    keep = (weights > 0) & (df[terms] > 0)
    terms, weights = terms[keep], weights[keep]
    if not len(terms):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    order = np.argsort(terms, kind="stable")
    terms, weights = terms[order], weights[order]
    q = np.rint(QUERY_INT_MAX * weights / weights.max()).astype(np.int64)
    keep = q > 0
    return terms[keep].astype(np.int32), q[keep].astype(np.int32)


class VectorSetWriter:
    """Write a vector set a chunk of documents at a time (memory: one chunk)."""

    def __init__(self, root: str | os.PathLike, vocab_size: int, meta: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.vocab_size = int(vocab_size)
        self.meta = dict(meta)
        self.num_docs = 0
        self.nnz = 0
        self.df = np.zeros(self.vocab_size, np.int64)
        self._indptr = open(self.root / "docs_indptr.bin", "wb")
        self._terms = open(self.root / "docs_terms.bin", "wb")
        self._impacts = open(self.root / "docs_impacts.bin", "wb")
        self._indptr.write(np.zeros(1, np.int64).tobytes())

    def add_docs(self, indptr: np.ndarray, terms: np.ndarray, impacts: np.ndarray) -> None:
        """Append rows ``terms[indptr[i]:indptr[i+1]]`` (indptr starts at 0; terms ascending per row)."""
        indptr = np.asarray(indptr, np.int64)
        terms = np.asarray(terms, np.int32)
        impacts = np.asarray(impacts)
        if len(terms) and (impacts.min() < 1 or impacts.max() > 255):
            raise ValueError("impacts must lie in 1..255")
        if len(terms) and (terms.min() < 0 or terms.max() >= self.vocab_size):
            raise ValueError("term id out of range")
        self._indptr.write((indptr[1:] + self.nnz).tobytes())
        self._terms.write(terms.tobytes())
        self._impacts.write(impacts.astype(np.uint8).tobytes())
        self.df += np.bincount(terms, minlength=self.vocab_size)
        self.num_docs += len(indptr) - 1
        self.nnz += len(terms)

    def close(self, queries: list[tuple[np.ndarray, np.ndarray]], qids: list[str] | None = None) -> VectorSet:
        """Finish the documents, integerise and store the float ``queries`` ``(terms, weights)``."""
        for f in (self._indptr, self._terms, self._impacts):
            f.close()
        np.save(self.root / "df.npy", self.df)
        q_int = [integerize_query(t, w, self.df) for t, w in queries]
        indptr = np.zeros(len(queries) + 1, np.int64)
        np.cumsum([len(t) for t, _ in q_int], out=indptr[1:])
        float_w = []
        for (t, w), (ti, _) in zip(queries, q_int):
            lookup = dict(zip(np.asarray(t).tolist(), np.asarray(w, np.float32).tolist()))
            float_w.append(np.array([lookup[x] for x in ti.tolist()], np.float32))
        np.savez(self.root / "queries.npz", indptr=indptr,
                 terms=np.concatenate([t for t, _ in q_int] or [np.zeros(0, np.int32)]),
                 weights=np.concatenate([w for _, w in q_int] or [np.zeros(0, np.int32)]),
                 float_weights=np.concatenate(float_w or [np.zeros(0, np.float32)]),
                 qids=np.array(qids if qids is not None else [str(i) for i in range(len(queries))]))
        meta = dict(self.meta, num_docs=self.num_docs, vocab_size=self.vocab_size, nnz=self.nnz,
                    num_queries=len(queries), query_int_max=QUERY_INT_MAX,
                    empty_queries=int(sum(1 for t, _ in q_int if not len(t))))
        (self.root / "meta.json").write_text(json.dumps(meta, indent=1))
        return VectorSet(self.root)


class VectorSet:
    """A vector set folder opened for reading."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.meta = json.loads((self.root / "meta.json").read_text())
        self.num_docs = int(self.meta["num_docs"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.nnz = int(self.meta["nnz"])
        self._queries = None

    @staticmethod
    def exists(root: str | os.PathLike) -> bool:
        return (Path(root) / "meta.json").exists()

    @property
    def name(self) -> str:
        return self.meta["name"]

    def df(self) -> np.ndarray:
        return np.load(self.root / "df.npy")

    def indptr(self) -> np.ndarray:
        return np.fromfile(self.root / "docs_indptr.bin", dtype=np.int64)

    def doc_chunks(self, chunk: int = DOC_CHUNK, start: int = 0, stop: int | None = None
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(first row, indptr from 0, terms int32, impacts uint8)`` a chunk of rows at a time, read with
        plain file reads (no memory map, so a reader's RSS stays one chunk)."""
        stop = self.num_docs if stop is None else min(stop, self.num_docs)
        with open(self.root / "docs_indptr.bin", "rb") as fi, open(self.root / "docs_terms.bin", "rb") as ft, \
                open(self.root / "docs_impacts.bin", "rb") as fv:
            for lo in range(start, stop, chunk):
                hi = min(lo + chunk, stop)
                fi.seek(lo * 8)
                ptr = np.fromfile(fi, dtype=np.int64, count=hi - lo + 1)
                a, b = int(ptr[0]), int(ptr[-1])
                ft.seek(a * 4)
                terms = np.fromfile(ft, dtype=np.int32, count=b - a)
                fv.seek(a)
                impacts = np.fromfile(fv, dtype=np.uint8, count=b - a)
                yield lo, ptr - a, terms, impacts

    def docs_csr(self, dtype=np.float32) -> sp.csr_matrix:
        """All documents as an ``N × V`` CSR matrix of impacts (loads everything)."""
        indptr = self.indptr()
        terms = np.fromfile(self.root / "docs_terms.bin", dtype=np.int32)
        impacts = np.fromfile(self.root / "docs_impacts.bin", dtype=np.uint8).astype(dtype)
        return sp.csr_matrix((impacts, terms, indptr), shape=(self.num_docs, self.vocab_size))

    def queries_arrays(self) -> dict[str, np.ndarray]:
        if self._queries is None:
            with np.load(self.root / "queries.npz") as z:
                self._queries = {k: z[k] for k in z.files}
        return self._queries

    def queries(self, limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(terms int32, integer weights int32)`` per query (empty queries included)."""
        q = self.queries_arrays()
        ptr = q["indptr"]
        n = len(ptr) - 1 if limit is None else min(limit, len(ptr) - 1)
        return [(q["terms"][ptr[i]:ptr[i + 1]], q["weights"][ptr[i]:ptr[i + 1]]) for i in range(n)]

    def queries_csr(self, dtype=np.float64) -> sp.csr_matrix:
        q = self.queries_arrays()
        return sp.csr_matrix((q["weights"].astype(dtype), q["terms"], q["indptr"]),
                             shape=(len(q["indptr"]) - 1, self.vocab_size))

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())


def from_heron_index(index_path: str | os.PathLike, query_texts: dict[str, str], out: str | os.PathLike,
                     name: str, source: dict) -> VectorSet:
    """A vector set from a heron index (its quantised document impacts, exactly) and its own query
    encoder (``SparseIndexRetriever.encode``) applied to ``query_texts``."""
    from heron.indexing.inverted import InvertedIndex
    from heron.retrieval.sparse import SparseIndexRetriever

    index = InvertedIndex.open(index_path)
    if index.dtype != np.uint8:
        raise ValueError(f"{index_path}: the benchmark needs uint8 impacts, the index has {index.dtype}")
    fwd = index.forward_matrix()
    writer = VectorSetWriter(out, index.vocab_size, dict(name=name, source=dict(source, heron_index=str(index_path),
                                                                               impact_scale=index.scale)))
    for lo in range(0, index.num_docs, DOC_CHUNK):
        block = fwd[lo:lo + DOC_CHUNK]
        block.sort_indices()
        writer.add_docs(block.indptr, block.indices, np.asarray(block.data))
    qids = list(query_texts)
    encoded = sp.csr_matrix(SparseIndexRetriever(index).encode([query_texts[q] for q in qids]))
    queries = [(encoded.indices[encoded.indptr[i]:encoded.indptr[i + 1]],
                encoded.data[encoded.indptr[i]:encoded.indptr[i + 1]]) for i in range(encoded.shape[0])]
    return writer.close(queries, qids)


def from_csr(docs: sp.csr_matrix, queries: sp.csr_matrix, out: str | os.PathLike, name: str, source: dict,
             scale: float | None = None) -> VectorSet:
    """A vector set from float document and query matrices (documents quantised like heron's uint8:
    ``clip(rint(w * scale), 1, 255)`` with ``scale = 255 / max weight`` unless given)."""
    docs = sp.csr_matrix(docs, dtype=np.float64)
    docs.sort_indices()
    docs.eliminate_zeros()
    scale = float(scale if scale is not None else 255.0 / docs.data.max())
    writer = VectorSetWriter(out, docs.shape[1], dict(name=name, source=dict(source, impact_scale=scale)))
    for lo in range(0, docs.shape[0], DOC_CHUNK):
        block = docs[lo:lo + DOC_CHUNK]
        writer.add_docs(block.indptr, block.indices, np.clip(np.rint(block.data * scale), 1, 255))
    queries = sp.csr_matrix(queries)
    qs = [(queries.indices[queries.indptr[i]:queries.indptr[i + 1]],
           queries.data[queries.indptr[i]:queries.indptr[i + 1]]) for i in range(queries.shape[0])]
    return writer.close(qs)
