"""MUVERA fixed dimensional encodings (Dhulipala et al., NeurIPS 2024): a multi-vector set → one vector.

An FDE turns a point cloud (a query's or a document's token vectors) into a single vector whose inner
product approximates the Chamfer / MaxSim similarity ``Σ_q max_d ⟨q, d⟩``, so a MIPS index (FAISS) can
fetch candidates that exact Chamfer then reranks. Semantics follow the paper's reference
implementation (google/graph-mining ``sketching/point_cloud``; ``../shared/notes/algorithms.md``):

For each repetition ``r = 0 … R−1`` (its own seed ``seed + r``):

1. **SimHash partition.** A Gaussian matrix ``G_r ∈ R^{d × k_sim}``; a point's sign bits
   ``b_j = [⟨x, G_r[:, j]⟩ > 0]`` are folded into a **Gray-code** partition id
   ``p ← (p << 1) + (b_j XOR (p & 1))``, giving ``2^k_sim`` partitions.
2. **Inner projection.** Identity (``d_proj = None``) or the AMS sketch: every input coordinate ``i``
   goes to one random output column with a random sign ±1 (no scaling), projecting to ``d_proj``.
3. **Aggregation.** Query: the **sum** of the projected points in each partition. Document: their
   **average**; with ``fill_empty`` (documents only — queries refuse it), an empty partition takes the
   projected point whose sign bits are nearest in Hamming distance to the partition's bit pattern
   (``p XOR (p >> 1)``, most significant bit first), the first such point on ties.

The blocks are concatenated (repetition-major, then partition): ``R · 2^k_sim · d_proj`` values; an
optional final Count-Sketch (seeded by ``seed``) maps them to ``final_dim``. Queries and documents
must share one configuration and seed. Defaults: R = 20, k_sim = 5, d_proj = 16 (10,240 dims).

The random matrices come from NumPy's PCG64 rather than C++'s ``mt19937``, so vectors are not
bit-identical to the reference code's, only equal in distribution.

Example::

    >>> import numpy as np
    >>> fde = MuveraEncoder(dim=8, reps=4, k_sim=3, d_proj=4, seed=1)
    >>> rng = np.random.default_rng(0)
    >>> q, d = rng.standard_normal((3, 8)), rng.standard_normal((5, 8))
    >>> fde.encode_query(q).shape, fde.dimension
    ((128,), 128)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from heron.errors import HeronError


@dataclass(frozen=True)
class FDEConfig:
    dim: int
    reps: int = 20
    k_sim: int = 5
    d_proj: int | None = 16
    seed: int = 42
    fill_empty: bool = True
    final_dim: int | None = None

    def check(self) -> None:
        if self.dim < 1:
            raise HeronError(f"MUVERA: dim must be positive, not {self.dim}")
        if self.reps < 1:
            raise HeronError(f"MUVERA: reps must be positive, not {self.reps}")
        if not 0 <= self.k_sim < 31:
            raise HeronError(f"MUVERA: k_sim must be in [0, 30], not {self.k_sim}")
        if self.d_proj is not None and self.d_proj < 1:
            raise HeronError(f"MUVERA: d_proj must be positive (or None for the identity), not {self.d_proj}")
        if self.final_dim is not None and self.final_dim < 1:
            raise HeronError(f"MUVERA: final_dim must be positive, not {self.final_dim}")


def gray_code_partition(bits: np.ndarray) -> np.ndarray:
    """Partition ids of sign-bit rows (``n × k`` booleans, first column first) by Gray-code accumulation."""
    bits = np.asarray(bits, dtype=np.int64)
    ids = np.zeros(bits.shape[0], dtype=np.int64)
    for j in range(bits.shape[1]):
        ids = (ids << 1) + (bits[:, j] ^ (ids & 1))
    return ids


def partition_bits(partition: int, k_sim: int) -> np.ndarray:
    """The sign-bit pattern (first bit first) whose Gray-code accumulation is ``partition``."""
    binary = partition ^ (partition >> 1)
    return np.array([(binary >> (k_sim - 1 - j)) & 1 for j in range(k_sim)], dtype=np.int64)


class MuveraEncoder:
    """Query and document FDEs for one configuration (``FDEConfig`` fields as keyword arguments)."""

    def __init__(self, dim: int, reps: int = 20, k_sim: int = 5, d_proj: int | None = 16, seed: int = 42,
                 fill_empty: bool = True, final_dim: int | None = None):
        self.config = FDEConfig(dim, reps, k_sim, d_proj, seed, fill_empty, final_dim)
        self.config.check()
        c = self.config
        self.proj_dim = c.d_proj or c.dim
        self.num_partitions = 1 << c.k_sim
        self.simhash, self.ams = [], []
        for r in range(c.reps):
            rng = np.random.default_rng(c.seed + r)
            self.simhash.append(rng.standard_normal((c.dim, c.k_sim)).astype(np.float32))
            if c.d_proj is None:
                self.ams.append(None)
            else:
                matrix = np.zeros((c.dim, c.d_proj), dtype=np.float32)
                columns = rng.integers(0, c.d_proj, c.dim)
                signs = rng.integers(0, 2, c.dim) * 2.0 - 1.0
                matrix[np.arange(c.dim), columns] = signs
                self.ams.append(matrix)
        self.raw_dimension = c.reps * self.num_partitions * self.proj_dim
        if c.final_dim is not None:
            rng = np.random.default_rng(c.seed)
            self._cs_index = rng.integers(0, c.final_dim, self.raw_dimension)
            self._cs_sign = (rng.integers(0, 2, self.raw_dimension) * 2.0 - 1.0).astype(np.float32)
        self._target_bits = np.stack([partition_bits(p, c.k_sim) for p in range(self.num_partitions)]) \
            if c.k_sim else np.zeros((1, 0), np.int64)

    @property
    def dimension(self) -> int:
        return self.config.final_dim or self.raw_dimension

    def describe(self) -> dict:
        return {"type": "muvera", **asdict(self.config), "dimension": self.dimension}

    # -- encoding ------------------------------------------------------------------------------------
    def _points(self, points) -> np.ndarray:
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != self.config.dim:
            raise HeronError(f"MUVERA: expected an n × {self.config.dim} point cloud, got shape {points.shape}")
        return points

    def encode_query(self, points, fill_empty: bool = False) -> np.ndarray:
        """The query FDE: per partition, the sum of the projected points. ``fill_empty`` is refused."""
        if fill_empty:
            raise HeronError("MUVERA: query FDEs do not support fill_empty (only documents do)")
        return self._encode(self._points(points), average=False, fill=False)

    def encode_document(self, points) -> np.ndarray:
        """The document FDE: per partition, the average projected point (empty ones filled if configured)."""
        return self._encode(self._points(points), average=True, fill=self.config.fill_empty)

    def encode_queries(self, clouds: Sequence) -> np.ndarray:
        return np.stack([self.encode_query(c) for c in clouds]) if len(clouds) else \
            np.zeros((0, self.dimension), np.float32)

    def encode_documents(self, clouds: Sequence) -> np.ndarray:
        return np.stack([self.encode_document(c) for c in clouds]) if len(clouds) else \
            np.zeros((0, self.dimension), np.float32)

    def _encode(self, points: np.ndarray, average: bool, fill: bool) -> np.ndarray:
        c = self.config
        out = np.zeros((c.reps, self.num_partitions, self.proj_dim), dtype=np.float32)
        if len(points) == 0:
            return self._finish(out)
        for r in range(c.reps):
            projected = points if self.ams[r] is None else points @ self.ams[r]
            if c.k_sim:
                bits = (points @ self.simhash[r]) > 0
                ids = gray_code_partition(bits)
            else:
                bits = np.zeros((len(points), 0), bool)
                ids = np.zeros(len(points), np.int64)
            np.add.at(out[r], ids, projected)
            if not average:
                continue
            counts = np.bincount(ids, minlength=self.num_partitions)
            filled = counts > 0
            out[r][filled] /= counts[filled, None]
            if fill and c.k_sim and not filled.all():
                empty = np.flatnonzero(~filled)
                distances = (bits[None, :, :].astype(np.int64) != self._target_bits[empty][:, None, :]).sum(axis=2)
                nearest = distances.argmin(axis=1)  # first point at the minimum distance
                out[r][empty] = projected[nearest]
        return self._finish(out)

    def _finish(self, out: np.ndarray) -> np.ndarray:
        flat = out.reshape(-1)
        if self.config.final_dim is None:
            return flat
        sketch = np.zeros(self.config.final_dim, dtype=np.float32)
        np.add.at(sketch, self._cs_index, self._cs_sign * flat)
        return sketch


def chamfer(query: np.ndarray, doc: np.ndarray) -> float:
    """Chamfer (MaxSim) similarity ``Σ_q max_d ⟨q, d⟩`` (brute force; 0 for an empty side)."""
    if len(query) == 0 or len(doc) == 0:
        return 0.0
    return float((np.asarray(query, np.float32) @ np.asarray(doc, np.float32).T).max(axis=1).sum())
