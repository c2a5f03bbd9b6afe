"""Pseudo-relevance feedback in vector space, for sparse (inverted-index) and dense (FAISS) retrievers.

The query's vector ``q`` retrieves the top-``k`` feedback documents, whose *stored* vectors ``d_1..d_k``
(the inverted index's forward rows, or the FAISS index's vectors) revise it; the revised vector, in the
same space, is searched again:

- ``rocchio``: ``q' = α·q + β·(1/k)·Σ_i d_i``  (defaults α = 1, β = 0.5, k = 3);
- ``average``: ``q' = (q + Σ_i d_i) / (k + 1)``  (the "Average" vector PRF);
- ``model:PATH``: a learned :class:`PRFModel` (trained by :mod:`heron.training.prf`, optionally with LoL)
  that maps ``q`` and ``d_1..d_k`` (with their first-pass scores) to ``q'``.

Sparse revisions keep only the ``terms`` largest weights (default 100; ``0`` keeps all) and are never
negative; dense revisions are used as they come.

:func:`with_prf` wraps any sparse or dense :class:`~heron.retrieval.base.IndexRetriever` (what
``heron eval --prf`` and the HTTP server call); the wrapper is an ``IndexRetriever`` too.

Example::

    >>> from heron.retrieval import open_index_retriever
    >>> base = open_index_retriever("indexes/scifact-splade-tiny")                   # doctest: +SKIP
    >>> prf = with_prf(base, "rocchio", docs=3, alpha=1.0, beta=0.5)                 # doctest: +SKIP
    >>> ids, scores = prf.search(["coffee and cancer"], k=10)[0]                     # doctest: +SKIP
    >>> learned = with_prf(base, "model:checkpoints/scifact-prf-lol")                 # doctest: +SKIP

The vector arithmetic on its own::

    >>> import numpy as np
    >>> rocchio(np.array([[1.0, 0.0]]), np.array([[[0.0, 2.0], [2.0, 2.0]]]), alpha=1.0, beta=0.5)
    array([[1.5, 1. ]], dtype=float32)
    >>> average(np.array([[1.0, 0.0]]), np.array([[[0.0, 2.0], [2.0, 2.0]]]))
    array([[1.       , 1.3333334]], dtype=float32)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from heron.errors import HeronError
from heron.retrieval.base import IndexRetriever
from heron.storage import read_versioned_json

METHODS = ("rocchio", "average")
MODEL_CONFIG = "prf_model.json"
MODEL_WEIGHTS = "model.safetensors"
MODEL_VERSION = 2  # 2: fixed α, β = softplus(b), learned temperature
MODEL_FORMAT = "heron-prf-model"
_CHUNK = 64  # queries revised together (bounds the Q × k × V dense feedback tensor)


# -- the vector formulas ------------------------------------------------------------------------------------
def _mean_feedback(docs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return docs.mean(axis=1)
    counts = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return (docs * mask[:, :, None]).sum(axis=1) / counts


def rocchio(q: np.ndarray, docs: np.ndarray, alpha: float = 1.0, beta: float = 0.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """``α·q + β·mean_i d_i``; ``q``: ``Q × D``, ``docs``: ``Q × k × D``, ``mask``: ``Q × k`` (True = real)."""
    out = alpha * np.asarray(q, np.float64) + beta * _mean_feedback(np.asarray(docs, np.float64), mask)
    if mask is not None:  # a query without feedback keeps α·q
        out = np.where(mask.any(axis=1, keepdims=True), out, alpha * np.asarray(q, np.float64))
    return out.astype(np.float32)


def average(q: np.ndarray, docs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(q + Σ_i d_i) / (k + 1)`` over each query's real feedback documents."""
    docs = np.asarray(docs, np.float64)
    if mask is None:
        mask = np.ones(docs.shape[:2], dtype=bool)
    total = np.asarray(q, np.float64) + (docs * mask[:, :, None]).sum(axis=1)
    return (total / (mask.sum(axis=1, keepdims=True) + 1)).astype(np.float32)


