"""SPLADE pooling: the one definition that both the encoder (serving) and the trainer use.

For a text with real tokens ``i`` (``attention_mask`` = 1) and masked-LM logits ``logit_ij``::

    w_j = max_i log(1 + ReLU(logit_ij))              pooling="max"  (SPLADE v2+)
    w_j = Σ_i  log(1 + ReLU(logit_ij))               pooling="sum"  (SPLADE v1)

``log1p ∘ ReLU`` is monotone, so the max is taken over the logits first and the activation applied to the
``V`` maxima only (the same numbers, ``L`` times less work). ``activation="log1p_relu"`` (OpenSearch
models) applies ``log1p`` once more. Everything is differentiable; the result is float32.
:func:`splade_activation_numpy` is the same activation on numpy arrays (the torch-free query encoder,
:mod:`heron.retrieval.encoders.bert_numpy`); this module itself does not import torch.

Example::

    >>> import torch
    >>> logits = torch.tensor([[[1.0, -2.0], [3.0, 0.5], [9.0, 9.0]]])   # 1 text, 3 positions, V = 2
    >>> mask = torch.tensor([[1, 1, 0]])                                  # the third is padding
    >>> splade_pool(logits, mask).tolist() == [[torch.log1p(torch.tensor(3.0)).item(),
    ...                                         torch.log1p(torch.tensor(0.5)).item()]]
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

POOLINGS = ("max", "sum")
ACTIVATIONS = ("relu", "log1p_relu")


def splade_activation(x: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """``log(1 + ReLU(x))`` (``activation="relu"``), or ``log1p`` of that (``"log1p_relu"``)."""
    weights = x.relu().log1p()
    if activation == "log1p_relu":
        weights = weights.log1p()
    return weights


def splade_activation_numpy(x: np.ndarray, activation: str = "relu") -> np.ndarray:
    """:func:`splade_activation` on a numpy array (float32)."""
    weights = np.log1p(np.maximum(x, 0, dtype=np.float32))
    if activation == "log1p_relu":
        weights = np.log1p(weights)
    return weights


def splade_pool(logits: torch.Tensor, attention_mask: torch.Tensor, *, pooling: str = "max",
                activation: str = "relu", overwrite: bool = False) -> torch.Tensor:
    """``B × V`` float32 SPLADE weights from ``B × L × V`` logits over the real tokens of ``attention_mask``.

    ``overwrite=True`` lets max pooling mask ``logits`` in place (saves a copy of the largest tensor at
    inference; never with tensors that need a gradient or are used afterwards).
    """
    keep = attention_mask.unsqueeze(-1)
    if pooling == "max":
        fill = logits.masked_fill_ if overwrite else logits.masked_fill
        return splade_activation(fill(keep == 0, float("-inf")).amax(dim=1).float(), activation)
    if pooling == "sum":
        return (splade_activation(logits.float(), activation) * keep).sum(dim=1)
    raise ValueError(f"unsupported SPLADE pooling {pooling!r} (choose from {', '.join(POOLINGS)})")
