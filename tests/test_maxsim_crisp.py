"""MaxSim kernel against a naive loop; CRISP clustering keeps ≤ k vectors that are member means; baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from heron.errors import HeronError
from heron.multivector.crisp import budget, cluster_tokens, parse_setting, reduce, spacing, tail, torch_cluster_means
from heron.multivector.maxsim import maxsim, maxsim_candidates, maxsim_matrix, maxsim_naive, maxsim_scores, rerank


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_docs=st.integers(1, 12), m=st.integers(1, 6), dim=st.integers(1, 8),
       chunk=st.sampled_from([1, 3, 1 << 18]))
def test_maxsim_candidates_equals_naive_loop(seed, n_docs, m, dim, chunk):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 6, n_docs)  # some documents have no vectors
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    vectors = rng.standard_normal((int(offsets[-1]), dim)).astype(np.float16)
    query = rng.standard_normal((m, dim)).astype(np.float32)
    candidates = rng.permutation(n_docs)[: rng.integers(1, n_docs + 1)]
    got = maxsim_candidates(query, vectors, offsets, candidates, chunk_tokens=chunk)
    want = [maxsim_naive(query, vectors[offsets[c]:offsets[c + 1]].astype(np.float32)) for c in candidates]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for c, g in zip(candidates, got):
        assert maxsim(query, vectors[offsets[c]:offsets[c + 1]]) == pytest.approx(float(g), rel=1e-4, abs=1e-4)


def test_one_maxsim_for_numpy_and_torch():
    """maxsim_scores serves NumPy (serving) and torch (training) alike: the same scores, empty documents
    score 0, padded query vectors add nothing, and gradients reach both sides."""
    rng = np.random.default_rng(3)
    lengths = np.array([3, 0, 5, 1])
    vectors = rng.standard_normal((int(lengths.sum()), 4)).astype(np.float32)
    queries = rng.standard_normal((2, 3, 4)).astype(np.float32)
    query_mask = np.array([[True, True, False], [True, True, True]])
    served = np.stack([maxsim_scores(q[m], vectors, lengths) for q, m in zip(queries, query_mask)])
    assert served.dtype == np.float32 and served[:, 1].tolist() == [0.0, 0.0]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for b in range(2):
        want = [maxsim_naive(queries[b][query_mask[b]], vectors[offsets[i]:offsets[i + 1]]) for i in range(4)]
        np.testing.assert_allclose(served[b], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(maxsim_scores(queries, vectors, lengths, query_mask=query_mask), served)
    q = torch.from_numpy(queries).requires_grad_()
    d = torch.from_numpy(vectors).requires_grad_()
    trained = maxsim_scores(q, d, torch.from_numpy(lengths), query_mask=torch.from_numpy(query_mask))
    np.testing.assert_allclose(trained.detach().numpy(), served, rtol=1e-6, atol=1e-6)
    trained.sum().backward()
    assert q.grad.abs().sum() > 0 and d.grad.abs().sum() > 0
    assert not q.grad[0, 2].any()  # a padded query vector gets no gradient
    # the padded-batch form the ColBERT trainer uses
    padded = torch.zeros(4, 5, 4)
    d_mask = torch.arange(5)[None, :] < torch.from_numpy(lengths)[:, None]
    padded[d_mask] = torch.from_numpy(vectors)
    np.testing.assert_allclose(maxsim_matrix(torch.from_numpy(queries), torch.from_numpy(query_mask), padded,
                                             d_mask).numpy(), served, rtol=1e-6, atol=1e-6)


def test_rerank_orders_by_score_then_index():
    vectors = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    offsets = np.array([0, 1, 2, 3])
    ids, scores = rerank(np.array([[1, 0]], np.float32), vectors, offsets, np.array([2, 1, 0]), k=2)
    assert ids.tolist() == [0, 2] and scores.tolist() == [1.0, 1.0]  # tie → lower document index first


@pytest.mark.parametrize("backend", ["faiss", "numpy"])
@pytest.mark.parametrize("n,k", [(30, 4), (9, 8), (5, 5), (3, 8), (50, 1)])
def test_clusters_are_at_most_k_member_means(backend, n, k):
    rng = np.random.default_rng(n * 10 + k)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    c = cluster_tokens(x, k, seed=1, backend=backend)
    assert 1 <= len(c) <= min(n, k)
    if n <= k:
        np.testing.assert_array_equal(c, x)
        return
    # every token's nearest centroid is one of them, and each centroid is the mean of the tokens nearest it
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    assign = d2.argmin(1)
    assert set(assign.tolist()) == set(range(len(c)))
    for j in range(len(c)):
        np.testing.assert_allclose(c[j], x[assign == j].mean(0), rtol=1e-5, atol=1e-5)


def test_budgets_settings_and_baselines():
    assert parse_setting("C4x8") == {"name": "C4x8", "query_k": 4, "doc_k": 8, "fraction": None}
    assert parse_setting("C25")["fraction"] == 0.25
    with pytest.raises(HeronError, match="unknown CRISP setting"):
        parse_setting("K9")
    assert [budget(n, fraction=0.25) for n in (1, 4, 5, 100)] == [1, 1, 2, 25]
    assert budget(3, k=8) == 3 and budget(0, k=8) == 0
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    np.testing.assert_array_equal(tail(x, 3), x[:3])
    np.testing.assert_array_equal(spacing(x, 3), x[[0, 4, 8]])  # j = ceil(10 / 3) = 4
    np.testing.assert_array_equal(spacing(x, 20), x)
    assert len(reduce(x, "kmeans", fraction=0.5)) <= 5
    with pytest.raises(HeronError, match="unknown reduction"):
        reduce(x, "random", k=2)


def test_torch_cluster_means_are_differentiable_member_means():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 4, requires_grad=True)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2])
    centroids, cmask = torch_cluster_means(x, mask, k=2)
    assert centroids.shape == (3, 2, 4) and cmask.sum(1).tolist() == [2, 2, 2]
    for b, n in enumerate(mask.sum(1).tolist()):
        tokens = x[b, :n].detach()
        cs = centroids[b][cmask[b]].detach()
        assign = torch.cdist(tokens, cs).argmin(1)
        for j in range(len(cs)):
            torch.testing.assert_close(cs[j], tokens[assign == j].mean(0))
    centroids[cmask].sum().backward()
    assert x.grad is not None and x.grad[0].abs().sum() > 0
    assert x.grad[1, 3:].abs().sum() == 0  # padding receives no gradient
    kept, kmask = torch_cluster_means(x.detach(), mask, k=8)  # n ≤ k: the tokens themselves
    torch.testing.assert_close(kept[1, :3], x[1, :3].detach())
    assert kmask.sum(1).tolist() == [7, 3, 5]
