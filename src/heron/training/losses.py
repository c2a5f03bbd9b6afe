"""Losses shared by heron's trainers, each a small function checked against hand-computed values."""

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
