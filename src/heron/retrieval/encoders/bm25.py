"""BM25 as sparse vectors: Lucene's formula, so any sparse index can serve it.

Document ``d`` gets, for each term ``t`` it contains, the weight

    w(t, d) = idf(t) · tf / (tf + k1 · (1 − b + b · |d| / avgdl))
    idf(t)  = ln(1 + (N − df + 0.5) / (df + 0.5))

(Lucene ≥ 8 ``BM25Similarity``; its constant ``(k1 + 1)`` numerator is dropped, as Lucene does). A
query is the vector of its term counts, so ``score = q · d`` is exactly Lucene's BM25 sum over query
terms. With ``lucene_norms=True`` (default) the document length is rounded the way Lucene stores it
(one byte, ``SmallFloat.intToByte4``), which is what Anserini's scores use.

Example::

    >>> enc = BM25Encoder().fit(["the cat sat", "a dog barked at the cat"])
    >>> docs = enc.document_vectors()
    >>> q = enc.encode_queries(["dog"])
    >>> (q @ docs.T).toarray().round(3)
    array([[0.   , 0.581]])
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError, IntegrityError
from heron.retrieval.encoders.analyzer import EnglishAnalyzer
from heron.storage import read_json

_NUM_FREE_VALUES = 24  # 255 - SmallFloat.longToInt4(Integer.MAX_VALUE)


def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    encoded = (i >> shift) & 0x07
    return encoded | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


def lucene_length(length: int) -> int:
    """The document length Lucene's BM25 sees: ``byte4ToInt(intToByte4(length))``."""
    if length < _NUM_FREE_VALUES:
        return length
    code = _NUM_FREE_VALUES + _long_to_int4(length - _NUM_FREE_VALUES)
    return _NUM_FREE_VALUES + _int4_to_long(code - _NUM_FREE_VALUES)


