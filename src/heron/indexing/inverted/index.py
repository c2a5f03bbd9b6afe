"""Reading heron's inverted index: validation, memory-mapped arrays, row access and search.

Example::

    >>> idx = InvertedIndex.open("indexes/scifact-bm25")            # doctest: +SKIP
    >>> ids, scores = idx.search([idx.term_ids["cell"]], [1.0], k=10)  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError, IntegrityError, QueryError
from heron.indexing.base import MAX_WEIGHT, SearchIndex, check_files, manifest_field, read_doc_ids, watch_files
from heron.indexing.inverted import approx as approx_search
from heron.indexing.inverted import codec, forward, kernels
from heron.indexing.inverted import format as fmt
from heron.indexing.inverted.kernels import MODES
from heron.indexing.inverted.topk import readonly
from heron.storage.integrity import check_bytes


def query_pairs(queries) -> list:
    """Sparse queries as ``(terms, weights)`` pairs: the rows of a ``Q × V`` scipy sparse matrix as (term ids,
    weights); a ``{term: weight}`` dict as ``(dict, None)``; a pair as it is."""
    if sp.issparse(queries):
        queries = sp.csr_matrix(queries)
        return [(queries.indices[queries.indptr[i]:queries.indptr[i + 1]],
                 queries.data[queries.indptr[i]:queries.indptr[i + 1]]) for i in range(queries.shape[0])]
    return [(q, None) if isinstance(q, dict) else q for q in queries]


def pack_queries(prepared: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prepared queries (:func:`prepare_query`) as the batch kernels' ``(q_indptr int64, q_terms int32,
    q_weights float32)``: query ``q`` is ``q_terms[q_indptr[q]:q_indptr[q + 1]]``."""
    q_indptr = np.zeros(len(prepared) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in prepared], out=q_indptr[1:])
    q_terms = np.concatenate([t for t, _ in prepared] or [np.zeros(0, np.int32)]).astype(np.int32)
    q_weights = np.concatenate([w for _, w in prepared] or [np.zeros(0, np.float32)]).astype(np.float32)
    return q_indptr, q_terms, q_weights


