"""Training CSR: a TopK sparse autoencoder over frozen dense embeddings (``heron train csr``).

Loss per step, on a batch ``X`` of base embeddings (training queries, their positive documents and
random corpus documents), after ``../shared/notes/algorithms.md`` (the CSR paper and its code)::

    L = NMSE(X, x̂_k) + 1/8 · NMSE(X, x̂_4k) + aux_coef · NMSE(x̂_aux, e) + cl_coef · InfoNCE(z_q, z_d)

- ``x̂_k`` / ``x̂_4k``: reconstructions from the top-k / top-4k latents (tied decoder).
- AuxK: ``e = X − x̂_k`` (no gradient) is reconstructed, without ``b_pre``, from the ``aux_k`` largest
  pre-activations among the *dead* latents — those that have not fired for more than
  ``dead_threshold`` steps — which pulls them back into use. The mask is applied to a new tensor
  (the reference code masks the pre-activations in place); with no dead latents or ``aux_k = 0`` the
  term is zero.
- InfoNCE on L2-normalised codes ``z_q`` / ``z_d`` of the query/positive pairs from the train qrels,
  in-batch negatives, temperature τ (0.2); other positives of the same query are masked out.

Reconstruction is measured as NMSE (MSE over the MSE of predicting the batch mean): dense embeddings
are often unit-length, where plain MSE is tiny next to the contrastive term; the paper's 1/8 and 1/32
weights are kept. Adam with ε = 6.25e-10 as the reference. Only train qrels are read
(:func:`heron.training.data.training_pairs`).

Example::

    heron train csr --dataset scifact --base minilm --k 32 --output checkpoints/scifact-csr-k32
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field

from heron.errors import HeronError
from heron.retrieval.encoders.csr import SparseAutoencoder
from heron.storage import staged, write_json_atomic
from heron.training.losses import info_nce, nmse


class CSRTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    datasets: list[str] = Field(min_length=1)
    base: str = "minilm"
    k: int = Field(32, ge=1)
    hidden_mult: int = Field(4, ge=1, le=64, description="latents = hidden_mult × the embedding dimension")
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(128, ge=2, description="query/positive pairs per step")
    recon_batch: int = Field(256, ge=0, description="extra random corpus documents per step (reconstruction)")
    lr: float = Field(1e-3, gt=0)
    aux_k: int = Field(512, ge=0)
    aux_coef: float = Field(1 / 32, ge=0)
    dead_threshold: int = Field(30, ge=1)
    cl_coef: float = Field(1.0, ge=0)
    temperature: float = Field(0.2, gt=0)
    split: str = "train"
    seed: int = 0
    threads: int | None = Field(None, ge=1)


def csr_loss(sae: SparseAutoencoder, x: torch.Tensor, q_rows: torch.Tensor | None = None,
             d_rows: torch.Tensor | None = None, false_negatives: torch.Tensor | None = None, *,
             aux_k: int = 512, aux_coef: float = 1 / 32, cl_coef: float = 1.0, temperature: float = 0.2,
             track_dead: bool = True) -> tuple[torch.Tensor, dict]:
    """The CSR loss of one batch ``x``; ``q_rows`` / ``d_rows`` index the paired rows of ``x``."""
    pre = sae.preactivations(x)
    v_k, i_k = sae.topk(pre, sae.k)
    v_4k, i_4k = sae.topk(pre, min(4 * sae.k, sae.hidden))
    x_k = sae.decode_sparse(v_k, i_k)
    rec_k = nmse(x_k, x)
    rec_4k = nmse(sae.decode_sparse(v_4k, i_4k), x)
    if track_dead:
        with torch.no_grad():
            sae.update_dead(v_k, i_k)
    dead = sae.dead_mask()
    n_dead = int(dead.sum())
    aux = torch.zeros((), device=x.device)
    if aux_k and n_dead and aux_coef:
        residual = (x - x_k).detach()
        dead_pre = torch.where(dead, pre, torch.full_like(pre, float("-inf")))  # a new tensor: pre is untouched
        v_aux, i_aux = sae.topk(dead_pre, min(aux_k, n_dead))
        aux = nmse(sae.decode_sparse(v_aux, i_aux, bias=False), residual)
    cl = torch.zeros((), device=x.device)
    if cl_coef and q_rows is not None and len(q_rows) > 1:
        z_q = sae.densify(v_k[q_rows], i_k[q_rows], sae.hidden)
        z_d = sae.densify(v_k[d_rows], i_k[d_rows], sae.hidden)
        cl = info_nce(z_q, z_d, temperature, false_negatives)
    total = rec_k + rec_4k / 8 + aux_coef * aux + cl_coef * cl
    parts = {"loss": total.item(), "rec_k": rec_k.item(), "rec_4k": rec_4k.item(), "aux": aux.item(),
             "infonce": cl.item(), "dead": n_dead}
    return total, parts


def train_csr(config: CSRTrainConfig, output: str | Path, progress: bool = True) -> Path:
    """Train a CSR checkpoint on the train qrels of ``config.datasets``; returns the checkpoint folder."""
    from tqdm.auto import tqdm

    from heron.eval import load_dataset
    from heron.retrieval.encoders.cache import corpus_embeddings
    from heron.retrieval.encoders.dense import DenseEncoder
    from heron.training.data import training_pairs

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    chosen = []
    for name in config.datasets:  # check every dataset's training data before loading any model
        ds = load_dataset(name)
        chosen.append((ds, training_pairs(ds, config.split)))
    encoder = DenseEncoder(config.base, threads=config.threads)
    corpus_blocks, q_blocks = [], []
    pair_q, pair_d, summaries = [], [], []
    doc_offset = q_offset = 0
    for ds, pairs in chosen:
        ids, vectors = corpus_embeddings(encoder, ds, progress=progress)
        position = {d: i for i, d in enumerate(ids)}
        qids = pairs.query_ids
        qpos = {q: i for i, q in enumerate(qids)}
        q_blocks.append(encoder.encode_queries([pairs.queries[q] for q in qids]))
        corpus_blocks.append(vectors)
        for qid, did in pairs.pairs:
            if did not in position:
                raise HeronError(f"{ds.qrels_path(config.split)}: document {did!r} is not in the corpus")
            pair_q.append(q_offset + qpos[qid])
            pair_d.append(doc_offset + position[did])
        summaries.append({**pairs.summary(), "fingerprint": ds.fingerprint(), "query_ids": qids})
        doc_offset += len(ids)
        q_offset += len(qids)
    corpus = torch.from_numpy(np.concatenate(corpus_blocks))
    queries = torch.from_numpy(np.concatenate(q_blocks))
    pair_q, pair_d = np.asarray(pair_q), np.asarray(pair_d)
    relevant = sp.csr_matrix((np.ones(len(pair_q), bool), (pair_q, pair_d)),
                             shape=(len(queries), len(corpus)))
    dim = corpus.shape[1]
    sae = SparseAutoencoder(dim, config.hidden_mult * dim, config.k, config.dead_threshold)
    with torch.no_grad():
        sae.b_pre.copy_(corpus.mean(dim=0))
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr, eps=6.25e-10)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) *
                                                 max(0.0, 1 - s / config.steps))
    order = rng.permutation(len(pair_q))
    cursor = 0
    history = []
    started = time.monotonic()
    bar = tqdm(range(config.steps), desc="CSR training", disable=not progress, dynamic_ncols=True)
    for step in bar:
        if cursor + config.batch_size > len(order):
            order, cursor = rng.permutation(len(pair_q)), 0
        sel = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        bq, bd = pair_q[sel], pair_d[sel]
        extra = rng.integers(0, len(corpus), config.recon_batch)
        x = torch.cat([queries[bq], corpus[bd], corpus[extra]])
        b = len(sel)
        false_neg = torch.from_numpy(relevant[bq][:, bd].toarray())
        loss, parts = csr_loss(sae, x, torch.arange(b), torch.arange(b, 2 * b), false_neg, aux_k=config.aux_k,
                               aux_coef=config.aux_coef, cl_coef=config.cl_coef, temperature=config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % 50 == 0 or step == config.steps - 1:
            history.append({"step": step, **parts})
            bar.set_postfix(loss=f"{parts['loss']:.3f}", nce=f"{parts['infonce']:.3f}", dead=parts["dead"])
    bar.close()
    output = Path(output)
    info = {"base": config.base, "base_encoder": encoder.describe(), "train_config": config.model_dump(),
            "seconds": round(time.monotonic() - started, 1), "first": history[0], "last": history[-1]}
    with staged(output) as tmp:  # a previous checkpoint stays whole until the new one replaces it
        sae.save(tmp, info)
        write_json_atomic(tmp / "training.json", {"config": config.model_dump(mode="json"), "datasets": summaries,
                                                  "history": history}, durable=False)
    return output
