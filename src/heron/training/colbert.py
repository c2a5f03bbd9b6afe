"""Training a ColBERT-style multi-vector model (``heron train colbert [--crisp C25]``).

A backbone (default MiniLM) plus a linear projection to 128 dimensions, L2-normalised token vectors,
trained contrastively on a dataset's *train* qrels: each step takes ``batch_size`` training queries with
one positive each and ``negatives`` hard negatives per query mined from heron's own BM25 (a top-ranked
document that is not judged relevant), scores every query against every document in the batch by
MaxSim, and minimises the cross-entropy of the positive (in-batch negatives; other judged positives
masked out). ColBERT's query augmentation ([MASK] padding to ``query_length``) and punctuation skip-list
apply.

``crisp`` (``C4x8``, ``C8x32``, ``C25``, ``C50``) clusters the query and document token vectors inside the
forward pass (:func:`heron.multivector.crisp.torch_cluster_means`): centroids replace the tokens in MaxSim
and gradients flow through the means, as the CRISP paper trains. Scores come from
:func:`heron.multivector.maxsim.maxsim_matrix`, the MaxSim that multi-vector indexes serve. The checkpoint
is a PyLate-layout folder (loadable by :class:`~heron.retrieval.encoders.multivector.MultiVectorEncoder`
and by PyLate) plus ``training.json`` (the training query ids, the loss history), published atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from heron.errors import HeronError
from heron.multivector.maxsim import maxsim_matrix
from heron.storage import staged, write_json_atomic


class ColBERTTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    datasets: list[str] = Field(min_length=1)
    base: str = "minilm"
    dim: int = Field(128, ge=8)
    steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=2)
    negatives: int = Field(1, ge=0, description="BM25 hard negatives per query")
    negative_depth: int = Field(30, ge=2, description="BM25 ranks a hard negative is drawn from")
    lr: float = Field(5e-5, gt=0)
    projection_lr: float = Field(1e-3, gt=0, description="learning rate of the fresh projection")
    query_length: int = Field(32, ge=4)
    document_length: int = Field(180, ge=8)
    crisp: str | None = None
    split: str = "train"
    seed: int = 0
    threads: int | None = Field(None, ge=1)


def _hard_negatives(ds, pairs, depth: int, seed: int) -> dict[str, list[str]]:
    from heron.training.data import hard_negatives

    return hard_negatives(ds, pairs, depth, "bm25")


def train_colbert(config: ColBERTTrainConfig, output: str | Path, progress: bool = True) -> Path:
    from tqdm.auto import tqdm

    from heron.eval import load_dataset
    from heron.multivector.crisp import parse_setting, torch_cluster_means
    from heron.retrieval.encoders.multivector import MultiVectorEncoder
    from heron.training.data import training_pairs

    setting = parse_setting(config.crisp) if config.crisp else None
    if config.threads:
        torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    examples, texts, positives, summaries = [], {}, {}, []
    for name in config.datasets:
        ds = load_dataset(name)
        pairs = training_pairs(ds, config.split)
        negatives = _hard_negatives(ds, pairs, config.negative_depth, config.seed) if config.negatives else {}
        corpus = {d.id: d.contents for d in ds.iter_corpus()}
        for qid, did in pairs.pairs:
            if did not in corpus:
                raise HeronError(f"{ds.qrels_path(config.split)}: document {did!r} is not in the corpus")
            key = f"{ds.name}/{qid}"
            positives.setdefault(key, set()).add(f"{ds.name}/{did}")
            examples.append((key, pairs.queries[qid], f"{ds.name}/{did}",
                             [f"{ds.name}/{n}" for n in negatives.get(qid, [])]))
        texts.update({f"{ds.name}/{d}": t for d, t in corpus.items()})
        summaries.append({**pairs.summary(), "fingerprint": ds.fingerprint(), "query_ids": pairs.query_ids})
    encoder = MultiVectorEncoder(config.base, threads=config.threads, device="auto", query_length=config.query_length,
                                 document_length=config.document_length, projection_dim=config.dim, seed=config.seed)
    model = encoder.model
    model.train()
    opt = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": config.lr},
                             {"params": model.projection.parameters(), "lr": config.projection_lr}])
    warmup = max(1, config.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) *
                                                 max(0.0, 1 - s / config.steps))
    device = encoder.device
    history = []
    started = time.monotonic()
    bar = tqdm(range(config.steps), desc="ColBERT training" + (f" ({config.crisp})" if config.crisp else ""),
               disable=not progress, dynamic_ncols=True)
    for step in bar:
        batch, seen = [], set()
        for i in rng.permutation(len(examples)):  # distinct queries in a batch
            if examples[i][0] not in seen:
                batch.append(examples[i])
                seen.add(examples[i][0])
            if len(batch) == config.batch_size:
                break
        doc_keys = [b[2] for b in batch]
        for b in batch:
            pool = [n for n in b[3] if n not in positives[b[0]]]
            for n in (rng.choice(pool, size=min(config.negatives, len(pool)), replace=False) if pool else []):
                doc_keys.append(str(n))
        q_ids, q_mask = encoder.tokenize([b[1] for b in batch], is_query=True)
        d_ids, d_mask = encoder.tokenize([texts[k] for k in doc_keys], is_query=False)
        q_vec = model(q_ids.to(device), q_mask.to(device))
        d_vec = model(d_ids.to(device), d_mask.to(device))
        q_keep = encoder.keep_mask(q_ids, q_mask, True).to(device)
        d_keep = encoder.keep_mask(d_ids, d_mask, False).to(device)
        if setting:
            q_vec, q_keep = torch_cluster_means(q_vec, q_keep, setting["query_k"], setting["fraction"])
            d_vec, d_keep = torch_cluster_means(d_vec, d_keep, setting["doc_k"], setting["fraction"])
        scores = maxsim_matrix(q_vec, q_keep, d_vec, d_keep)
        false_neg = torch.tensor([[k in positives[b[0]] and j != i for j, k in enumerate(doc_keys)]
                                  for i, b in enumerate(batch)], device=device)
        scores = scores.masked_fill(false_neg, float("-inf"))
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch), device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        history.append({"step": step, "loss": float(loss.detach())})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    model.eval()
    output = Path(output)
    with staged(output) as tmp:  # a previous checkpoint stays whole until the new one replaces it
        encoder.write_files(tmp)
        write_json_atomic(tmp / "training.json", {
            "config": config.model_dump(), "datasets": summaries, "seconds": round(time.monotonic() - started, 1),
            "history": history}, durable=False)
    return output
