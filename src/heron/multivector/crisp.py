"""CRISP: fewer vectors per text by clustering token vectors (Veneroso et al., 2025), and pruning baselines.

A multi-vector text (``n × dim`` token vectors) is replaced by at most ``k`` vectors:

- **clustering** (:func:`cluster_tokens`): k-means over the text's own tokens; every returned vector is
  the exact mean of the tokens assigned to it (the final assignment is recomputed after the k-means
  iterations, and empty clusters are dropped). Fixed sizes name query × document clusters (``C4x8``,
  ``C8x32``); relative sizes keep a share of the tokens (``C25``, ``C50``: ``k = max(1, ceil(r · n))``).
  A text with ``n ≤ k`` tokens is kept as it is.
- **baselines** at the same budget: **tail** pruning keeps the first ``k`` tokens, **spacing** keeps
  every ``j``-th token (``j = ceil(n / k)``).

Post-hoc use (a frozen model's vectors): :func:`reduce`. Training-time use (the CRISP paper: clustering
inside the forward pass, centroids replacing token vectors, gradients flowing through the means):
:func:`torch_cluster_means` clusters a padded batch with the assignments computed without gradient and
the means with it.

Example::

    >>> import numpy as np
    >>> pts = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> np.round(cluster_tokens(pts, 2, seed=0).astype(float), 2).tolist()
    [[0.95, 0.05], [0.05, 0.95]]
"""

from __future__ import annotations

import math
import re

import numpy as np

from heron.errors import HeronError

METHODS = ("kmeans", "tail", "spacing")
_FIXED = re.compile(r"^C(\d+)x(\d+)$")
_RELATIVE = re.compile(r"^C(\d+)$")


def parse_setting(name: str) -> dict:
    """``C4x8`` → fixed (query 4, document 8); ``C25`` → relative 25 %."""
    if m := _FIXED.match(name):
        return {"name": name, "query_k": int(m.group(1)), "doc_k": int(m.group(2)), "fraction": None}
    if m := _RELATIVE.match(name):
        frac = int(m.group(1)) / 100
        if not 0 < frac <= 1:
            raise HeronError(f"CRISP setting {name!r}: the share must be between 1 and 100 %")
        return {"name": name, "query_k": None, "doc_k": None, "fraction": frac}
    raise HeronError(f"unknown CRISP setting {name!r} (fixed C<q>x<d> such as C4x8, or relative C<percent> "
                     f"such as C25)")


def budget(n: int, k: int | None = None, fraction: float | None = None) -> int:
    """How many vectors a text of ``n`` tokens keeps."""
    if k is not None:
        return max(1, min(int(k), n)) if n else 0
    if fraction is not None:
        return max(1, math.ceil(fraction * n)) if n else 0
    return n


def _kmeans_assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d2 = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return d2.argmin(axis=1)


def cluster_tokens(vectors: np.ndarray, k: int, iters: int = 10, seed: int = 0, backend: str = "faiss") -> np.ndarray:
    """At most ``k`` vectors: the means of the k-means clusters of ``vectors`` (``n ≤ k``: unchanged).

    ``backend="faiss"`` trains ``faiss.Kmeans``; ``"numpy"`` runs Lloyd's algorithm from ``k`` distinct
    random tokens. Either way the result is recomputed from the final assignment, so each vector is the
    exact average of its members. Clusters are returned in ascending order of their lowest member index.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if k < 1:
        raise HeronError(f"CRISP: k must be at least 1, not {k}")
    if n <= k:
        return x.copy()
    if backend == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, verbose=False, min_points_per_centroid=1,
                          max_points_per_centroid=1 << 20)
        km.train(x)
        centroids = km.centroids
    elif backend == "numpy":
        rng = np.random.default_rng(seed)
        centroids = x[rng.choice(n, size=k, replace=False)].copy()
        for _ in range(iters):
            assign = _kmeans_assign(x, centroids)
            for c in range(k):
                members = assign == c
                if members.any():
                    centroids[c] = x[members].mean(axis=0)
    else:
        raise HeronError(f"unknown k-means backend {backend!r} (choose faiss or numpy)")
    assign = _kmeans_assign(x, centroids)
    order = sorted({int(c) for c in assign}, key=lambda c: int(np.flatnonzero(assign == c)[0]))
    return np.stack([x[assign == c].mean(axis=0) for c in order]).astype(np.float32)


def tail(vectors: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` token vectors."""
    return np.asarray(vectors)[: max(int(k), 0)].copy()


def spacing(vectors: np.ndarray, k: int) -> np.ndarray:
    """Every ``j``-th token vector, ``j = ceil(n / k)`` (at most ``k`` vectors)."""
    n = len(vectors)
    if n <= k:
        return np.asarray(vectors).copy()
    step = math.ceil(n / k)
    return np.asarray(vectors)[::step][:k].copy()


def reduce(vectors: np.ndarray, method: str = "kmeans", k: int | None = None, fraction: float | None = None,
           seed: int = 0, iters: int = 10) -> np.ndarray:
    """Post-hoc reduction of one text's vectors by ``method`` to the budget ``k`` or ``fraction``."""
    size = budget(len(vectors), k, fraction)
    if method == "kmeans":
        return cluster_tokens(vectors, size, iters=iters, seed=seed) if size else np.asarray(vectors)[:0].copy()
    if method == "tail":
        return tail(vectors, size)
    if method == "spacing":
        return spacing(vectors, size)
    raise HeronError(f"unknown reduction {method!r} (choose from {', '.join(METHODS)})")


def torch_cluster_means(x, mask, k: int | None = None, fraction: float | None = None, iters: int = 5):
    """Differentiable CRISP clustering of a padded batch.

    ``x``: ``B × L × d`` token vectors, ``mask``: ``B × L`` (1 = real token). Per row, k-means over its
    real tokens (deterministic start: evenly spaced tokens; assignments without gradient), then the
    cluster means computed *with* gradient. Returns ``(centroids B × K × d, centroid_mask B × K)``;
    ``K`` is the largest budget in the batch, padded rows are masked out. Rows with ``n ≤ k`` keep their
    tokens.
    """
    import torch

    lengths = mask.sum(dim=1).tolist()
    budgets = [budget(int(n), k, fraction) for n in lengths]
    width = max(budgets) if budgets else 0
    out = x.new_zeros(x.shape[0], max(width, 1), x.shape[2])
    out_mask = torch.zeros(x.shape[0], max(width, 1), dtype=torch.bool, device=x.device)
    for b, (n, kk) in enumerate(zip(lengths, budgets)):
        n = int(n)
        if n == 0:
            continue
        tokens = x[b][mask[b].bool()]
        if n <= kk:
            out[b, :n] = tokens
            out_mask[b, :n] = True
            continue
        with torch.no_grad():
            detached = tokens.detach()
            centroids = detached[torch.linspace(0, n - 1, kk, device=x.device).round().long()].clone()
            for _ in range(iters):
                assign = torch.cdist(detached, centroids).argmin(dim=1)
                for c in range(kk):
                    members = assign == c
                    if members.any():
                        centroids[c] = detached[members].mean(dim=0)
            assign = torch.cdist(detached, centroids).argmin(dim=1)
        used = torch.unique(assign)
        onehot = (assign[None, :] == used[:, None]).to(tokens.dtype)  # K' × n
        means = onehot @ tokens / onehot.sum(dim=1, keepdim=True)  # gradients flow into every member
        out[b, : len(used)] = means
        out_mask[b, : len(used)] = True
    return out, out_mask
