"""CSR: TopK sparsity, the loss pieces, dead-latent bookkeeping and revival, training, checkpoints, no test leak."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from heron.errors import HeronError
from heron.retrieval.encoders.csr import SparseAutoencoder
from heron.training.csr import csr_loss
from heron.training.data import evaluation_query_ids, training_pairs
from heron.training.losses import info_nce, mse, nmse


@pytest.mark.parametrize("k", [1, 3, 8, 32])
def test_topk_yields_at_most_k_nonzeros(k):
    torch.manual_seed(0)
    sae = SparseAutoencoder(16, 64, k)
    x = torch.randn(200, 16)
    codes = sae.encode(x)
    nnz = (codes != 0).sum(dim=1)
    assert int(nnz.max()) <= k and (codes >= 0).all()
    pre = sae.preactivations(x)
    # the kept latents are exactly the positive ones among the k largest pre-activations
    top = pre.topk(k, dim=1)
    expected = torch.zeros_like(pre).scatter(1, top.indices, torch.relu(top.values))
    torch.testing.assert_close(codes, expected)
    assert int(nnz.min()) == k or bool((top.values <= 0).any())


def test_sparse_decode_equals_dense_decode():
    torch.manual_seed(1)
    sae = SparseAutoencoder(12, 48, 5)
    values, indices = sae.topk(sae.preactivations(torch.randn(30, 12)), 5)
    dense = sae.densify(values, indices, 48)
    torch.testing.assert_close(sae.decode_sparse(values, indices), sae.decode(dense))
    torch.testing.assert_close(sae.decode_sparse(values, indices, bias=False), dense @ sae.W_enc)


def test_losses_hand_computed():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert mse(pred, target).item() == pytest.approx((4 + 16) / 4)
    # baseline: mean row (2, 0); squared deviations 1, 0, 1, 0 → 0.5
    assert nmse(pred, target).item() == pytest.approx(5.0 / 0.5)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # cosine logits / 0.5: row 0 [2, 1.4142], row 1 [0, 1.4142]
    r0 = -np.log(np.exp(2) / (np.exp(2) + np.exp(np.sqrt(2))))
    r1 = -np.log(np.exp(np.sqrt(2)) / (1 + np.exp(np.sqrt(2))))
    assert info_nce(q, d, 0.5).item() == pytest.approx((r0 + r1) / 2, rel=1e-5)
    # masking document 1 as a false negative of query 0 leaves row 0 with only its positive
    mask = torch.tensor([[False, True], [False, False]])
    assert info_nce(q, d, 0.5, mask).item() == pytest.approx(r1 / 2, rel=1e-5)


def test_dead_latent_counter():
    sae = SparseAutoencoder(4, 6, 2, dead_threshold=2)
    codes = torch.zeros(3, 6)
    codes[0, 1] = 1.0
    for _ in range(3):
        sae.update_dead(codes)
    assert sae.steps_since_fired.tolist() == [3, 0, 3, 3, 3, 3]
    assert sae.dead_mask().tolist() == [True, False, True, True, True, True]
    codes[2, 4] = 0.5  # latent 4 fires again: its counter resets and it is alive
    values, indices = torch.tensor([[0.5, 0.0]]), torch.tensor([[4, 0]])  # sparse form; value 0 does not fire
    sae.update_dead(values, indices)
    assert sae.steps_since_fired.tolist() == [4, 1, 4, 4, 0, 4]


def _dead_start(seed=0):
    """An autoencoder whose latents 0..15 lose every TopK and Top-4k contest: tiny encoder rows and
    pre-activations ≈ 0.1, against latents 16..31 at ≈ 5 (k = 4, so 4k = 16 = the live ones; inputs are
    small). Only AuxK can reach them."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(8, 32, 4, dead_threshold=5)
    with torch.no_grad():
        sae.W_enc[:16] *= 0.001
        sae.b_lat[:16] = 0.1
        sae.b_lat[16:] = 5.0
    return sae


