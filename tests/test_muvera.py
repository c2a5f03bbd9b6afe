"""MUVERA FDEs: Gray-code ids by hand, dimensions, seeds, fill-empty, and the Chamfer approximation."""

from __future__ import annotations

import numpy as np
import pytest

from heron.errors import HeronError
from heron.multivector.muvera import MuveraEncoder, chamfer, gray_code_partition, partition_bits


def test_gray_code_partition_ids_by_hand():
    # bits (1, 0, 1): p = 1; then (1 << 1) + (0 ^ 1) = 3; then (3 << 1) + (1 ^ 1) = 6
    bits = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 1], [1, 0, 0]], dtype=bool)
    # (1,1,1): 1 → (2 + 0) = 2 → (4 + 1) = 5; (0,1,1): 0 → 1 → (2 + 0) = 2; (1,0,0): 1 → 3 → (6 + 1) = 7
    np.testing.assert_array_equal(gray_code_partition(bits), [6, 0, 5, 2, 7])
    # every pattern maps to a distinct partition, and partition_bits inverts it
    all_bits = np.array([[(n >> (2 - j)) & 1 for j in range(3)] for n in range(8)], dtype=bool)
    ids = gray_code_partition(all_bits)
    assert sorted(ids.tolist()) == list(range(8))
    for row, p in zip(all_bits, ids):
        np.testing.assert_array_equal(partition_bits(int(p), 3), row.astype(int))


def test_dimension_and_determinism():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((7, 32)).astype(np.float32)
    enc = MuveraEncoder(32)  # defaults R=20, k_sim=5, d_proj=16
    assert enc.dimension == 20 * 32 * 16 == 10240
    a = enc.encode_document(points)
    assert a.shape == (10240,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, MuveraEncoder(32).encode_document(points))  # same seed, same FDE
    assert not np.array_equal(a, MuveraEncoder(32, seed=7).encode_document(points))
    assert MuveraEncoder(32, d_proj=None, reps=2, k_sim=3).dimension == 2 * 8 * 32
    assert MuveraEncoder(32, final_dim=1000).encode_query(points).shape == (1000,)


def test_query_sums_document_averages_identity_projection():
    enc = MuveraEncoder(2, reps=1, k_sim=1, d_proj=None, seed=3, fill_empty=False)
    g = enc.simhash[0][:, 0]
    side = np.array([g[0], g[1]], np.float32) / np.linalg.norm(g)  # on the positive side of the hyperplane
    points = np.stack([side, 2 * side, -side])
    q = enc.encode_query(points).reshape(2, 2)
    d = enc.encode_document(points).reshape(2, 2)
    # bit 1 → partition 1 (sum of side and 2·side = 3·side); bit 0 → partition 0 (−side)
    np.testing.assert_allclose(q[1], 3 * side, rtol=1e-6)
    np.testing.assert_allclose(q[0], -side, rtol=1e-6)
    np.testing.assert_allclose(d[1], 1.5 * side, rtol=1e-6)
    np.testing.assert_allclose(d[0], -side, rtol=1e-6)


def test_fill_empty_partitions_for_documents_only():
    enc = MuveraEncoder(2, reps=1, k_sim=2, d_proj=None, seed=5)
    g = enc.simhash[0]
    # one point with both projections positive: bits (1, 1) → Gray id (1 << 1) + (1 ^ 1) = 2
    x = np.linalg.lstsq(g.T, np.array([1.0, 1.0]), rcond=None)[0].astype(np.float32)
    y = np.linalg.lstsq(g.T, np.array([1.0, -1.0]), rcond=None)[0].astype(np.float32)  # bits (1, 0) → id 3
    doc = enc.encode_document(np.stack([x, y])).reshape(4, 2)
    np.testing.assert_allclose(doc[2], x, rtol=1e-5)
    np.testing.assert_allclose(doc[3], y, rtol=1e-5)
    # partition 0 = bits (0, 0): x and y are both at Hamming distance ≥ 1; y (1, 0) is at 1, x at 2 → y
    np.testing.assert_allclose(doc[0], y, rtol=1e-5)
    # partition 1 = bits (0, 1): x (1, 1) at distance 1, y (1, 0) at 2 → x
    np.testing.assert_allclose(doc[1], x, rtol=1e-5)
    query = enc.encode_query(np.stack([x, y])).reshape(4, 2)
    assert not query[0].any() and not query[1].any()  # queries leave empty partitions empty
    with pytest.raises(HeronError, match="query FDEs do not support fill_empty"):
        enc.encode_query(np.stack([x, y]), fill_empty=True)


def _clouds(rng, n_docs=40, dim=24):
    centres = rng.standard_normal((60, dim))
    def cloud(n):
        pts = centres[rng.integers(0, 60, n)] + 0.3 * rng.standard_normal((n, dim))
        return (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)
    return [cloud(8) for _ in range(10)], [cloud(int(rng.integers(20, 40))) for _ in range(n_docs)]


def test_fde_inner_product_approximates_chamfer_better_with_more_repetitions():
    """The FDE inner product is a (biased low: averages stand in for maxima) estimate of Chamfer; up to one
    scale per query its error shrinks, and its ranking agrees more, as repetitions are added."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    queries, docs = _clouds(rng)
    exact = np.array([[chamfer(q, d) for d in docs] for q in queries])
    errors, agreement = [], []
    for reps in (1, 4, 16, 64):
        enc = MuveraEncoder(24, reps=reps, k_sim=5, d_proj=None, seed=11)
        approx = enc.encode_queries(queries) @ enc.encode_documents(docs).T / reps
        scale = (approx * exact).sum(axis=1, keepdims=True) / (approx * approx).sum(axis=1, keepdims=True)
        errors.append(float(np.mean(np.abs(scale * approx - exact) / exact)))
        agreement.append(float(np.mean([spearmanr(a, e)[0] for a, e in zip(approx, exact)])))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.5 * errors[0], errors
    assert agreement == sorted(agreement) and agreement[-1] > 0.85, agreement
    # the FDE top 5 holds the Chamfer top document for most queries
    enc = MuveraEncoder(24, reps=64, k_sim=5, d_proj=None, seed=11)
    approx = enc.encode_queries(queries) @ enc.encode_documents(docs).T
    assert np.mean([exact[i].argmax() in np.argsort(-approx[i])[:5] for i in range(len(queries))]) >= 0.8


def test_bad_shapes_and_configs():
    enc = MuveraEncoder(8, reps=2, k_sim=2, d_proj=4)
    with pytest.raises(HeronError, match="expected an n × 8 point cloud"):
        enc.encode_document(np.zeros((3, 5)))
    with pytest.raises(HeronError, match="k_sim must be in"):
        MuveraEncoder(8, k_sim=31)
    assert not enc.encode_document(np.zeros((0, 8))).any()
    assert chamfer(np.zeros((0, 8)), np.ones((2, 8))) == 0.0
