"""Training the learned PRF model (``heron train prf``), with or without LoL's comparative regulariser.

The model (:class:`heron.retrieval.prf.PRFModel`) revises a query vector from the vectors of its top-k
feedback documents, in the space of a built index (sparse: the inverted index's vocabulary; dense: the
FAISS bundle's embeddings). Training uses the dataset's *train* qrels only and the index's own vectors:

- first pass: each training query's vector (the index's query encoder) retrieves its top documents;
  the first ``max(feedback)`` are the feedback documents, the first ``candidates`` (plus the query's judged
  positives) its candidates;
- **reformulation loss** ``L_k`` of a revision that saw ``k`` feedback documents: a contrastive loss of
  the revised query's scores over the candidates of the whole batch — the softmax mass on the query's
  judged positives (``target: all``, the default) or the cross-entropy towards its lowest-scoring
  positive with the others masked (``target: lowest``). The revision is
  scaled to unit length first and the scores divided by the model's learned temperature: a ranking does
  not change with a query's scale, and neither may the loss (else shrinking every query "helps");
- **LoL** (``lol=True``): every query is revised in parallel with nested feedback sets
  ``k_1 < k_2 < …`` (``feedback``; 0 = no feedback), and the comparative regulariser
  :func:`lol_regularizer` ``= mean over pairs (less, more) of max(0, L_more − L_less)`` is added with
  weight ``lambda_cr``, so more feedback never earns a larger loss. Without LoL each query is revised
  once, with a count drawn from ``feedback``.

Total: ``mean_k L_k + λ_cr · L_cr``. The model is saved as ``model.safetensors`` + ``prf_model.json``
(never pickle) with ``training.json`` (config, training query ids, loss history).

Example::

    heron train prf --dataset scifact --index indexes/scifact-splade-tiny --output checkpoints/scifact-prf-lol
    heron eval -d scifact --index indexes/scifact-splade-tiny --prf model:checkpoints/scifact-prf-lol

    >>> import torch
    >>> float(lol_regularizer([torch.tensor([2.0, 1.0]), torch.tensor([1.0, 3.0])]))   # (0 + 2) / 2
    1.0
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch.nn import functional as F

from heron.errors import HeronError
from heron.storage import staged, write_json_atomic


def lol_regularizer(losses: Sequence[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """LoL's comparative regulariser over per-query losses ordered by *increasing* feedback.

    ``losses[i]``: the ``B`` per-query reformulation losses of the revision with the ``i``-th smallest
    feedback set. Every pair ``i < j`` (``j`` saw more feedback) contributes ``max(0, L_j − L_i)``:
    zero when more feedback already gives a smaller (or equal) loss, positive otherwise. ``mean`` averages
    over pairs and queries; ``sum`` adds them (``Σ max(0, L_more − L_less)``).
    """
    if len(losses) < 2:
        return torch.zeros((), device=losses[0].device if losses else None)
    terms = [torch.relu(losses[j] - losses[i]) for i in range(len(losses)) for j in range(i + 1, len(losses))]
    stacked = torch.stack(terms)
    if reduction == "sum":
        return stacked.sum()
    if reduction == "mean":
        return stacked.mean()
    raise ValueError(f"reduction must be mean or sum, not {reduction!r}")


def reformulation_loss(revised: torch.Tensor, candidates: torch.Tensor, positives: torch.Tensor,
                       temperature: float | torch.Tensor = 1.0, target: str = "all") -> torch.Tensor:
    """Per-query contrastive loss of revised queries over a candidate matrix; returns ``B`` losses.

    ``revised``: ``B × D``; ``candidates``: ``M × D`` (dense, or a torch sparse matrix); ``positives``:
    ``B × M`` boolean (each row has at least one). ``target``:

    - ``all``: ``−log Σ_{p∈P} softmax(s/τ)_p`` — the probability mass on the query's positives (robust when a
      query has dozens of judged documents, as NFCorpus's 43 on average);
    - ``lowest``: cross-entropy towards the lowest-scoring positive, the other positives masked out (pulls
      up the positive the query ranks worst).
    """
    if candidates.is_sparse:
        scores = torch.sparse.mm(candidates, revised.t()).t()
    else:
        scores = revised @ candidates.t()
    if not bool(positives.any(dim=1).all()):
        raise HeronError("every training query needs a positive among its candidates")
    logits = scores / temperature
    if target == "all":
        return torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    if target != "lowest":
        raise HeronError(f"reformulation target must be all or lowest, not {target!r}")
    with torch.no_grad():
        lowest = scores.masked_fill(~positives, float("inf")).argmin(dim=1)
    rows = torch.arange(len(lowest), device=scores.device)
    others = positives.clone()
    others[rows, lowest] = False
    return F.cross_entropy(logits.masked_fill(others, float("-inf")), lowest, reduction="none")


class PRFTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: str
    index: str = Field(description="an index of the dataset (inverted or FAISS) whose vectors PRF works on")
    lol: bool = True
    feedback: list[int] = Field(default_factory=lambda: [0, 1, 3, 5],
                                description="nested feedback-set sizes (0 = no feedback)")
    lambda_cr: float = Field(1.0, ge=0, description="weight of the comparative regulariser")
    max_feedback: int | None = Field(None, ge=1, description="feedback slots the model takes at query time "
                                     "(default: the largest feedback size; larger lets a model trained at a "
                                     "fixed k be run with more documents)")
    docs: int | None = Field(None, ge=1, description="feedback documents at query time (default: max feedback)")
    candidates: int = Field(30, ge=2, description="first-pass documents per query used as candidates")
    steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(1e-2, gt=0)
    temperature: float | None = Field(None, gt=0, description="initial training temperature, then learned "
                                "(default 1 sparse, 0.05 dense)")
    terms: int = Field(100, ge=0, description="sparse: weights kept per revised query at query time (0 = all)")
    query_gain: bool = Field(True, description="sparse: learn per-term gains on the query's own terms too")
    target: Literal["all", "lowest"] = Field("all", description="reformulation loss target: the softmax mass on "
                                             "all positives, or the lowest-scoring positive")
    split: str = "train"
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)

    @field_validator("feedback")
    @classmethod
    def _nested(cls, value: list[int]) -> list[int]:
        value = sorted(set(value))
        if not value or value[0] < 0 or value[-1] < 1:
            raise ValueError("feedback sizes must be ≥ 0 with at least one ≥ 1")
        return value


class PRFTrainer:
    """Precomputes first-pass results of the training queries, then trains a :class:`PRFModel`."""

    def __init__(self, config: PRFTrainConfig):
        from heron.eval import load_dataset
        from heron.retrieval import open_index_retriever
        from heron.retrieval.prf import FeedbackSpace, PRFModel
        from heron.training.data import check_no_evaluation_queries, training_pairs
        from heron.training.splade import seed_everything

        self.config = config
        seed_everything(config.seed)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.dataset = load_dataset(config.dataset)
        self.pairs = training_pairs(self.dataset, config.split)
        check_no_evaluation_queries(self.dataset, self.pairs.query_ids)
        self.base = open_index_retriever(config.index)
        self.base.check_dataset(self.dataset)
        self.space = FeedbackSpace(self.base)
        self.max_feedback = max(config.max_feedback or 0, max(config.feedback))
        self.model = PRFModel(self.space.kind, self.space.dim, self.max_feedback, terms=config.terms,
                              temperature=config.temperature, query_gain=config.query_gain)
        self.qids = self.pairs.query_ids
        self.queries = self.base.encode([self.pairs.queries[q] for q in self.qids])
        if not sp.issparse(self.queries):
            self.queries = np.asarray(self.queries, dtype=np.float32)
        depth = max(config.candidates, self.max_feedback)
        self.hits: list[tuple[np.ndarray, np.ndarray]] = []
        index = self.space.index
        for start in range(0, len(self.qids), 256):
            rows = self.queries[start:start + 256]
            dense = rows.toarray() if sp.issparse(rows) else rows
            for ids, scores in self.space.search(dense, depth):
                self.hits.append((np.array([index.doc_index(d) for d in ids], dtype=np.int64),
                                  np.asarray(scores, dtype=np.float32)))
        judged: dict[str, set[int]] = {}
        for qid, did in self.pairs.pairs:
            try:
                judged.setdefault(qid, set()).add(index.doc_index(did))
            except (KeyError, HeronError):
                raise HeronError(f"{config.index}: judged document {did!r} is not in the index") from None
        self.positives = [np.array(sorted(judged[q]), dtype=np.int64) for q in self.qids]
        self._forward = index.forward_matrix(dequantize=True) if self.space.kind == "sparse" else None
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=config.lr)
        self.rng = np.random.default_rng(config.seed)
        self._order, self._cursor = self.rng.permutation(len(self.qids)), 0
        self.step_count = 0

    # -- batches -------------------------------------------------------------------------------------
    def _doc_rows(self, positions: np.ndarray) -> np.ndarray | sp.csr_matrix:
        if self._forward is not None:
            return self._forward[positions]
        return self.space.vectors(positions)

    def _query_rows(self, idx: np.ndarray) -> torch.Tensor:
        rows = self.queries[idx]
        return torch.from_numpy(np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float32))

    def batch(self, idx: np.ndarray) -> dict:
        """Tensors of one batch of training queries (``idx`` into the training query list)."""
        k = self.max_feedback
        b = len(idx)
        docs = torch.zeros(b, k, self.space.dim)
        scores = torch.zeros(b, k)
        available = torch.zeros(b, k, dtype=torch.bool)
        pool: dict[int, int] = {}
        for r, i in enumerate(idx):
            positions, s = self.hits[i]
            n = min(k, len(positions))
            if n:
                rows = self._doc_rows(positions[:n])
                docs[r, :n] = torch.from_numpy(np.asarray(rows.toarray() if sp.issparse(rows) else rows))
                scores[r, :n] = torch.from_numpy(s[:n])
                available[r, :n] = True
            for p in list(positions[: self.config.candidates]) + list(self.positives[i]):
                pool.setdefault(int(p), len(pool))
        order = np.fromiter(pool.keys(), dtype=np.int64, count=len(pool))
        positive = torch.zeros(b, len(order), dtype=torch.bool)
        for r, i in enumerate(idx):
            positive[r, [pool[int(p)] for p in self.positives[i]]] = True
        rows = self._doc_rows(order)
        if sp.issparse(rows):
            coo = rows.tocoo()
            candidates = torch.sparse_coo_tensor(torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
                                                 torch.from_numpy(coo.data.astype(np.float32)), size=coo.shape,
                                                 check_invariants=False).coalesce()
        else:
            candidates = torch.from_numpy(np.asarray(rows, dtype=np.float32))
        return {"q": self._query_rows(idx), "docs": docs, "scores": scores, "available": available,
                "candidates": candidates, "positives": positive}

    def next_indices(self) -> np.ndarray:
        b = min(self.config.batch_size, len(self.qids))
        if self._cursor + b > len(self._order):
            self._order, self._cursor = self.rng.permutation(len(self.qids)), 0
        idx = self._order[self._cursor:self._cursor + b]
        self._cursor += b
        return idx

    # -- losses --------------------------------------------------------------------------------------
    def losses(self, batch: dict, counts: Sequence[int]) -> list[torch.Tensor]:
        """Per-query reformulation losses of the revisions with ``counts`` feedback documents (nested)."""
        slots = torch.arange(self.max_feedback)
        out = []
        for c in counts:
            mask = batch["available"] & (slots < c)[None, :]
            revised = self.model(batch["q"], batch["docs"], batch["scores"], mask)
            # the loss sees the revision's direction only (a ranking ignores a query's scale), so the model
            # cannot lower it by shrinking or inflating the query; the learned temperature sets its sharpness
            out.append(reformulation_loss(F.normalize(revised, dim=1), batch["candidates"], batch["positives"],
                                          self.model.temperature, self.config.target))
        return out

    def step(self) -> dict:
        c = self.config
        self.step_count += 1
        batch = self.batch(self.next_indices())
        if c.lol:
            counts = list(c.feedback)
            per = self.losses(batch, counts)
            main = torch.stack([x.mean() for x in per]).mean()
            reg = lol_regularizer(per)
            total = main + c.lambda_cr * reg
        else:
            counts = [int(self.rng.choice(c.feedback))]
            per = self.losses(batch, counts)
            main = per[0].mean()
            reg = torch.zeros(())
            total = main
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        parts = {"step": self.step_count, "loss": float(total.detach()), "reformulation": float(main.detach()),
                 "comparative": float(reg.detach())}
        parts.update({f"L_{k}": float(x.detach().mean()) for k, x in zip(counts, per)})
        return parts

    def save(self, output: str | Path, history: list[dict], seconds: float) -> Path:
        output = Path(output)
        info = {"docs": self.config.docs or max(self.config.feedback), "index": str(self.config.index),
                "index_encoder": self.base.index.encoder, "dataset": self.dataset.name,
                "fingerprint": self.dataset.fingerprint(), "lol": self.config.lol}
        with staged(output) as tmp:  # a previous model stays whole until the new one replaces it
            self.model.save(tmp, info)
            write_json_atomic(tmp / "training.json", {
                "config": self.config.model_dump(),
                "datasets": [{**self.pairs.summary(), "fingerprint": self.dataset.fingerprint(),
                              "query_ids": self.pairs.query_ids}],
                "seconds": round(seconds, 1), "history": history}, durable=False)
        return output


def train_prf(config: PRFTrainConfig, output: str | Path, progress: bool = True) -> Path:
    """Train a PRF model on the index's vectors and the dataset's train qrels; returns the model folder."""
    from tqdm.auto import tqdm

    trainer = PRFTrainer(config)
    history: list[dict] = []
    started = time.monotonic()
    bar = tqdm(range(config.steps), desc="PRF training" + (" (LoL)" if config.lol else ""), disable=not progress,
               dynamic_ncols=True)
    for i in bar:
        parts = trainer.step()
        if i % config.log_every == 0 or i == config.steps - 1:
            history.append(parts)
            bar.set_postfix(loss=f"{parts['loss']:.3f}", cr=f"{parts['comparative']:.3f}")
    bar.close()
    return trainer.save(output, history, time.monotonic() - started)