def prepare_query(q_terms, q_weights, term_ids, offsets: np.ndarray, vocab_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One query (term ids, or term strings looked up in ``term_ids()``, or a ``{term: weight}`` dict with no
    ``q_weights``; weights default to 1) as the kernels take it: int32 ids ascending and unique, float32 summed
    weights; terms out of range, of weight 0 or without postings in ``offsets`` dropped
    (:func:`kernels.prepare_terms`). ValueError for a negative or non-finite weight or mismatched lengths."""
    if isinstance(q_terms, dict):
        if q_weights is not None:
            raise TypeError("pass either a {term: weight} dict or terms and weights")
        q_terms, q_weights = list(q_terms.keys()), list(q_terms.values())
    terms = list(q_terms) if not isinstance(q_terms, np.ndarray) else q_terms
    weights = np.ones(len(terms), np.float64) if q_weights is None else \
        np.asarray(q_weights, dtype=np.float64).reshape(-1)
    if len(weights) != len(terms):
        raise ValueError(f"{len(terms)} query terms but {len(weights)} weights")
    if len(terms) and isinstance(terms[0], str):
        lookup = term_ids()
        ids = np.array([lookup.get(t, -1) for t in terms], dtype=np.int64)
    else:
        ids = np.asarray(terms, dtype=np.int64).reshape(-1)
    ids, weights, status = kernels.prepare_terms(np.ascontiguousarray(ids), np.ascontiguousarray(weights),
                                                 offsets, np.int64(vocab_size))
    if status:
        raise ValueError("query weights must be finite and non-negative")
    return ids, weights


def prepare_queries(queries, term_ids, offsets: np.ndarray, vocab_size: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Many queries (:func:`query_pairs`' inputs) prepared as :func:`prepare_query` prepares one and packed
    as :func:`pack_queries` packs them: a ``Q × V`` sparse matrix or ``(term ids, weights)`` pairs of
    numeric arrays go through one compiled call (the same per-query rule,
    :func:`kernels.prepare_terms_batch`), anything else (term strings, dicts, no weights) query by query."""
    if sp.issparse(queries) and queries.dtype.kind in "biuf":
        m = sp.csr_matrix(queries)
        indptr, ids, weights = m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data
    else:
        pairs = query_pairs(queries)
        numeric = all(isinstance(t, np.ndarray) and isinstance(w, np.ndarray) and t.dtype.kind in "iu"
                      and w.dtype.kind in "biuf" and t.ndim == 1 and w.shape == t.shape for t, w in pairs)
        if not numeric:
            return pack_queries([prepare_query(t, w, term_ids, offsets, vocab_size) for t, w in pairs])
        indptr = np.zeros(len(pairs) + 1, np.int64)
        np.cumsum([len(t) for t, _ in pairs], out=indptr[1:])
        ids = np.concatenate([t.astype(np.int64) for t, _ in pairs] or [np.zeros(0, np.int64)])
        weights = np.concatenate([w.astype(np.float64) for _, w in pairs] or [np.zeros(0, np.float64)])
    q_indptr, q_terms, q_weights, bad = kernels.prepare_terms_batch(
        np.ascontiguousarray(indptr), np.ascontiguousarray(ids), np.ascontiguousarray(weights, np.float64),
        offsets, np.int64(vocab_size))
    if bad >= 0:
        raise ValueError(f"query {int(bad)}: query weights must be finite and non-negative")
    return q_indptr, q_terms, q_weights


class InvertedIndex(SearchIndex):
    """An opened index directory (the :class:`~heron.indexing.base.SearchIndex` interface). Arrays are
    memory-mapped read-only; ids and vocab load lazily. Search options: ``mode``, ``threads`` and the
    approximate-search knobs (``preset``, ``query_cut``, ``heap_factor``).

    The exact methods decode the query terms' compressed blocks as they search, verifying each block's
    checksum (``verify_blocks``; set it False on an instance only to measure what the check costs: the
    bounds checks that keep a corrupt block from producing wrong answers still run)."""

    format_name = fmt.FORMAT_NAME
    kind = "inverted"
    search_options = frozenset({"mode", "threads", "preset", "query_cut", "heap_factor"})
    verify_blocks = True

    def __init__(self, path: Path, manifest: dict, arrays: dict[str, np.ndarray], approx: dict[str, np.ndarray]):
        self.path = path
        self.manifest = manifest
        self.arrays = arrays
        self.approx = approx
        self._doc_ids: list[str] | None = None
        self._vocab: list[str] | None = None
        self._term_ids: dict[str, int] | None = None
        self._forward: sp.csr_matrix | None = None  # decoded from the postings when there is no forward index
        # the forward index's per-chunk "checked" flags: each chunk is checked once, on first read (forward.py)
        self._forward_checked = forward.new_checked(manifest["num_docs"]) if "forward_offsets" in arrays else None
        for name, array in arrays.items():
            setattr(self, name, array)

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False) -> InvertedIndex:
        """Open and validate an index: manifest (format version, seal), and every listed file's size, shape,
        dtype and content hash (:func:`~heron.indexing.base.check_files`: small files in full, large ones
        by their ends). ``verify=True`` hashes every byte of every file."""
        root = Path(path)
        if not root.is_dir():
            raise HeronError(f"{root}: no such index directory")
        manifest = fmt.read_manifest(root)
        where = root / fmt.MANIFEST_FILE
        try:
            num_docs, nnz = int(manifest["num_docs"]), int(manifest["nnz"])
            vocab_size = int(manifest["vocab_size"])
            dtype = fmt.impact_dtype(manifest["quantization"]["dtype"])
            float(manifest["quantization"]["scale"])
            num_blocks = int(manifest["block_max"]["num_blocks"])
            num_words = int(manifest["postings"]["num_words"])
            count_bytes = int(manifest["postings"]["count_bytes"])
            int(manifest["postings"]["block_size"])
            forward = bool(manifest.get("forward_index"))
            files = dict(manifest["files"])
            approx_names = list((manifest.get("approx") or {}).get("arrays", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise HeronError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None

        shapes = fmt.expected_shapes(num_docs, vocab_size, nnz, num_blocks, num_words, count_bytes)
        names = {**fmt.ARRAYS, **(fmt.FORWARD_ARRAYS if forward else {})}
        required = [fmt.array_file(name) for name in names]
        required += [manifest.get("doc_ids_file", fmt.DOC_IDS_FILE), manifest.get("vocab_file", fmt.VOCAB_FILE)]
        required += [f"{fmt.APPROX_DIR}/{fmt.array_file(name)}" for name in approx_names]
        if forward and fmt.array_file("forward_checksum") not in files:
            raise HeronError(f"{root}: the forward index has an older layout (int32 term ids, no "
                             f"forward_checksum.npy); rebuild the index")
        for rel in required:
            if rel not in files:
                raise HeronError(f"{root / rel}: not listed in {fmt.MANIFEST_FILE} (incomplete index); "
                                 "rebuild the index")
        for name, kind in names.items():
            entry = files[fmt.array_file(name)]
            want = fmt.array_dtype(kind, dtype, vocab_size)
            if entry.get("dtype") != want or list(entry.get("shape", [])) != list(shapes[name]):
                raise HeronError(f"{root / fmt.array_file(name)}: the manifest records {entry.get('dtype')}"
                                 f"{entry.get('shape')}, expected {want}{list(shapes[name])}; rebuild the index")
        check_files(root, files, verify)

        mapped = [fmt.array_file(name) for name in names]
        mapped += [f"{fmt.APPROX_DIR}/{fmt.array_file(name)}" for name in approx_names]
        guard = watch_files(root, mapped)  # before mapping: a later change of size is then always seen
        arrays = {name: _load(root / fmt.array_file(name)) for name in names}
        approx = {name: _load(root / fmt.APPROX_DIR / fmt.array_file(name)) for name in approx_names}
        offsets = codec.decode_counts(arrays["postings_counts"], vocab_size)  # derived, in memory
        if offsets is None or offsets[-1] != nnz:
            raise IntegrityError(root / "postings_counts.npy", "posting counts are malformed or do not add up to "
                                                              "the postings (corrupt file); rebuild the index")
        offsets.flags.writeable = False
        arrays["postings_offsets"] = offsets
        block_size = int(manifest["postings"]["block_size"])
        layout = codec.derive_layout(offsets, arrays["block_bits"], block_size) if block_size > 0 else None
        if layout is None:
            raise IntegrityError(root / "postings_counts.npy", "posting counts do not match the number of blocks "
                                                              "(corrupt file); rebuild the index")
        if layout[1][-1] != num_words:
            raise IntegrityError(root / "block_bits.npy", "block widths do not add up to postings_words "
                                                         "(corrupt file); rebuild the index")
        arrays["block_offsets"], arrays["block_words"] = layout  # derived, in memory
        for name, view in zip(codec.COMPRESSED_NAMES, codec.compressed_arrays(arrays)):
            arrays[name] = view  # read-only plain views, made once: queries pass them to the kernels as they are
        opened = cls(root, manifest, arrays, approx)
        opened._guard = guard
        return opened

    # -- metadata -----------------------------------------------------------------------------------
    nnz = manifest_field("nnz", doc="Number of postings.")
    vocab_size = manifest_field("vocab_size", doc="Number of terms.")
    scale = manifest_field("quantization", "scale", cast=float, doc="Impact = round(weight × scale).")
    dtype = manifest_field("quantization", "dtype", cast=np.dtype, doc="The impacts' integer type.")
    block_size = manifest_field("postings", "block_size", doc="Postings per compressed (and block-max) block.")

    @property
    def has_forward_index(self) -> bool:
        """Whether the index stores a forward index (only with approximate structures)."""
        return "forward_offsets" in self.arrays

    @property
    def bytes_per_posting(self) -> float:
        """Size of the exact-search structures (postings, blocks and their metadata) per posting."""
        size = sum(int(self.manifest["files"][fmt.array_file(name)]["bytes"]) for name in fmt.ARRAYS)
        return size / max(1, self.nnz)

    @property
    def dim(self) -> int:
        """The dimension of the vectors: the vocabulary size."""
        return self.vocab_size

    @property
    def doc_ids(self) -> list[str]:
        """External document ids, index order (read on first use)."""
        if self._doc_ids is None:
            rel = self.manifest.get("doc_ids_file", fmt.DOC_IDS_FILE)
            self._doc_ids = read_doc_ids(self.path / rel, self.num_docs, self.manifest["files"].get(rel))
        return self._doc_ids

    @property
    def vocab(self) -> list[str]:
        """Term strings by term id (read on first use)."""
        if self._vocab is None:
            rel = self.manifest.get("vocab_file", fmt.VOCAB_FILE)
            path = self.path / rel
            try:
                data = path.read_bytes()
                check_bytes(path, data, self.manifest["files"].get(rel))
                vocab = json.loads((gzip.decompress(data) if rel.endswith(".gz") else data).decode("utf-8"))
            except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError):
                raise IntegrityError(path, "corrupt vocabulary file; rebuild the index") from None
            if not isinstance(vocab, list) or len(vocab) != self.vocab_size:
                raise IntegrityError(path, f"vocabulary does not have {self.vocab_size} terms (corrupt file); "
                                           f"rebuild the index")
            self._vocab = vocab
        return self._vocab

    @property
    def term_ids(self) -> dict[str, int]:
        """Term string → term id."""
        if self._term_ids is None:
            self._term_ids = {term: i for i, term in enumerate(self.vocab)}
        return self._term_ids

    # -- the SearchIndex interface beyond search_batch ------------------------------------------------
    def check_queries(self, raw: list) -> list[dict[str, float]]:
        """``{term: weight}`` query vectors with weights in [0, MAX_WEIGHT] (unknown terms are ignored)."""
        out = []
        for v in raw:
            if not isinstance(v, dict) or not all(isinstance(t, str) and isinstance(w, (int, float)) and
                                                  not isinstance(w, bool) and np.isfinite(w) and 0 <= w <= MAX_WEIGHT
                                                  for t, w in v.items()):
                raise QueryError(f"a sparse index: the vector must map terms to weights in [0, {MAX_WEIGHT:g}], "
                                 f"e.g. {{\"coffee\": 1.2}}")
            out.append({t: float(w) for t, w in v.items()})
        return out

    def vectors(self, positions) -> sp.csr_matrix:
        """Dequantized stored rows (``len(positions) × V``) of the documents at ``positions``.

        With a forward index only those rows are read (and their chunks checked). Without one, the rows
        come from :meth:`forward_matrix`, which decodes every posting list once and keeps the whole matrix
        for the life of this object: ``nnz × (4 + impact bytes) + 8 (N + 1)`` bytes (~640 MB at 1M documents
        of 125 non-zeros), plus about as much again while it is built. Build with ``approx`` (which keeps a
        memory-mapped forward index) where that matters."""
        self.check_in_use()
        positions = np.asarray(list(positions), dtype=np.int64).reshape(-1)
        if self.has_forward_index:
            rows = self._stored_rows(positions)
        else:
            rows = self.forward_matrix()[positions]
        rows.data = self._dequantize(rows.data)
        return rows

    def _stored_rows(self, positions: np.ndarray) -> sp.csr_matrix:
        """The forward index's rows at ``positions`` (impacts), read without building the whole matrix."""
        if len(positions) and (positions.min() < -self.num_docs or positions.max() >= self.num_docs):
            raise IndexError(f"document index out of range [0, {self.num_docs})")
        positions = positions % max(self.num_docs, 1)
        for chunk in np.unique(positions >> forward.CHUNK_SHIFT).tolist():
            self._check_forward(chunk << forward.CHUNK_SHIFT, min((chunk + 1) << forward.CHUNK_SHIFT, self.num_docs))
        a = self.arrays
        offsets = a["forward_offsets"]
        starts, ends = np.asarray(offsets[positions]), np.asarray(offsets[positions + 1])
        indptr = np.zeros(len(positions) + 1, np.int64)
        np.cumsum(ends - starts, out=indptr[1:])
        take = np.repeat(starts - indptr[:-1], ends - starts) + np.arange(int(indptr[-1]))
        return sp.csr_matrix((np.asarray(a["forward_impacts"][take]), np.asarray(a["forward_terms"][take], np.int32),
                              indptr), shape=(len(positions), self.vocab_size))

    def describe(self) -> dict:
        return {**super().describe(), "vocab_size": self.vocab_size, "nnz": self.nnz,
                "quantization": self.manifest.get("quantization"), "approx": bool(self.approx),
                "bytes_per_posting": round(self.bytes_per_posting, 3)}

    def df(self) -> np.ndarray:
        """Posting-list length (document frequency) of every term, int64[V]."""
        return np.diff(self.arrays["postings_offsets"])

    def __len__(self) -> int:
        return self.num_docs

    def __repr__(self) -> str:
        return (f"InvertedIndex({str(self.path)!r}, docs={self.num_docs:,}, terms={self.vocab_size:,}, "
                f"postings={self.nnz:,}, {self.dtype.name}, encoder={self.encoder.get('type', '?')!r})")

    # -- documents ----------------------------------------------------------------------------------
    def row(self, doc_idx: int, dequantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(terms int32, weights)`` of one document: weights = impacts / scale (float32), or the
        raw impacts with ``dequantize=False``."""
        doc_idx = int(doc_idx)
        if not 0 <= doc_idx < self.num_docs:
            raise IndexError(f"document index {doc_idx} out of range [0, {self.num_docs})")
        self.check_in_use()
        offsets, terms, impacts = self._forward_arrays(doc_idx, doc_idx + 1)
        lo, hi = int(offsets[doc_idx]), int(offsets[doc_idx + 1])
        terms = np.array(terms[lo:hi], dtype=np.int32)
        impacts = np.array(impacts[lo:hi])
        return terms, (self._dequantize(impacts) if dequantize else impacts)

    def iter_rows(self, dequantize: bool = True, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every document's ``(terms, weights)`` in index order, read a chunk of documents at a time."""
        offsets, all_terms, all_impacts = self._forward_arrays(0, 0)
        for start in range(0, self.num_docs, chunk):
            self.check_in_use()
            stop = min(start + chunk, self.num_docs)
            self._check_forward(start, stop)
            bounds = np.array(offsets[start:stop + 1])
            base = int(bounds[0])
            terms = np.array(all_terms[base:int(bounds[-1])], dtype=np.int32)
            impacts = np.array(all_impacts[base:int(bounds[-1])])
            weights = self._dequantize(impacts) if dequantize else impacts
            bounds -= base
            for i in range(stop - start):
                yield terms[bounds[i]:bounds[i + 1]], weights[bounds[i]:bounds[i + 1]]

    def forward_matrix(self, dequantize: bool = False) -> sp.csr_matrix:
        """The documents as an ``N × V`` CSR matrix (impacts, or weights with ``dequantize``): the forward
        index when the index has one, else the postings decoded (every block checked) and transposed,
        once, then kept in memory."""
        offsets, terms, data = self._forward_arrays()
        data = self._dequantize(np.asarray(data)) if dequantize else data
        return sp.csr_matrix((data, terms, offsets), shape=(self.num_docs, self.vocab_size), copy=False)

    def postings(self) -> tuple[np.ndarray, np.ndarray]:
        """Every posting list decoded and checked: ``(docs int32[nnz], impacts[nnz])`` in term order, term
        ``t`` at ``[postings_offsets[t], postings_offsets[t+1])``."""
        self.check_in_use()
        return codec.decode_postings(self.arrays, self.num_docs, self.block_size, self.path)

    def _forward_arrays(self, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offsets int64[N+1], terms, impacts)`` of the documents: stored (the rows of documents
        ``[lo, hi)`` checked, every row by default), or decoded once."""
        if self.has_forward_index:
            self._check_forward(lo, self.num_docs if hi is None else hi)
            a = self.arrays
            return a["forward_offsets"], a["forward_terms"], a["forward_impacts"]
        if self._forward is None:
            docs, impacts = self.postings()
            csc = sp.csc_matrix((impacts, docs, np.asarray(self.arrays["postings_offsets"])),
                                shape=(self.num_docs, self.vocab_size), copy=False)
            forward = csc.tocsr()
            forward.sort_indices()
            self._forward = forward
        return (self._forward.indptr.astype(np.int64, copy=False), self._forward.indices.astype(np.int32, copy=False),
                self._forward.data)

    def _check_forward(self, lo: int, hi: int) -> None:
        """Check the forward-index chunks of documents ``[lo, hi)`` not checked yet (:mod:`.forward`)."""
        if (not self.has_forward_index or hi <= lo
                or self._forward_checked[lo >> forward.CHUNK_SHIFT:((hi - 1) >> forward.CHUNK_SHIFT) + 1].all()):
            return
        a, err = self.arrays, np.zeros(2, np.int64)
        with self._forward_errors():
            if not forward.check_range(readonly(a["forward_offsets"]), readonly(a["forward_terms"]),
                                       readonly(a["forward_impacts"]), readonly(a["forward_checksum"]),
                                       self._forward_checked, np.int64(self.vocab_size), np.int64(lo), np.int64(hi),
                                       err):
                forward.raise_error(err)

    @contextmanager
    def _forward_errors(self):
        """Name the damaged file of a failed forward-index check: the forward files (and the approximate
        structures) are hashed in full, and the first mismatch is raised; if none, the check's own error."""
        try:
            yield
        except forward.ForwardIndexError as exc:
            files = self.manifest["files"]
            suspects = {rel: files[rel] for rel in files
                        if rel.startswith(("forward_", f"{fmt.APPROX_DIR}/"))}
            check_files(self.path, suspects, verify=True)
            raise IntegrityError(self.path / exc.path, exc.problem) from None

    def _dequantize(self, impacts: np.ndarray) -> np.ndarray:
        return (impacts.astype(np.float64) / self.scale).astype(np.float32)

    # -- search -------------------------------------------------------------------------------------
    def search(self, q_terms, q_weights=None, k: int = 10, mode: str = "exact", allow=None,
               **knobs) -> tuple[list[str], np.ndarray]:
        """Top-``k`` documents for one query: ``(external ids, float32 scores)``, best first.

        ``q_terms`` are term ids (or term strings, or a ``{term: weight}`` dict with no
        ``q_weights``); terms absent from the index are ignored, so a query with none left returns
        empty results. ``mode`` (:data:`~heron.indexing.inverted.kernels.MODES`): ``"exact"`` (exact
        top-k with block-max dynamic pruning, the default), ``"taat"`` (exhaustive term-at-a-time, the
        same results) or ``"approx"`` (needs ``approx/``; knobs ``query_cut``, ``heap_factor`` or
        ``preset``). ``allow`` restricts results to some documents: a boolean / uint8 mask over
        documents, or a sequence of document indices or external ids (``approx`` then ranks only the
        allowed documents among those it visits).
        """
        knobs = self._knobs(mode, knobs)
        self.check_in_use()
        terms, weights = self._prepare_query(q_terms, q_weights)
        if k <= 0 or not len(terms):
            return [], np.zeros(0, dtype=np.float32)
        mask = self._allow_mask(allow)
        a = self.arrays
        if mode in ("exact", "taat"):
            idx, scores = kernels.search_compressed(mode, a, self.num_docs, terms, weights, int(k), mask,
                                                    self.block_size, root=self.path, verify=self.verify_blocks)
        else:
            with self._forward_errors():
                idx, scores = approx_search.search_approx(
                    self.approx, a["forward_offsets"], a["forward_terms"], a["forward_impacts"], self.num_docs,
                    terms, weights, int(k), knobs["query_cut"], knobs["heap_factor"], mask,
                    forward_checksum=a["forward_checksum"], checked=self._forward_checked)
        return self._results(np.asarray(idx)[None], np.asarray(scores)[None])[0]

    def search_batch(self, queries, k: int = 10, mode: str = "exact", allow=None, threads: int | None = None,
                     **knobs) -> tuple[list[list[str]], list[np.ndarray]]:
        """Top-``k`` for many queries at once (parallel kernels): per query, ids and float32 scores.

        ``queries``: a ``Q × V`` scipy sparse matrix, or a sequence of ``(terms, weights)`` pairs or
        ``{term: weight}`` dicts. ``mode`` and ``knobs`` as in :meth:`search`. ``allow``: one filter (as
        in :meth:`search`) for every query, or ``None``.
        """
        knobs = self._knobs(mode, knobs)
        self.check_in_use()
        q_indptr, q_terms, q_weights = prepare_queries(queries, lambda: self.term_ids,
                                                       self.arrays["postings_offsets"], self.vocab_size)
        nq = len(q_indptr) - 1
        if allow is None:
            allow_indptr, allow_docs = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        else:
            docs = np.flatnonzero(self._allow_mask(allow)).astype(np.int32)
            allow_indptr = np.arange(nq + 1, dtype=np.int64) * len(docs)
            allow_docs = np.tile(docs, nq)
        if k <= 0 or not nq:
            return [[] for _ in range(nq)], [np.zeros(0, np.float32) for _ in range(nq)]
        arrays = ({**self.arrays, **self.approx, "forward_checked": self._forward_checked} if mode == "approx"
                  else dict(self.arrays))
        extra = {} if mode == "approx" else {"root": self.path, "verify": self.verify_blocks,
                                             "block_size": self.block_size}
        with self._forward_errors():
            idx, scores = kernels.search_batch(mode, arrays, q_indptr, q_terms, q_weights, int(k), allow_indptr,
                                               allow_docs, int(threads or os.cpu_count() or 1),
                                               num_docs=self.num_docs, **extra, **knobs)
        results = self._results(np.asarray(idx), np.asarray(scores))
        return [ids for ids, _ in results], [row for _, row in results]

    # -- helpers ------------------------------------------------------------------------------------
    def _prepare_query(self, q_terms, q_weights) -> tuple[np.ndarray, np.ndarray]:
        """Term ids (int32, ascending, unique, present in the index) and their summed float32 weights."""
        return prepare_query(q_terms, q_weights, lambda: self.term_ids, self.arrays["postings_offsets"],
                             self.vocab_size)

    def _allow_mask(self, allow) -> np.ndarray:
        """``allow`` as the kernels' uint8 mask; an empty array means no filter."""
        if allow is None:
            return np.zeros(0, dtype=np.uint8)
        if isinstance(allow, np.ndarray) and allow.dtype in (np.bool_, np.uint8) and allow.shape == (self.num_docs,):
            return allow.astype(np.uint8, copy=False)
        items = list(allow)
        mask = np.zeros(self.num_docs, dtype=np.uint8)
        if items and isinstance(items[0], str):
            items = self.positions_of(items).tolist()
        if items:
            positions = np.asarray(items, dtype=np.int64)
            if positions.min() < 0 or positions.max() >= self.num_docs:
                raise ValueError(f"allow holds a document index outside [0, {self.num_docs})")
            mask[positions] = 1
        return mask

    def _knobs(self, mode: str, knobs: dict) -> dict:
        """The kernel knobs of a search: ``query_cut`` and ``heap_factor`` for ``approx`` (from ``preset``
        and / or given), none for the exact modes."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode != "approx":
            if knobs:
                raise TypeError(f"mode={mode!r} takes no knobs, got {sorted(knobs)}")
            return {}
        if not self.approx:
            raise HeronError(f"{self.path}: this index has no approximate-search structures; "
                             f"rebuild it with approx parameters or search with mode='exact'")
        knobs = dict(knobs)
        preset = knobs.pop("preset", None)
        resolved = {}
        if preset is not None:
            if preset not in approx_search.PRESETS:
                raise HeronError(f"unknown approximate-search preset {preset!r}; "
                                 f"choose one of {sorted(approx_search.PRESETS)}")
            resolved.update(approx_search.PRESETS[preset])
        resolved.update(knobs)
        missing = {"query_cut", "heap_factor"} - set(resolved)
        if missing:
            raise TypeError(f"approx search needs {sorted(missing)} (or preset=...)")
        return resolved

    def _results(self, idx: np.ndarray, scores: np.ndarray) -> list[tuple[list[str], np.ndarray]]:
        """Kernel rows (document indices padded with -1, impact-scale scores) as ids and float32 scores."""
        doc_ids = self.doc_ids
        scaled = (scores / np.float32(self.scale)).astype(np.float32)
        return [([doc_ids[i] for i in row[keep].tolist()], row_scores[keep])
                for row, row_scores, keep in zip(idx, scaled, idx >= 0)]


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IntegrityError(path, f"unreadable array ({exc}); rebuild the index") from None


def open_index(path: str | os.PathLike, verify: bool = False) -> InvertedIndex:
    """Shorthand for :meth:`InvertedIndex.open`."""
    return InvertedIndex.open(path, verify=verify)


__all__: Sequence[str] = ("InvertedIndex", "open_index")