class BM25Encoder:
    """Fits corpus statistics, then emits BM25 document vectors and count query vectors."""

    def __init__(self, k1: float = 0.9, b: float = 0.4, analyzer: EnglishAnalyzer | None = None,
                 lucene_norms: bool = True):
        from heron.retrieval.options import BM25Options, checked

        checked(BM25Options, "bm25", k1=k1, b=b)  # finite, k1 ≥ 0, b in [0, 1]: else a one-line error
        self.k1, self.b, self.lucene_norms = float(k1), float(b), lucene_norms
        self.analyzer = analyzer or EnglishAnalyzer()
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)
        self.num_docs = 0
        self.avgdl = 0.0
        self._tf: sp.csr_matrix | None = None
        self._lengths = np.zeros(0, dtype=np.int64)

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> BM25Encoder:
        """Analyse every document once; keep term frequencies, lengths and document frequencies."""
        vocab: dict[str, int] = {}
        indptr, indices, counts, lengths = [0], [], [], []
        for text in texts:
            terms = self.analyzer(text)
            bag: dict[int, int] = {}
            for term in terms:
                tid = vocab.setdefault(term, len(vocab))
                bag[tid] = bag.get(tid, 0) + 1
            indices.extend(bag.keys())
            counts.extend(bag.values())
            indptr.append(len(indices))
            lengths.append(len(terms))
        self.vocab = vocab
        n = len(lengths)
        self._tf = sp.csr_matrix(
            (np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr)),
            shape=(n, len(vocab)),
        )
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self.df = np.bincount(self._tf.indices, minlength=len(vocab)).astype(np.int64)
        # Lucene counts only documents that have the field (a non-empty analysed text)
        self.num_docs = int((self._lengths > 0).sum())
        self.avgdl = float(self._lengths.sum() / max(self.num_docs, 1))
        return self

    def idf(self) -> np.ndarray:
        """``idf(t)`` per term, as Lucene computes it: in double precision, then rounded to float32."""
        df = self.df.astype(np.float64)
        return np.log(1.0 + (self.num_docs - df + 0.5) / (df + 0.5)).astype(np.float32)

    def document_vectors(self) -> sp.csr_matrix:
        """``N × V`` CSR matrix of BM25 document weights (rows in corpus order).

        Computed in float32 in the order of operations of Lucene's ``BM25Scorer`` (``1 / norm`` from a
        float table, then ``idf − idf / (1 + tf · (1 / norm))``), so that each term's score is the very
        float Lucene computes: with :func:`bm25_scores` (sums in double, rounded to float) documents tie
        exactly where Lucene's tie, and trec_eval orders them the same way.
        """
        if self._tf is None:
            raise RuntimeError("fit() the encoder first")
        lengths = self._lengths
        if self.lucene_norms:
            lengths = np.fromiter((lucene_length(int(x)) for x in lengths), dtype=np.float64, count=len(lengths))
        f32 = np.float32
        k1, b = f32(self.k1), f32(self.b)
        avgdl = f32(max(self.avgdl, 1e-9))
        inverse_norm = f32(1) / (k1 * ((f32(1) - b) + b * lengths.astype(f32) / avgdl))
        tf = self._tf
        row_inverse_norm = np.repeat(inverse_norm, np.diff(tf.indptr))
        idf = self.idf()[tf.indices]
        weights = idf - idf / (f32(1) + tf.data.astype(f32) * row_inverse_norm)
        return sp.csr_matrix((weights.astype(f32), tf.indices.copy(), tf.indptr.copy()), shape=tf.shape)

    # -- queries ----------------------------------------------------------------------------------
    def encode_queries(self, texts: Iterable[str]) -> sp.csr_matrix:
        """``Q × V`` CSR matrix of query term counts; terms unseen in the corpus are dropped."""
        indptr, indices, counts = [0], [], []
        for text in texts:
            bag: dict[int, int] = {}
            for term in self.analyzer(text):
                tid = self.vocab.get(term)
                if tid is not None:
                    bag[tid] = bag.get(tid, 0) + 1
            indices.extend(bag.keys())
            counts.extend(bag.values())
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr)),
            shape=(len(indptr) - 1, len(self.vocab)),
        )

    # -- persistence (JSON + numpy, no pickle) ----------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        meta = {"k1": self.k1, "b": self.b, "lucene_norms": self.lucene_norms, "num_docs": self.num_docs,
                "avgdl": self.avgdl, "analyzer": self.analyzer.describe(), "vocab": terms}
        (directory / "bm25.json").write_text(json.dumps(meta))
        np.save(directory / "bm25_df.npy", self.df)

    @classmethod
    def load(cls, directory: str | Path) -> BM25Encoder:
        directory = Path(directory)
        meta = read_json(directory / "bm25.json", "BM25 encoder settings", stored=True)
        if not isinstance(meta, dict) or not {"k1", "b", "lucene_norms", "num_docs", "avgdl", "vocab"} <= meta.keys():
            raise IntegrityError(directory / "bm25.json", "malformed BM25 encoder settings; rebuild the index")
        enc = cls(k1=meta["k1"], b=meta["b"], lucene_norms=meta["lucene_norms"])
        if meta.get("analyzer") != enc.analyzer.describe():  # its vocabulary holds another analyzer's terms
            raise HeronError(f"{directory}: built with another text analysis ({meta.get('analyzer')}, this heron "
                             f"uses {enc.analyzer.describe()}); rebuild the index")
        enc.vocab = {t: i for i, t in enumerate(meta["vocab"])}
        enc.num_docs, enc.avgdl = meta["num_docs"], meta["avgdl"]
        enc.df = np.load(directory / "bm25_df.npy")
        return enc


def bm25_term_weight(tf: float, df: int, num_docs: int, length: int, avgdl: float,
                     k1: float = 0.9, b: float = 0.4) -> float:
    """Reference scalar form of one document term weight (for tests and docs)."""
    idf = math.log(1.0 + (num_docs - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1.0 - b + b * length / avgdl))
