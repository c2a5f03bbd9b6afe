"""Ground truth (brute force), tie-aware recall, latency summaries.

**Ground truth.** Exhaustive scoring in NumPy, independent of every engine: postings of the query's
terms are gathered from the inverted vector set and summed per document with ``np.bincount`` (float64,
exact for these integer scores). For each ``k`` we keep the exact top-``k`` and the *tie-extended*
set: every document whose score is ≥ the ``k``-th best score (and > 0).

**Recall@k** of a result list = ``min(|R ∩ E_k|, n_k) / n_k`` averaged over queries, where ``R`` is the
engine's top-``k`` (distinct documents), ``E_k`` the tie-extended set and ``n_k = min(k, number of
documents with a positive score)``. It is 1 exactly when the engine returns *a* correct top-``k``
(whichever of several documents tied at the ``k``-th score it picked), which plain overlap with one
particular exact list would not credit. Queries with no positive-score document are left out.
"""

from __future__ import annotations

import numpy as np


def ground_truth(offsets: np.ndarray, docs: np.ndarray, impacts: np.ndarray, num_docs: int, queries,
                 ks=(10, 1000)) -> dict[str, np.ndarray]:
    """Exact top-k and tie-extended sets of every query (see the module docstring)."""
    out: dict[str, list] = {}
    for k in ks:
        out[f"top{k}"] = []
        out[f"top{k}_scores"] = []
        out[f"ext{k}"] = []
        out[f"n{k}"] = []
    for terms, weights in queries:
        parts_d, parts_w = [], []
        for t, w in zip(terms.tolist(), weights.tolist()):
            a, b = offsets[t], offsets[t + 1]
            parts_d.append(docs[a:b])
            parts_w.append(impacts[a:b].astype(np.float64) * w)
        if parts_d:
            scores = np.bincount(np.concatenate(parts_d), weights=np.concatenate(parts_w), minlength=num_docs)
        else:
            scores = np.zeros(num_docs, np.float64)
        positive = int(np.count_nonzero(scores > 0))
        for k in ks:
            kk = min(k, positive)
            if kk == 0:
                top = np.zeros(0, np.int64)
                ext = np.zeros(0, np.int64)
            else:
                part = np.argpartition(-scores, kk - 1)[:kk]
                top = part[np.lexsort((part, -scores[part]))]
                theta = scores[top[-1]]
                ext = np.flatnonzero(scores >= theta)
            out[f"top{k}"].append(top)
            out[f"top{k}_scores"].append(scores[top])
            out[f"ext{k}"].append(ext)
            out[f"n{k}"].append(kk)
    arrays: dict[str, np.ndarray] = {}
    for key, rows in out.items():
        if key.startswith("n"):
            arrays[key] = np.array(rows, np.int64)
        else:
            arrays[key + "_indptr"] = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
            arrays[key] = np.concatenate(rows) if rows else np.zeros(0)
    return arrays


class Truth:
    """Ground truth loaded from ``truth.npz``."""

    def __init__(self, path):
        with np.load(path) as z:
            self.z = {k: z[k] for k in z.files}

    def ext(self, k: int, q: int) -> np.ndarray:
        ptr = self.z[f"ext{k}_indptr"]
        return self.z[f"ext{k}"][ptr[q]:ptr[q + 1]]

    def top(self, k: int, q: int) -> np.ndarray:
        ptr = self.z[f"top{k}_indptr"]
        return self.z[f"top{k}"][ptr[q]:ptr[q + 1]]

    def n(self, k: int) -> np.ndarray:
        return self.z[f"n{k}"]

    def recall(self, k: int, rows: list[np.ndarray]) -> float:
        """Mean tie-aware recall@k of ``rows`` (one array of document rows per query)."""
        n = self.n(k)
        values = []
        for q, r in enumerate(rows):
            if n[q] == 0:
                continue
            got = np.unique(np.asarray(r[:k], dtype=np.int64))
            hits = np.intersect1d(got, self.ext(k, q), assume_unique=True).size
            values.append(min(hits, n[q]) / n[q])
        return float(np.mean(values)) if values else float("nan")


def latency_summary(ns: np.ndarray) -> dict[str, float]:
    ms = np.asarray(ns, np.float64) / 1e6
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "qps_single_calls": float(1000.0 / ms.mean()) if ms.mean() > 0 else None}