def _batches(steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(16, 8, generator=gen)
    for _ in range(steps):
        yield 0.05 * torch.randn(128, 16, generator=gen).relu() @ basis


def test_auxk_trains_dead_latents():
    """The counter marks the silent latents dead; AuxK then (and only then) sends them gradient, and they
    are trained on the residual the live latents leave (the mechanism that brings them back)."""
    runs = {}
    for aux_k in (16, 0):
        sae = _dead_start()
        start = sae.W_enc[:16].detach().clone()
        opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
        history = []
        for x in _batches(200):
            loss, parts = csr_loss(sae, x, aux_k=aux_k, cl_coef=0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(parts)
        runs[aux_k] = (history, float((sae.W_enc[:16].detach() - start).abs().max()), sae.dead_mask())
    without, moved_without, dead_without = runs[0]
    with_aux, moved_with, _ = runs[16]
    assert bool(dead_without[:16].all())  # the counter found them (and live ones that never won a top-k slot)
    assert moved_without == 0.0  # no gradient reaches a dead latent without AuxK
    assert moved_with > 0.01
    assert all(p["aux"] > 0 for p in with_aux[10:]) and all(p["aux"] == 0 for p in without)


def test_aux_loss_zero_when_no_latent_is_dead():
    sae = SparseAutoencoder(8, 16, 4)
    _, parts = csr_loss(sae, torch.randn(32, 8), aux_k=8, cl_coef=0.0)
    assert parts["dead"] == 0 and parts["aux"] == 0.0


def test_preactivations_not_mutated_by_aux_masking():
    torch.manual_seed(2)
    sae = SparseAutoencoder(8, 16, 2, dead_threshold=0)
    sae.steps_since_fired += 5  # every latent counts as dead
    x = torch.randn(20, 8)
    before = sae.preactivations(x).detach().clone()
    csr_loss(sae, x, aux_k=4, cl_coef=0.0, track_dead=False)
    torch.testing.assert_close(sae.preactivations(x).detach(), before)


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    sae = SparseAutoencoder(16, 64, 4)
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    basis = torch.randn(32, 16, generator=gen)
    x = torch.randn(256, 32, generator=gen).relu() @ basis
    q_rows, d_rows = torch.arange(0, 64), torch.arange(64, 128)
    x[64:128] = x[:64] + 0.1 * torch.randn(64, 16, generator=gen)  # documents near their queries
    first = last = None
    for _ in range(150):
        loss, parts = csr_loss(sae, x, q_rows, d_rows, aux_k=16)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or parts
        last = parts
    assert last["loss"] < 0.6 * first["loss"]
    assert last["rec_k"] < first["rec_k"] and last["infonce"] < first["infonce"]


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    sae = SparseAutoencoder(8, 24, 3)
    sae.save(tmp_path / "ck", {"base": "minilm"})
    loaded, config = SparseAutoencoder.load(tmp_path / "ck")
    x = torch.randn(10, 8)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    assert config["k"] == 3 and config["base"] == "minilm"
    assert not list(tmp_path.glob("ck/*.pt")) and (tmp_path / "ck" / "model.safetensors").is_file()
    with pytest.raises(HeronError, match="not a heron CSR checkpoint"):
        SparseAutoencoder.load(tmp_path)


@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_training_pairs_never_contain_test_queries(name):
    from heron.eval import load_dataset

    ds = load_dataset(name)
    pairs = training_pairs(ds)
    held = evaluation_query_ids(ds)
    assert held >= set(ds.qrels("test"))
    assert pairs.query_ids and not set(pairs.query_ids) & held
    assert {q for q, _ in pairs.pairs} <= set(ds.qrels("train"))
    with pytest.raises(HeronError, match="refusing to train on the 'test' qrels"):
        training_pairs(ds, "test")


def test_training_refuses_leaked_split(tmp_path, tiny_beir):
    import shutil

    from heron.eval import load_dataset

    leaky = tmp_path / "leaky"
    shutil.copytree(tiny_beir, leaky)
    (leaky / "qrels" / "train.tsv").write_text((leaky / "qrels" / "test.tsv").read_text())
    with pytest.raises(HeronError, match="also appear in the evaluation qrels"):
        training_pairs(load_dataset(leaky))


@pytest.mark.models
def test_train_csr_end_to_end_records_only_train_queries(tmp_path, tiny_beir):
    from heron.eval import load_dataset
    from heron.training.csr import CSRTrainConfig, train_csr

    out = train_csr(CSRTrainConfig(datasets=[str(tiny_beir)], k=8, steps=40, batch_size=8, recon_batch=16),
                    tmp_path / "ck", progress=False)
    record = json.loads((out / "training.json").read_text())
    ds = load_dataset(tiny_beir)
    used = set(record["datasets"][0]["query_ids"])
    assert used == set(ds.qrels("train")) and not used & set(ds.qrels("test"))
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]
    _, config = SparseAutoencoder.load(out)
    assert config["k"] == 8 and config["hidden"] == 4 * 384
