"""Sparsity regularisers for learned sparse encoders, each a small callable on a ``B × V`` batch of weights.

``w`` is a batch of SPLADE vectors (rows: texts, columns: vocabulary terms, weights ≥ 0):

- :class:`FLOPS` (Paria et al. 2020; naver/splade ``regularization.py``)::

      L_FLOPS(w) = Σ_j ( (1/B) Σ_i |w_ij| )²

  With ``threshold = τ`` (the ℓ0 mask of OpenSearch's ``flops_threshold`` / sentence-transformers'
  ``FlopsLoss(threshold)``), rows with at most τ non-zero weights contribute nothing: they are zeroed
  before the batch mean (the mean still divides by ``B``), so very short vectors are not pushed further.
- :class:`L1`: ``(1/B) Σ_i Σ_j |w_ij|`` (SPLADE's query-side alternative).
- :class:`IDFAwareFLOPS`: the document-side penalty of *inference-free* SPLADE, where the query is the
  set of its tokens weighted by IDF and ``s(q, d) = Σ_{t∈q} idf_t · w_d(t)`` (see the class).
- :func:`l0` (non-zeros per row, for monitoring only — it has no gradient).
- :class:`QuadraticWarmup`: ``λ_t = λ · (t/T)²`` for ``t ≤ T``, then ``λ`` (SPLADE's schedule; ``t`` counts
  optimiser steps from 1).
- :class:`Regularized`: a main loss plus ``Σ_k λ_k(t) · R_k(w_k)`` over named terms, with the parts
  reported for logging.

FLOPS depends on the batch size ``B`` (the mean is over the batch), so λ does too: compute it over the
whole batch that a step sees (all devices), never per shard.

Example::

    >>> import torch
    >>> w = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    >>> float(FLOPS()(w))                          # (4/2)² + 0² + (2/2)²
    5.0
    >>> float(L1()(w))                             # (3 + 3) / 2
    3.0
    >>> float(FLOPS(threshold=1)(w))               # row 2 has one non-zero: masked out → (1/2)² + (2/2)²
    1.25
    >>> [QuadraticWarmup(0.5, 4)(t) for t in (1, 2, 4, 9)]
    [0.03125, 0.125, 0.5, 0.5]
    >>> total, parts = Regularized([RegTerm("flops_d", FLOPS(), QuadraticWarmup(0.1, 0), "document")])(
    ...     torch.tensor(2.0), {"document": w}, step=1)
    >>> round(float(total), 4), sorted(parts)
    (2.5, ['flops_d', 'flops_d_lambda', 'main'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from heron.errors import HeronError


def _check_batch(w: torch.Tensor) -> torch.Tensor:
    if w.dim() != 2:
        raise HeronError(f"a regulariser takes a batch × vocabulary matrix, got shape {tuple(w.shape)}")
    return w


def l0(w: torch.Tensor) -> torch.Tensor:
    """Mean number of non-zero weights per row (monitoring only: no gradient)."""
    return (_check_batch(w).detach() != 0).sum(dim=1).float().mean()


class FLOPS:
    """``Σ_j (mean_i |w_ij|)²``; with ``threshold`` τ, rows with ≤ τ non-zeros are masked out (ℓ0 mask)."""

    name = "flops"

    def __init__(self, threshold: int | None = None):
        if threshold is not None and threshold < 0:
            raise HeronError(f"FLOPS threshold must be ≥ 0, got {threshold}")
        self.threshold = threshold

    def row_mask(self, w: torch.Tensor) -> torch.Tensor | None:
        if self.threshold is None:
            return None
        return ((w != 0).sum(dim=1) > self.threshold).to(w.dtype)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        w = _check_batch(w).abs()
        mask = self.row_mask(w)
        if mask is not None:
            w = w * mask[:, None]
        return w.mean(dim=0).pow(2).sum()


class L1:
    """``mean_i Σ_j |w_ij|``."""

    name = "l1"

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return _check_batch(w).abs().sum(dim=1).mean()


def weighted_flops(w: torch.Tensor, term_weights: torch.Tensor) -> torch.Tensor:
    """``Σ_j c_j · (mean_i |w_ij|)²``: FLOPS with a per-term weight ``c_j`` (``c = 1`` is plain FLOPS)."""
    w = _check_batch(w)
    if term_weights.shape != (w.shape[1],):
        raise HeronError(f"{len(term_weights)} term weights for {w.shape[1]} vocabulary columns")
    return (term_weights.to(w) * w.abs().mean(dim=0).pow(2)).sum()


class IDFAwareFLOPS(FLOPS):
    """IDF-aware FLOPS (Geng, Ru & Yang 2024, *Towards Competitive Search Relevance for Inference-Free
    Learned Sparse Retrievers*, arXiv:2411.04403, §3 — the "IDF-aware FLOPS" subsection).

    Inference-free SPLADE encodes only documents; a query is the set of its tokens, each weighted by
    ``idf_t`` (special tokens 0), so the matching function is ``s(q, d) = Σ_{t∈q} idf_t · w_d(t)``. The
    penalty is FLOPS on the *document* weights ``w`` (documents only — no query encoder to regularise)::

        L = Σ_t ( mean_i w_it )²  =  Σ_t (1 / idf_t²) · ( mean_i u_it )²,   u_it = idf_t · w_it

    Written in the space of score contributions ``u`` (what the ranking loss sees), the penalty on a term
    is weighted by ``1 / idf_t²``: the ranking-loss gradient on ``w_t`` is scaled by ``idf_t`` while the
    penalty's is not, so low-IDF terms (stop words, sub-word pieces) are the first pruned and informative
    terms keep their weight. :meth:`match` is that IDF-weighted matching; :meth:`term_weights` the
    ``1/idf²`` weights of the contribution-space form (:func:`weighted_flops`). This follows the
    authors' reference trainer (opensearch-sparse-model-tuning-sample: document FLOPS with the
    quadratic λ warm-up, IDF query vectors ``onehot ⊙ ReLU(idf)``, no query FLOPS) and the paper's
    revised abstract ("an IDF-aware penalty for the matching function that suppresses the contribution
    of low-IDF tokens"). The paper's equation itself could not be re-read offline when this was written;
    heron's notes record the derivation as theirs.

    ``idf`` is the IDF vector (one entry per vocabulary term, e.g. ``log(N / (1 + df))``); ``threshold``
    is FLOPS' optional ℓ0 row mask.
    """

    name = "idf_flops"

    def __init__(self, idf, threshold: int | None = None):
        super().__init__(threshold)
        idf = torch.as_tensor(np.asarray(idf, dtype=np.float32))
        if idf.dim() != 1 or not torch.isfinite(idf).all():
            raise HeronError("IDF-aware FLOPS needs a finite 1-D IDF vector (one entry per vocabulary term)")
        self.idf = idf.clamp(min=0)

    def query_vectors(self, token_masks: torch.Tensor) -> torch.Tensor:
        """Inference-free query vectors ``onehot(tokens) ⊙ idf`` from ``B × V`` 0/1 token-presence masks."""
        return token_masks.to(self.idf) * self.idf.to(token_masks.device)

    def match(self, token_masks: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``Q × B`` scores ``Σ_{t∈q} idf_t · w_d(t)`` of token-presence masks against document weights."""
        return self.query_vectors(token_masks).to(w) @ w.t()

    def term_weights(self, eps: float = 1e-6) -> torch.Tensor:
        """``1 / idf_t²``: the per-term penalty weight in the space of score contributions ``idf ⊙ w``."""
        return 1.0 / self.idf.clamp(min=eps).pow(2)


class QuadraticWarmup:
    """``λ_t = λ · (t / T)²`` for ``1 ≤ t ≤ T``, then ``λ``; ``T = 0`` is a constant ``λ``; ``t`` counts from 1."""

    def __init__(self, lam: float, steps: int):
        if lam < 0 or steps < 0:
            raise HeronError(f"λ warm-up needs λ ≥ 0 and T ≥ 0 (got λ={lam}, T={steps})")
        self.lam, self.steps = float(lam), int(steps)

    def __call__(self, step: int) -> float:
        if self.steps == 0 or step >= self.steps:
            return self.lam
        return self.lam * (max(step, 0) / self.steps) ** 2


@dataclass
class RegTerm:
    """One regulariser: ``name`` (logged), the callable, its λ schedule, and which representation it reads."""

    name: str
    regularizer: object
    schedule: QuadraticWarmup
    side: str


class Regularized:
    """``total = main + Σ_k λ_k(step) · R_k(reps[side_k])``; returns ``(total, parts)`` with every term logged."""

    def __init__(self, terms: Sequence[RegTerm]):
        self.terms = list(terms)

    def __call__(self, main: torch.Tensor, reps: Mapping[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        total = main
        parts = {"main": float(main.detach())}
        for term in self.terms:
            if term.side not in reps:
                raise HeronError(f"regulariser {term.name!r} reads the {term.side!r} vectors, which this step lacks")
            lam = term.schedule(step)
            value = term.regularizer(reps[term.side])
            total = total + lam * value
            parts[term.name] = float(value.detach())
            parts[f"{term.name}_lambda"] = lam
        return total, parts


REGULARIZERS = ("flops", "l1", "idf_flops", "none")


def make_regularizer(kind: str, *, threshold: int | None = None, idf=None):
    """``flops`` | ``l1`` | ``idf_flops`` (needs ``idf``) | ``none`` (→ ``None``)."""
    if kind == "none":
        return None
    if kind == "flops":
        return FLOPS(threshold)
    if kind == "l1":
        if threshold is not None:
            raise HeronError("the ℓ0 threshold applies to FLOPS, not to L1")
        return L1()
    if kind == "idf_flops":
        if idf is None:
            raise HeronError("idf_flops needs IDF weights (inference-free training)")
        return IDFAwareFLOPS(idf, threshold)
    raise HeronError(f"unknown regulariser {kind!r} (choose {', '.join(REGULARIZERS)})")
