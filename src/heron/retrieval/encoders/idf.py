"""Inference-free query encoding: a query is the set of its tokens, each weighted by its IDF.

Used with a SPLADE *document* encoder (inference-free / IDF-aware SPLADE, OpenSearch's
``opensearch-neural-sparse-encoding-doc-*`` and sentence-transformers' ``SparseStaticEmbedding``): the
query is tokenised with the document model's tokenizer, without special tokens, and each *distinct*
token ``t`` gets the weight ``idf(t)``; repeated tokens count once. The score with a document is then
``Σ_{t ∈ q} idf(t) · w_d(t)`` and no neural network runs at query time.

The IDF comes from document frequencies over the encoded corpus (a token is "in" a document when its
SPLADE weight there is non-zero)::

    idf(t) = max(0, log(N / (1 + df(t))))                 formula="log"  (default)
    idf(t) = log(1 + (N − df(t) + 0.5) / (df(t) + 0.5))   formula="bm25"

Special tokens ([CLS], [SEP], [PAD], [UNK], ...) get weight 0 (weights loaded from a sentence-transformers
``SparseStaticEmbedding`` are kept as trained, for parity with it).

Persistence is JSON + ``.npy`` (read with ``allow_pickle=False``) next to the tokenizer files; nothing
is pickled.

Example::

    >>> enc = IDFQueryEncoder.fit("path/to/tokenizer", df=np.array([...]), num_docs=1000)  # doctest: +SKIP
    >>> enc.encode(["what causes fever"])                                                   # doctest: +SKIP
    <1x30522 sparse matrix of type '<class 'numpy.float32'>' with 3 stored elements ...>
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError
from heron.storage import read_versioned_json, save_array_atomic, write_json_atomic

IDF_CONFIG = "idf_query.json"
IDF_WEIGHTS = "idf.npy"
IDF_DF = "df.npy"
IDF_FORMAT = "heron-idf-query"
IDF_VERSION = 1
FORMULAS = ("log", "bm25")


def idf_from_df(df: np.ndarray, num_docs: int, formula: str = "log") -> np.ndarray:
    """The IDF vector (float32, never negative) for document frequencies ``df`` over ``num_docs``."""
    df = np.asarray(df, dtype=np.float64)
    n = float(num_docs)
    if formula == "log":
        idf = np.log(max(n, 1.0) / (1.0 + df))
    elif formula == "bm25":
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
    else:
        raise ValueError(f"unknown idf formula {formula!r} (choose from {', '.join(FORMULAS)})")
    return np.maximum(idf, 0.0).astype(np.float32)


def document_frequencies(matrix: sp.spmatrix, vocab_size: int | None = None) -> np.ndarray:
    """Per column, the number of rows where it is non-zero (``int64``)."""
    csr = sp.csr_matrix(matrix)
    csr.eliminate_zeros()
    csr.sum_duplicates()
    width = vocab_size if vocab_size is not None else csr.shape[1]
    return np.bincount(csr.indices, minlength=width).astype(np.int64)


def document_frequencies_from_shards(directory: str | Path) -> tuple[np.ndarray, int]:
    """``(df, num_docs)`` over an encoded-shards directory (:mod:`heron.indexing.shards`)."""
    from heron.indexing.shards import iter_shards, read_manifest

    width = int(read_manifest(directory)["vocab_size"])
    df = np.zeros(width, dtype=np.int64)
    num_docs = 0
    for ids, matrix in iter_shards(directory):
        df += document_frequencies(matrix, width)
        num_docs += len(ids)
    return df, num_docs


def _load_tokenizer(tokenizer):
    if not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from heron.retrieval.encoders.hf import load_tokenizer

    return load_tokenizer(tokenizer)


class IDFQueryEncoder:
    """Tokenise, keep each distinct non-special token once, weight it by ``idf``.

    ``tokenizer`` is a Hugging Face tokenizer or a folder holding one (the document model's). ``idf`` has
    one entry per column of the document vectors. ``max_length`` truncates the query's tokens;
    ``lowercase`` lower-cases the text first (for models whose sentence-transformers config says
    ``do_lower_case``); ``top_k`` keeps only the ``k`` highest-weighted tokens.
    """

    def __init__(self, tokenizer, idf: np.ndarray, *, max_length: int | None = None, lowercase: bool = False,
                 top_k: int | None = None, formula: str | None = None, num_docs: int | None = None,
                 df: np.ndarray | None = None, zero_special_tokens: bool = True):
        self.tokenizer = _load_tokenizer(tokenizer)
        idf = np.asarray(idf, dtype=np.float32).reshape(-1).copy()
        if not np.all(np.isfinite(idf)):
            raise HeronError("idf weights must be finite")
        self.zero_special_tokens = bool(zero_special_tokens)
        if self.zero_special_tokens:
            special = [i for i in getattr(self.tokenizer, "all_special_ids", []) if 0 <= i < len(idf)]
            idf[special] = 0.0
        self.idf = idf
        self.max_length = int(max_length) if max_length else None
        self.lowercase = bool(lowercase)
        if top_k is not None and top_k <= 0:
            raise ValueError("top_k must be positive (or None)")
        self.top_k = top_k
        self.formula = formula
        self.num_docs = num_docs
        self.df = None if df is None else np.asarray(df, dtype=np.int64)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, tokenizer, df: np.ndarray, num_docs: int, *, formula: str = "log", **kwargs) -> IDFQueryEncoder:
        """From document frequencies ``df`` (one per vocabulary entry) over ``num_docs`` documents."""
        df = np.asarray(df, dtype=np.int64)
        if df.ndim != 1:
            raise ValueError("df must be a 1-D array (one entry per vocabulary id)")
        if num_docs < 0 or (len(df) and df.max() > num_docs):
            raise ValueError(f"document frequencies exceed num_docs={num_docs}")
        return cls(tokenizer, idf_from_df(df, num_docs, formula), formula=formula, num_docs=int(num_docs),
                   df=df, **kwargs)

    @classmethod
    def fit_matrix(cls, tokenizer, docs: sp.spmatrix, **kwargs) -> IDFQueryEncoder:
        """From an encoded corpus (``N × V`` document vectors)."""
        return cls.fit(tokenizer, document_frequencies(docs), docs.shape[0], **kwargs)

    @classmethod
    def fit_shards(cls, tokenizer, directory: str | Path, **kwargs) -> IDFQueryEncoder:
        """From an encoded-shards directory written by :func:`heron.retrieval.encoders.splade.encode_to_shards`."""
        df, num_docs = document_frequencies_from_shards(directory)
        return cls.fit(tokenizer, df, num_docs, **kwargs)

    @classmethod
    def from_sentence_transformers(cls, directory: str | Path, **kwargs) -> IDFQueryEncoder:
        """From a sentence-transformers ``SparseStaticEmbedding`` module folder (tokenizer + ``weight``)."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise HeronError(f"{directory}: no model.safetensors (SparseStaticEmbedding weights)")
        tensors = load_file(str(weights))
        if "weight" not in tensors:
            raise HeronError(f"{weights}: no 'weight' tensor")
        kwargs.setdefault("zero_special_tokens", False)  # the weights as trained, like sentence-transformers
        return cls(directory, tensors["weight"], formula="static", **kwargs)

    # -- encoding ---------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.idf)

    def encode(self, texts: Iterable[str]) -> sp.csr_matrix:
        """``Q × V`` CSR (float32) of IDF weights of each query's distinct tokens; blank text → empty row."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        width = len(self.idf)
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        live = [i for i, t in enumerate(texts) if t.strip()]
        if live:
            batch = [texts[i].lower() if self.lowercase else texts[i] for i in live]
            kwargs = {"truncation": True, "max_length": self.max_length} if self.max_length else {}
            ids_list = self.tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                                      return_token_type_ids=False, **kwargs)["input_ids"]
        counts = np.zeros(len(texts), dtype=np.int64)
        for row, ids in zip(live, ids_list if live else []):
            ids = np.unique(np.asarray(ids, dtype=np.int64))
            ids = ids[(ids >= 0) & (ids < width)]
            w = self.idf[ids]
            keep = w > 0
            ids, w = ids[keep], w[keep]
            if self.top_k is not None and len(ids) > self.top_k:
                top = np.sort(np.argsort(-w, kind="stable")[: self.top_k])
                ids, w = ids[top], w[top]
            cols.append(ids.astype(np.int32))
            vals.append(w)
            counts[row] = len(ids)
        np.cumsum(counts, out=indptr[1:])
        indices = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int32)
        data = np.concatenate(vals) if vals else np.zeros(0, dtype=np.float32)
        return sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=(len(texts), width))

    __call__ = encode

    # -- description and persistence ------------------------------------------------------------------
    def describe(self) -> dict:
        return {"type": "idf", "formula": self.formula, "num_docs": self.num_docs, "vocab_size": self.vocab_size,
                "max_length": self.max_length, "lowercase": self.lowercase, "top_k": self.top_k,
                "zero_special_tokens": self.zero_special_tokens}

    def save(self, directory: str | Path) -> None:
        """Tokenizer files, ``idf.npy`` (float32), ``df.npy`` when known, and ``idf_query.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        save_array_atomic(directory / IDF_WEIGHTS, self.idf)
        if self.df is not None:
            save_array_atomic(directory / IDF_DF, self.df)
        write_json_atomic(directory / IDF_CONFIG, {"format": IDF_FORMAT, "version": IDF_VERSION, **self.describe()})

    @classmethod
    def load(cls, directory: str | Path) -> IDFQueryEncoder:
        directory = Path(directory)
        config = read_versioned_json(directory / IDF_CONFIG, IDF_FORMAT, IDF_VERSION, "heron IDF query encoder")
        try:
            idf = np.load(directory / IDF_WEIGHTS, allow_pickle=False)
            df = np.load(directory / IDF_DF, allow_pickle=False) if (directory / IDF_DF).is_file() else None
        except (OSError, ValueError) as exc:
            raise HeronError(f"{directory}: unreadable IDF query encoder ({exc})") from None
        if len(idf) != config.get("vocab_size", len(idf)):
            raise HeronError(f"{directory / IDF_WEIGHTS}: {len(idf)} weights, config says {config['vocab_size']}")
        return cls(directory, idf, max_length=config.get("max_length"), lowercase=config.get("lowercase", False),
                   top_k=config.get("top_k"), formula=config.get("formula"), num_docs=config.get("num_docs"),
                   df=df, zero_special_tokens=config.get("zero_special_tokens", True))