def prune_rows(matrix: np.ndarray, terms: int | None) -> np.ndarray:
    """Keep the ``terms`` largest positive entries per row (others 0); ``None``/``0`` keeps every positive entry."""
    out = np.maximum(np.asarray(matrix, np.float32), 0)
    if terms and out.shape[1] > terms:
        cut = np.argpartition(-out, terms - 1, axis=1)[:, terms:]
        np.put_along_axis(out, cut, 0.0, axis=1)
    return out


# -- the learned model --------------------------------------------------------------------------------------
class PRFModel(nn.Module):
    """A learned vector-space PRF: ``(q, d_1..d_k, first-pass scores) → q'`` in the same space.

    Feedback documents are pooled with attention weights ``softmax_i(b_rank(i) + w_s · s_i / s_1)`` (a
    learned prior per rank plus the first-pass score relative to the top one) into ``f``. Then:

    - sparse (vocabulary space): ``q'_t = ReLU(α·e^{h_t}·q_t + β·e^{g_t}·f_t)``, with learned per-term
      log-gains ``h`` (query terms) and ``g`` (feedback terms) that learn which terms feedback should add
      or suppress; pruned to the top ``terms`` weights at query time;
    - dense (embedding space): ``q' = α·q + β·(f + W f)`` with a learned ``D × D`` map ``W``.

    ``α`` is fixed (a ranking does not change when a query is scaled, so only ``β/α`` matters) and
    ``β = softplus(b) ≥ 0``: feedback may be damped to nothing but never subtracted — a negative ``β``
    under the ReLU would delete the query's own terms wherever the feedback holds them. ``temperature``
    (learned, as ``log τ``) sharpens the training loss over the revised query's *direction*
    (:func:`heron.training.prf.reformulation_loss` on unit-norm revisions); it plays no part at query
    time. At initialisation (``h = g = 0``, ``W = 0``, flat attention) the model *is* Rocchio with α = 1,
    β = 0.5 — training starts from the baseline. ``query_gain=False`` freezes ``h`` at 0, so that what is
    learned is how to use the feedback, not a re-weighting of the query's own terms.
    ``max_feedback`` is the largest ``k`` it takes; a revision
    with fewer (or no) feedback documents masks the remaining slots (LoL's nested feedback sets).
    """

    def __init__(self, space: str, dim: int, max_feedback: int = 5, *, alpha: float = 1.0, beta: float = 0.5,
                 terms: int = 100, temperature: float | None = None, query_gain: bool = True):
        super().__init__()
        if space not in ("sparse", "dense"):
            raise HeronError(f"PRF model space must be sparse or dense, not {space!r}")
        if dim < 1 or max_feedback < 1:
            raise HeronError(f"PRF model needs dim ≥ 1 and max_feedback ≥ 1 (got {dim}, {max_feedback})")
        self.space, self.dim, self.max_feedback, self.terms = space, int(dim), int(max_feedback), int(terms)
        self.learn_query_gain = bool(query_gain)
        if beta <= 0:
            raise HeronError(f"PRF model β must be > 0 at initialisation, got {beta}")
        start = temperature if temperature is not None else (1.0 if space == "sparse" else 0.05)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(start)))
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.beta_raw = nn.Parameter(torch.tensor(math.log(math.expm1(float(beta)))))  # softplus⁻¹(β)
        self.rank_bias = nn.Parameter(torch.zeros(self.max_feedback))
        self.score_weight = nn.Parameter(torch.zeros(()))
        if space == "sparse":
            self.query_gain = nn.Parameter(torch.zeros(self.dim), requires_grad=self.learn_query_gain)
            self.feedback_gain = nn.Parameter(torch.zeros(self.dim))
        else:
            self.mix = nn.Linear(self.dim, self.dim, bias=False)
            nn.init.zeros_(self.mix.weight)

    @property
    def beta(self) -> torch.Tensor:
        return F.softplus(self.beta_raw)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def attention(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``B × k`` pooling weights over the real feedback slots (all zero where a query has none)."""
        k = scores.shape[1]
        top = scores[:, :1].abs().clamp(min=1e-6)
        logits = self.rank_bias[:k] + self.score_weight * (scores / top)
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        return torch.nan_to_num(weights, nan=0.0) * mask

    def forward(self, q: torch.Tensor, docs: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``q``: ``B × D``; ``docs``: ``B × k × D``; ``scores`` / ``mask``: ``B × k`` → ``B × D``."""
        if docs.shape[1] > self.max_feedback:
            raise HeronError(f"the PRF model takes at most {self.max_feedback} feedback documents, got {docs.shape[1]}")
        if q.shape[1] != self.dim:
            raise HeronError(f"the PRF model works in {self.dim} dimensions, the query vectors have {q.shape[1]}")
        weights = self.attention(scores, mask.bool())
        f = torch.einsum("bk,bkd->bd", weights, docs)
        if self.space == "sparse":
            return torch.relu(self.alpha * torch.exp(self.query_gain) * q
                              + self.beta * torch.exp(self.feedback_gain) * f)
        return self.alpha * q + self.beta * (f + self.mix(f))

    # -- persistence (safetensors + JSON; never pickle) ------------------------------------------------------
    def config(self) -> dict:
        return {"space": self.space, "dim": self.dim, "max_feedback": self.max_feedback, "terms": self.terms,
                "alpha": float(self.alpha.detach()), "query_gain": self.learn_query_gain}

    def save(self, directory: str | Path, info: dict | None = None) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(directory / MODEL_WEIGHTS))
        config = {"format": MODEL_FORMAT, "version": MODEL_VERSION, **self.config(),
                  "learned": {"beta": float(self.beta.detach()), "temperature": float(self.temperature.detach())},
                  "info": info or {}}
        (directory / MODEL_CONFIG).write_text(json.dumps(config, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> PRFModel:
        from safetensors.torch import load_file

        directory = Path(directory)
        config = read_versioned_json(directory / MODEL_CONFIG, MODEL_FORMAT, MODEL_VERSION, "heron PRF model",
                                     "retrain with heron train prf")
        model = cls(config["space"], config["dim"], config["max_feedback"], terms=config.get("terms", 100),
                    alpha=config.get("alpha", 1.0), query_gain=config.get("query_gain", True))
        try:
            state = load_file(str(directory / MODEL_WEIGHTS))
            model.load_state_dict(state)
        except (OSError, RuntimeError) as exc:
            raise HeronError(f"{directory / MODEL_WEIGHTS}: cannot load the PRF weights ({str(exc).splitlines()[0]})") \
                from None
        model.info = config.get("info", {})
        model.eval()
        return model


# -- the index side: query vectors, feedback documents and their stored vectors --------------------------------
class FeedbackSpace:
    """What PRF needs from a base retriever: ``encode``, ``first_pass`` and the feedback documents' vectors."""

    def __init__(self, base: IndexRetriever):
        index = getattr(base, "index", None)
        kind = getattr(index, "kind", None)
        space = {"inverted": "sparse", "faiss": "dense"}.get(kind) or (index.space if kind == "milvus" else None)
        if space is None:
            raise HeronError(f"PRF needs a retriever over heron's inverted index or a FAISS index (or their Milvus "
                             f"export), not {kind or type(base).__name__}")
        if getattr(base, "options", {}).get("truncate_dims"):
            raise HeronError(f"{index.path}: PRF works on full vectors; drop truncate_dims")
        self.base = base
        self.kind, self.dim = space, int(index.dim)
        self.index = index

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``Q × D`` dense float32 query vectors (sparse ones densified)."""
        q = self.base.encode_cached(list(texts))  # may be shared with plain runs of the base: copied here
        return q.toarray().astype(np.float32, copy=False) if sp.issparse(q) else np.array(q, dtype=np.float32)

    def search(self, q: np.ndarray, k: int, allow=None) -> list[tuple[list[str], np.ndarray]]:
        vectors = sp.csr_matrix(q) if self.kind == "sparse" else np.asarray(q, dtype=np.float32)
        if allow is None:
            return self.base.search_vectors(vectors, k)
        return self.base.search_vectors(vectors, k, allow=allow)

    def vectors(self, positions: Sequence[int]) -> np.ndarray:
        """``n × D`` stored vectors of documents at index positions (dequantized for the inverted index)."""
        positions = [int(p) for p in positions]
        if not positions:
            return np.zeros((0, self.dim), dtype=np.float32)
        stored = self.index.vectors(positions)
        return np.asarray(stored.toarray() if sp.issparse(stored) else stored, dtype=np.float32)

    def feedback(self, q: np.ndarray, k: int, allow=None):
        """First pass: ``(docs Q × k × D, scores Q × k, mask Q × k, hits)`` for the top-``k`` of each query."""
        hits = self.search(q, k, allow)
        docs = np.zeros((len(q), k, self.dim), dtype=np.float32)
        scores = np.zeros((len(q), k), dtype=np.float32)
        mask = np.zeros((len(q), k), dtype=bool)
        for r, (ids, s) in enumerate(hits):
            n = min(len(ids), k)
            if n:
                docs[r, :n] = self.vectors([self.index.doc_index(d) for d in ids[:n]])
                scores[r, :n] = np.asarray(s[:n], dtype=np.float32)
                mask[r, :n] = True
        return docs, scores, mask, hits


# -- the retriever -----------------------------------------------------------------------------------------
class PRFRetriever(IndexRetriever):
    """``base`` with vector-space feedback: ``search(texts, k)`` = first pass, revise, search again.

    ``method``: ``rocchio`` | ``average`` | a :class:`PRFModel` (or ``model:PATH``). ``docs``: feedback
    documents (default 3; a learned model's default is the ``k`` it was trained with, capped by its
    ``max_feedback``); ``alpha`` / ``beta``: Rocchio's weights; ``terms``: sparse revisions keep the top
    ``terms`` weights (default 100, or the model's; 0 = all).
    """

    def __init__(self, base: IndexRetriever, method: str | PRFModel = "rocchio", *, docs: int | None = None,
                 alpha: float = 1.0, beta: float = 0.5, terms: int | None = None):
        from heron.retrieval.options import PRFOptions, checked

        checked(PRFOptions, "prf", docs=docs, alpha=alpha, beta=beta, terms=terms)  # finite, in range
        self.base = base
        self.space = FeedbackSpace(base)
        self.index = base.index
        if isinstance(method, str) and method.startswith("model:"):
            method = PRFModel.load(method[len("model:"):])
        self.model: PRFModel | None = None
        if isinstance(method, PRFModel):
            if method.space != self.space.kind or method.dim != self.space.dim:
                raise HeronError(f"the PRF model works on {method.space} vectors of {method.dim} dimensions; this "
                                 f"index has {self.space.kind} vectors of {self.space.dim}")
            self.model = method.eval()
            self.method = "model"
            default_docs = int(getattr(method, "info", {}).get("docs") or method.max_feedback)
            docs = default_docs if docs is None else docs
            if docs > method.max_feedback:
                raise HeronError(f"the PRF model takes at most {method.max_feedback} feedback documents, not {docs}")
            terms = method.terms if terms is None else terms
        elif method in METHODS:
            self.method = method
        else:
            raise HeronError(f"unknown PRF method {method!r} (choose rocchio, average or model:PATH)")
        self.docs = 3 if docs is None else int(docs)  # docs, alpha, beta and terms were checked above
        self.alpha, self.beta = float(alpha), float(beta)
        self.terms = 100 if terms is None else int(terms)
        self.name = f"{getattr(base, 'name', 'index')}-prf-{self.method}"

    def describe(self) -> dict:
        base = self.base.describe()
        label = f"{base.get('name', self.name)}-prf-{self.method}{self.docs}"
        if self.method == "rocchio":
            label += f"-a{self.alpha:g}-b{self.beta:g}"
        prf = {"method": self.method, "docs": self.docs, "alpha": self.alpha, "beta": self.beta,
               "terms": self.terms if self.space.kind == "sparse" else None}
        if self.model is not None:
            prf["model"] = self.model.config()
        return {**base, "name": label, "prf": prf}

    # -- the revision ------------------------------------------------------------------------------------
    def revise(self, q: np.ndarray, allow=None) -> np.ndarray:
        """Revised ``Q × D`` query vectors for ``Q × D`` query vectors ``q`` (in chunks of queries)."""
        q = np.asarray(q.toarray() if sp.issparse(q) else q, dtype=np.float32)
        out = np.zeros_like(q)
        for start in range(0, len(q), _CHUNK):
            block = q[start:start + _CHUNK]
            docs, scores, mask, _ = self.space.feedback(block, self.docs, allow)
            if self.method == "rocchio":
                new = rocchio(block, docs, self.alpha, self.beta, mask)
            elif self.method == "average":
                new = average(block, docs, mask)
            else:
                with torch.inference_mode():
                    new = self.model(torch.from_numpy(block), torch.from_numpy(docs), torch.from_numpy(scores),
                                     torch.from_numpy(mask)).numpy()
            if self.space.kind == "sparse":
                new = prune_rows(new, self.terms)
            out[start:start + len(block)] = new
        return out

    def encode(self, texts: Sequence[str]):
        """Revised query vectors (sparse: a CSR matrix in the index's term space; dense: an array)."""
        revised = self.revise(self.space.encode(texts))
        return sp.csr_matrix(revised) if self.space.kind == "sparse" else revised

    def search_vectors(self, queries, k: int = 10, allow=None) -> list:
        """Search with vectors as given (already revised: :meth:`encode`)."""
        return self.space.search(queries.toarray() if sp.issparse(queries) else queries, k, allow)

    def search(self, texts: Sequence[str], k: int = 10, allow=None) -> list:
        """Top-``k`` ``(doc ids, scores)`` per text: feedback from a first pass (within ``allow``), then revised."""
        revised = self.revise(self.space.encode(texts), allow)
        return self.space.search(revised, k, allow)


def parse_prf(spec: str) -> str | PRFModel:
    """``rocchio`` | ``average`` | ``model:PATH`` (the model loaded) — a one-line HeronError otherwise."""
    spec = (spec or "").strip()
    if spec in METHODS:
        return spec
    if spec.startswith("model:") and spec[len("model:"):]:
        return PRFModel.load(spec[len("model:"):])
    raise HeronError(f"unknown PRF {spec!r} (choose rocchio, average or model:PATH)")


def with_prf(retriever: IndexRetriever, spec: str | PRFModel, **options) -> PRFRetriever:
    """``retriever`` with pseudo-relevance feedback: ``spec`` = ``"rocchio"`` | ``"average"`` | ``"model:PATH"``.

    ``options``: ``docs`` (feedback documents), ``alpha``, ``beta`` (Rocchio), ``terms`` (sparse pruning);
    ``None`` values are ignored. The result is an :class:`~heron.retrieval.base.IndexRetriever`.
    """
    method = spec if isinstance(spec, PRFModel) else parse_prf(spec)
    unknown = sorted(set(options) - {"docs", "alpha", "beta", "terms"})
    if unknown:
        raise HeronError(f"unknown PRF option {unknown[0]!r} (known: docs, alpha, beta, terms)")
    return PRFRetriever(retriever, method, **{k: v for k, v in options.items() if v is not None})


__all__ = ["PRFModel", "PRFRetriever", "average", "parse_prf", "prune_rows", "rocchio", "with_prf"]
