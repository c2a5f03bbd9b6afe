"""Losses shared by heron's trainers, each a small function checked against hand-computed values.

Example::

    >>> import torch
    >>> round(float(margin_mse(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([5.0]), torch.tensor([2.0]))), 4)
    1.0
    >>> float(kl_distillation(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0]])))
    0.0
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element."""
    return (pred - target).pow(2).mean()


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE divided by the MSE of predicting the batch mean of ``target`` (scale-free; 1 = no better than the mean)."""
    baseline = (target - target.mean(dim=0, keepdim=True)).pow(2).mean()
    return mse(pred, target) / baseline.clamp(min=1e-12)


def info_nce(queries: torch.Tensor, documents: torch.Tensor, temperature: float = 0.05,
             false_negatives: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """In-batch InfoNCE: query ``i``'s positive is document ``i``; the other documents are negatives.

    ``false_negatives``: a ``B × B`` boolean mask of off-diagonal pairs that are also relevant (dropped
    from the denominator). ``normalize`` L2-normalises both sides first (cosine similarity).
    """
    if normalize:
        queries = F.normalize(queries, p=2, dim=1)
        documents = F.normalize(documents, p=2, dim=1)
    logits = queries @ documents.t() / temperature
    if false_negatives is not None:
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(false_negatives & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def contrastive(scores: torch.Tensor, targets: torch.Tensor | None = None, temperature: float = 1.0,
                mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over a ``B × M`` score matrix (each row a query, each column a candidate).

    ``targets``: the positive column of each row (default: column ``i`` for row ``i``, the in-batch layout
    where documents ``0..B-1`` are the positives and any further columns hard negatives). ``mask``: a
    ``B × M`` boolean matrix of columns to drop from a row's softmax (other positives of the same
    query); the target column is never dropped. Raw scores (dot products) divided by ``temperature``.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be B × M, got shape {tuple(scores.shape)}")
    if targets is None:
        if scores.shape[1] < scores.shape[0]:
            raise ValueError("in-batch layout needs at least as many columns as rows")
        targets = torch.arange(len(scores), device=scores.device)
    logits = scores / temperature
    if mask is not None:
        keep = torch.zeros_like(mask, dtype=torch.bool)
        keep[torch.arange(len(targets), device=scores.device), targets] = True
        logits = logits.masked_fill(mask & ~keep, float("-inf"))
    return F.cross_entropy(logits, targets, reduction=reduction)


def margin_mse(pos_scores: torch.Tensor, neg_scores: torch.Tensor, teacher_pos: torch.Tensor,
               teacher_neg: torch.Tensor) -> torch.Tensor:
    """MarginMSE (Hofstätter et al. 2020): ``mean((s⁺ − s⁻) − (t⁺ − t⁻))²`` over (query, negative) pairs.

    ``pos_scores`` / ``teacher_pos``: ``B``; ``neg_scores`` / ``teacher_neg``: ``B`` or ``B × n`` (several
    negatives per query, each its own margin).
    """
    if neg_scores.dim() == 1:
        neg_scores, teacher_neg = neg_scores[:, None], teacher_neg[:, None]
    student = pos_scores[:, None] - neg_scores
    teacher = teacher_pos[:, None] - teacher_neg
    return (student - teacher).pow(2).mean()


def kl_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(softmax(t/τ) ‖ softmax(s/τ))`` per query over its candidate list, averaged over queries.

    ``student`` / ``teacher``: ``B × M`` scores of the same candidates; ``mask``: ``B × M`` True where a
    candidate is padding (excluded from both distributions).
    """
    s, t = student / temperature, teacher / temperature
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
        t = t.masked_fill(mask, float("-inf"))
    log_p_s = F.log_softmax(s, dim=1)
    log_p_t = F.log_softmax(t, dim=1)
    p_t = log_p_t.exp()
    empty = p_t == 0  # 0 · log 0 = 0 (padding, or a candidate the teacher gives no mass)
    diff = log_p_t.masked_fill(empty, 0.0) - log_p_s.masked_fill(empty, 0.0)
    return (p_t * diff).sum(dim=1).mean()
