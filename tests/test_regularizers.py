"""Regularisers, the λ schedule, ranking and distillation losses, LoL's comparative term: hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heron.errors import HeronError
from heron.training.losses import contrastive, kl_distillation, margin_mse
from heron.training.prf import lol_regularizer
from heron.training.regularizers import (
    FLOPS,
    L1,
    IDFAwareFLOPS,
    IDFWeightedFLOPS,
    QuadraticWarmup,
    RegTerm,
    Regularized,
    l0,
    make_regularizer,
    weighted_flops,
)

W = torch.tensor([[1.0, 0.0, 2.0, 0.0],
                  [3.0, 0.0, 0.0, 1.0],
                  [0.0, 0.0, 4.0, 0.0]])


def test_flops_l1_l0_hand_computed():
    # column means over the batch of 3: (4/3, 0, 2, 1/3) → squares summed
    assert float(FLOPS()(W)) == pytest.approx((4 / 3) ** 2 + 2 ** 2 + (1 / 3) ** 2)
    assert float(L1()(W)) == pytest.approx((3 + 4 + 4) / 3)
    assert float(l0(W)) == pytest.approx((2 + 2 + 1) / 3)
    # FLOPS takes |w|: signs do not matter
    assert float(FLOPS()(-W)) == pytest.approx(float(FLOPS()(W)))


def test_flops_threshold_masks_short_rows():
    # τ = 1: row 3 has a single non-zero and drops out; the mean still divides by B = 3
    expected = (4 / 3) ** 2 + (2 / 3) ** 2 + (1 / 3) ** 2
    assert float(FLOPS(threshold=1)(W)) == pytest.approx(expected)
    assert float(FLOPS(threshold=0)(W)) == pytest.approx(float(FLOPS()(W)))
    assert float(FLOPS(threshold=5)(W)) == 0.0
    with pytest.raises(HeronError):
        FLOPS(threshold=-1)


def test_flops_gradient_matches_formula():
    w = W.clone().requires_grad_(True)
    FLOPS()(w).backward()
    # d/dw_ij Σ_j (mean_i |w_ij|)² = 2 · mean_j / B · sign(w_ij)   (|·| has gradient 0 at 0)
    means = W.mean(dim=0)
    torch.testing.assert_close(w.grad, (2 * means / 3) * torch.sign(W))


def test_weighted_flops_and_idf_aware_flops():
    c = torch.tensor([1.0, 2.0, 0.5, 0.0])
    assert float(weighted_flops(W, c)) == pytest.approx((4 / 3) ** 2 + 0.5 * 4)
    idf = np.array([0.5, 1.0, 2.0, 4.0], dtype=np.float32)
    reg = IDFAwareFLOPS(idf)
    # the penalty is FLOPS on the document weights ...
    assert float(reg(W)) == pytest.approx(float(FLOPS()(W)))
    # ... = Σ_t (1/idf_t²)(mean_i u_it)² in the space of score contributions u = idf ⊙ w
    u = W * torch.from_numpy(idf)
    assert float(weighted_flops(u, reg.term_weights())) == pytest.approx(float(reg(W)), rel=1e-6)
    # matching: Σ_{t∈q} idf_t · w_d(t); query 1 has tokens {0, 2}, query 2 token {3}
    tokens = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    expected = torch.tensor([[0.5 * 1 + 2 * 2, 0.5 * 3, 2 * 4], [0.0, 4 * 1, 0.0]])
    torch.testing.assert_close(reg.match(tokens, W), expected)
    with pytest.raises(HeronError):
        IDFAwareFLOPS(np.array([1.0, np.inf]))


def test_idf_aware_flops_pushes_low_idf_terms_down_first():
    """Equal document weights, both terms in the query: the total gradient shrinks the low-IDF term and
    grows the high-IDF one, and gradient steps leave weights ordered by IDF."""
    idf = np.array([0.5, 3.0], dtype=np.float32)
    reg = IDFAwareFLOPS(idf)
    tokens = torch.tensor([[1.0, 1.0]])
    w = torch.ones(1, 2, requires_grad=True)
    loss = -reg.match(tokens, w).sum() + 1.0 * reg(w)
    loss.backward()
    assert w.grad[0, 0] > 0 > w.grad[0, 1]  # -0.5 + 2 > 0;  -3 + 2 < 0
    x = torch.zeros(1, 2, requires_grad=True)  # SPLADE-style weights log1p(relu(x + 1)), equal at the start
    opt = torch.optim.SGD([x], lr=0.1)
    for _ in range(200):
        d = torch.log1p(torch.relu(x + 1.0))
        opt.zero_grad()
        (-reg.match(tokens, d).sum() + 2.0 * reg(d)).backward()
        opt.step()
    d = torch.log1p(torch.relu(x + 1.0)).detach()[0]
    assert d[0] < 0.2 < d[1]  # stationary weights ∝ idf / (2λ): 0.125 and 0.75


def test_idf_weighted_flops_hand_computed():
    """Siamese IDF-aware FLOPS: Σ_j (ī/max(idf_j, floor))² (mean_i |w_ij|)², ī = mean IDF of seen terms."""
    idf = np.array([0.5, 1.0, 2.0, 0.0], dtype=np.float32)  # last term: zero IDF (special/stop) → floor
    reg = IDFWeightedFLOPS(idf, floor=0.25)
    ref = (0.5 + 1.0 + 2.0) / 3
    assert reg.reference == pytest.approx(ref)
    weights = np.array([(ref / 0.5) ** 2, (ref / 1.0) ** 2, (ref / 2.0) ** 2, (ref / 0.25) ** 2])
    np.testing.assert_allclose(reg.term_weights.numpy(), weights, rtol=1e-6)
    means = W.abs().mean(dim=0).numpy()  # column means of W: 4/3, 0, 2, 1/3
    assert float(reg(W)) == pytest.approx(float((weights * means ** 2).sum()), rel=1e-6)
    # with IDF = ī everywhere it is plain FLOPS; with the ℓ0 mask it masks the same rows as FLOPS
    flat = IDFWeightedFLOPS(np.full(4, 2.0, dtype=np.float32))
    assert float(flat(W)) == pytest.approx(float(FLOPS()(W)))
    masked = IDFWeightedFLOPS(np.full(4, 2.0, dtype=np.float32), threshold=1)
    assert float(masked(W)) == pytest.approx(float(FLOPS(threshold=1)(W)))
    w = W.clone().requires_grad_(True)
    reg(w).backward()
    assert w.grad.abs()[:, 0].sum() > 0  # gradients flow
    with pytest.raises(HeronError):
        IDFWeightedFLOPS(idf, floor=0)
    with pytest.raises(HeronError):
        IDFWeightedFLOPS(idf)(torch.ones(2, 3))


def test_quadratic_warmup():
    s = QuadraticWarmup(0.4, 10)
    assert [s(t) for t in (0, 1, 5, 10, 11, 1000)] == pytest.approx([0.0, 0.004, 0.1, 0.4, 0.4, 0.4])
    assert QuadraticWarmup(0.3, 0)(1) == 0.3
    with pytest.raises(HeronError):
        QuadraticWarmup(-1, 10)


def test_regularized_adds_scheduled_terms():
    q = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    d = torch.tensor([[2.0, 0.0]])
    reg = Regularized([RegTerm("flops_q", FLOPS(), QuadraticWarmup(1.0, 4), "query"),
                       RegTerm("l1_d", L1(), QuadraticWarmup(0.5, 0), "document")])
    total, parts = reg(torch.tensor(1.0), {"query": q, "document": d}, step=2)
    # FLOPS(q) = 1² + 0.5² = 1.25 with λ = (2/4)² = 0.25; L1(d) = 2 with λ = 0.5
    assert float(total) == pytest.approx(1.0 + 0.25 * 1.25 + 0.5 * 2)
    assert parts == {"main": 1.0, "flops_q": 1.25, "flops_q_lambda": 0.25, "l1_d": 2.0, "l1_d_lambda": 0.5}
    with pytest.raises(HeronError, match="document"):
        reg(torch.tensor(1.0), {"query": q}, step=1)


def test_make_regularizer():
    assert isinstance(make_regularizer("flops", threshold=2), FLOPS)
    assert make_regularizer("none") is None
    assert isinstance(make_regularizer("idf_flops", idf=[1.0, 2.0]), IDFAwareFLOPS)
    assert isinstance(make_regularizer("idf_flops", idf=[1.0, 2.0], inference_free=False), IDFWeightedFLOPS)
    for bad in (dict(kind="idf_flops"), dict(kind="l1", threshold=1), dict(kind="l2")):
        with pytest.raises(HeronError):
            make_regularizer(**bad)
    with pytest.raises(HeronError):
        FLOPS()(torch.ones(3))


def test_contrastive_hand_computed():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    r0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    r1 = -math.log(math.exp(1) / (1 + math.exp(1) + math.exp(3)))
    assert float(contrastive(scores)) == pytest.approx((r0 + r1) / 2, rel=1e-6)
    # temperature 2 halves the logits
    r0t = -math.log(math.exp(1) / (math.exp(1) + math.exp(0.5) + 1))
    r1t = -math.log(math.exp(0.5) / (1 + math.exp(0.5) + math.exp(1.5)))
    assert float(contrastive(scores, temperature=2.0)) == pytest.approx((r0t + r1t) / 2, rel=1e-6)
    # masking column 2 for row 1 (another positive of query 1); the target column itself is never masked
    mask = torch.tensor([[False, False, False], [False, True, True]])
    r1m = -math.log(math.exp(1) / (1 + math.exp(1)))
    assert float(contrastive(scores, mask=mask)) == pytest.approx((r0 + r1m) / 2, rel=1e-6)
    assert float(contrastive(scores, targets=torch.tensor([0, 2]), reduction="sum")) == pytest.approx(
        r0 - math.log(math.exp(3) / (1 + math.exp(1) + math.exp(3))), rel=1e-6)


def test_margin_mse_hand_computed():
    s_pos, t_pos = torch.tensor([3.0, 1.0]), torch.tensor([4.0, 2.0])
    s_neg = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    t_neg = torch.tensor([[1.0, 1.0], [1.0, 2.0]])
    # margins: student (2, 1, 1, 0), teacher (3, 3, 1, 0) → errors (-1, -2, 0, 0)
    assert float(margin_mse(s_pos, s_neg, t_pos, t_neg)) == pytest.approx((1 + 4) / 4)
    assert float(margin_mse(s_pos, s_neg[:, 0], t_pos, t_neg[:, 0])) == pytest.approx(1 / 2)


def test_kl_distillation_hand_computed():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # teacher distribution (3/4, 1/4), student (1/2, 1/2)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(kl_distillation(student, teacher)) == pytest.approx(expected, rel=1e-6)
    assert float(kl_distillation(teacher, teacher)) == pytest.approx(0.0, abs=1e-7)
    # a padded third candidate changes nothing, and gradients stay finite
    s = torch.tensor([[0.0, 0.0, 5.0]], requires_grad=True)
    t = torch.tensor([[math.log(3.0), 0.0, 9.0]])
    mask = torch.tensor([[False, False, True]])
    value = kl_distillation(s, t, mask=mask)
    value.backward()
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6) and torch.isfinite(s.grad).all()
    assert float(s.grad[0, 2]) == 0.0


def test_lol_regularizer_zero_when_ordered_positive_otherwise():
    less, more = torch.tensor([2.0, 1.5, 1.0]), torch.tensor([1.0, 1.5, 0.5])
    assert float(lol_regularizer([less, more])) == 0.0
    worse = torch.tensor([3.0, 1.0, 2.0])  # more feedback, larger loss for queries 0 and 2
    assert float(lol_regularizer([less, worse])) == pytest.approx((1.0 + 0 + 1.0) / 3)
    assert float(lol_regularizer([less, worse], reduction="sum")) == pytest.approx(2.0)
    # three nested sets: pairs (0,1), (0,2), (1,2)
    l0_, l1_, l2_ = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.5])
    assert float(lol_regularizer([l0_, l1_, l2_])) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert float(lol_regularizer([l0_])) == 0.0
