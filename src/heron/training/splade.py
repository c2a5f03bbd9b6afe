"""Training SPLADE (``heron train splade``): a masked LM fine-tuned into a sparse encoder.

Each step takes ``batch_size`` training queries with one positive each, plus ``negatives`` hard
negatives per query (mined with heron's own BM25 or SPLADE index, :func:`heron.training.data.hard_negatives`,
or drawn from a teacher run), encodes queries and documents as SPLADE vectors
(``w_j = max_i log(1 + ReLU(logit_ij))`` over real tokens — the definition
:class:`~heron.retrieval.encoders.splade.SpladeEncoder` serves) and minimises::

    L = L_rank + λ_q(t) · R_q(queries) + λ_d(t) · R_d(documents)

- ``L_rank``: ``infonce`` (dot-product scores, in-batch and hard negatives, other judged positives
  masked), ``margin_mse`` or ``kl`` (distillation: teacher scores from a TREC run file, ``teacher_run``).
- ``R_q`` / ``R_d``: :mod:`heron.training.regularizers` — FLOPS (with its optional ℓ0 row threshold),
  L1 (queries) or IDF-aware FLOPS (``idf_flops``: :class:`~heron.training.regularizers.IDFWeightedFLOPS`,
  low-IDF terms pay more); each λ follows the quadratic warm-up ``λ·(t/T)²`` up to step ``T``.
- ``inference_free``: no query encoder; only the document encoder is trained and regularised. With
  ``doc_regularizer: idf_flops`` (the default) queries are their tokens weighted by IDF
  (:class:`~heron.retrieval.encoders.idf.IDFQueryEncoder`, ``log(N/(1+df))`` over the training corpus's
  tokens) and the penalty is Geng et al.'s IDF-aware FLOPS
  (:class:`~heron.training.regularizers.IDFAwareFLOPS`); with ``flops`` the query tokens weigh 1
  (SPLADE-doc) and the penalty is plain FLOPS.

Training data: the *train* qrels of ``datasets`` (:func:`heron.training.data.training_pairs` refuses
test/dev and any query that also has evaluation judgments) and/or an MS MARCO-style text triples file
(queries that are evaluation queries of ``datasets`` are refused). Seeds fix sampling, dropout and
initialisation: the same config gives the same loss history.

The checkpoint folder is a Hugging Face masked-LM folder (``model.safetensors``, config, tokenizer):
``transformers.AutoModelForMaskedLM.from_pretrained(folder)`` and ``SpladeEncoder(folder)`` both load it,
and ``heron build-index --encoder splade --model folder`` indexes with it. It also holds
``heron_encoder.json`` (``SpladeEncoder.load(folder)`` restores the trained setup, with the IDF query
encoder in ``query/`` for inference-free runs) and ``training.json`` (config, training query ids, loss
history). Nothing is pickled.

Example::

    heron train splade --dataset scifact --output checkpoints/scifact-splade --config configs/train/splade-cpu.yaml
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from heron.errors import HeronError
from heron.retrieval.encoders.pooling import splade_pool
from heron.storage import staged, write_json_atomic
from heron.training import losses
from heron.training.regularizers import (
    QuadraticWarmup,
    RegTerm,
    Regularized,
    l0,
    make_regularizer,
)


class SpladeTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    datasets: list[str] = Field(default_factory=list, description="BEIR datasets whose train qrels are used")
    triples: str | None = Field(None, description="MS MARCO-style text triples file (query, positive, negative)")
    triples_limit: int | None = Field(None, ge=1)
    guard_datasets: list[str] = Field(default_factory=list, description="datasets whose evaluation queries the "
                                      "triples must not contain (besides datasets)")
    base: str = Field("splade-tiny", description="masked LM to start from: alias, HF id or folder")
    inference_free: bool = Field(False, description="no query encoder: queries are their tokens (IDF-weighted "
                                 "with doc_regularizer idf_flops, binary with flops); only documents are encoded")
    loss: Literal["infonce", "margin_mse", "kl"] = "infonce"
    teacher_run: str | None = Field(None, description="TREC run with teacher scores (margin_mse / kl)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of infonce / kl")
    negatives: int = Field(1, ge=0, description="hard negatives per query")
    negative_source: str = Field("bm25", description="bm25, splade, or an index folder of the dataset")
    negative_depth: int = Field(30, ge=2)
    sampling: Literal["balanced", "pairs"] = Field(
        "balanced", description="balanced: each batch takes equal shares of the sources (datasets, triples), a "
        "query uniformly within one, then one of its positives; pairs: uniform over (query, positive) pairs, "
        "where a dataset with many judgments per query (NFCorpus: 43) swamps the others")
    steps: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=2)
    lr: float = Field(2e-5, gt=0)
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up (then linear decay)")
    query_regularizer: Literal["flops", "l1", "idf_flops", "none"] = "flops"
    doc_regularizer: Literal["flops", "idf_flops", "none"] | None = Field(
        None, description="default: idf_flops when inference_free (Geng et al.), else flops")
    lambda_q: float = Field(3e-3, ge=0)
    lambda_d: float = Field(1e-3, ge=0)
    lambda_warmup: int = Field(100, ge=0, description="T of the quadratic λ warm-up, in steps")
    flops_threshold: int | None = Field(None, ge=0, description="ℓ0 mask: rows with ≤ τ non-zeros skip FLOPS")
    query_length: int = Field(32, ge=4)
    document_length: int = Field(128, ge=8)
    split: str = "train"
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    device: str = "auto"
    amp: bool = Field(False, description="bfloat16 autocast on CUDA")
    log_every: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _consistent(self):
        if not self.datasets and not self.triples:
            raise ValueError("give datasets (train qrels) or a triples file")
        if self.loss != "infonce" and not self.teacher_run:
            raise ValueError(f"loss {self.loss!r} distils a teacher: set teacher_run")
        if self.teacher_run and self.triples:
            raise ValueError("teacher_run scores dataset queries; it cannot be combined with triples")
        if self.loss != "infonce" and self.negatives < 1:
            raise ValueError(f"loss {self.loss!r} needs negatives ≥ 1")
        if self.doc_regularizer is None:
            self.doc_regularizer = "idf_flops" if self.inference_free else "flops"
        return self

    @property
    def needs_idf(self) -> bool:
        """IDF over the training corpus: IDF query vectors or an IDF-aware penalty."""
        return self.inference_free or "idf_flops" in (self.query_regularizer, self.doc_regularizer)


def load_config(path: str | Path | None, cls=SpladeTrainConfig, **overrides):
    """A training config from YAML (``path`` may be ``None``) with non-``None`` ``overrides`` on top
    (:func:`heron.training.configs.load_config`, defaulting to this trainer's model)."""
    from heron.training.configs import load_config as load

    return load(path, cls, **overrides)


# -- the model's forward -----------------------------------------------------------------------------------
def splade_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``B × V`` SPLADE weights ``max_i log(1 + ReLU(logit_ij))`` over real tokens (differentiable): the
    encoder's own pooling (:func:`~heron.retrieval.encoders.pooling.splade_pool`) of the model's logits."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return splade_pool(logits, attention_mask)


def resolve_base(base: str) -> tuple[str, bool]:
    """The transformer folder (or hub id) of a SPLADE base model and its ``do_lower_case``."""
    from heron.retrieval.encoders.hf import resolve_model_folder
    from heron.retrieval.encoders.splade import read_layout

    spec, _ = read_layout(resolve_model_folder(base))
    return str(spec.path), bool(spec.lowercase)


@dataclass
class Example:
    query_key: str
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    teacher: dict[str, float] | None = None


@dataclass
class TrainingSet:
    examples: list[Example]
    texts: dict[str, str]
    positives: dict[str, set[str]]
    summaries: list[dict]

    def corpus_texts(self) -> list[str]:
        return list(self.texts.values())


def build_training_set(config: SpladeTrainConfig) -> TrainingSet:
    """Examples from the train qrels (and/or triples), with hard negatives or teacher-scored candidates."""
    from heron.eval import load_dataset
    from heron.training.data import (
        check_no_evaluation_queries,
        evaluation_query_texts,
        hard_negatives,
        read_triples,
        teacher_scores,
        training_pairs,
    )

    examples: list[Example] = []
    texts: dict[str, str] = {}
    positives: dict[str, set[str]] = {}
    summaries: list[dict] = []
    held_texts: set[str] = set()
    chosen = []
    for name in config.datasets:  # check every dataset's training data before any slow work
        ds = load_dataset(name)
        pairs = training_pairs(ds, config.split)
        check_no_evaluation_queries(ds, pairs.query_ids)
        chosen.append((ds, pairs))
        held_texts |= evaluation_query_texts(ds)
    for name in config.guard_datasets:
        held_texts |= evaluation_query_texts(load_dataset(name))
    for ds, pairs in chosen:
        teacher = teacher_scores(config.teacher_run, pairs) if config.teacher_run else None
        mined = {}
        if config.negatives and teacher is None:
            mined = hard_negatives(ds, pairs, config.negative_depth, config.negative_source)
        corpus = {d.id: d.contents for d in ds.iter_corpus()}
        judged: dict[str, set[str]] = {}
        for qid, did in pairs.pairs:
            judged.setdefault(qid, set()).add(did)
        skipped = 0
        for qid, did in pairs.pairs:
            if did not in corpus:
                raise HeronError(f"{ds.qrels_path(config.split)}: document {did!r} is not in the corpus")
            key = f"{ds.name}/{qid}"
            positives.setdefault(key, set()).add(f"{ds.name}/{did}")
            if teacher is not None:
                scored = teacher.get(qid, {})
                if did not in scored:
                    skipped += 1
                    continue
                negs = [d for d in scored if d not in judged[qid] and d in corpus][: config.negative_depth]
                if not negs:
                    skipped += 1
                    continue
                examples.append(Example(key, pairs.queries[qid], f"{ds.name}/{did}",
                                        [f"{ds.name}/{n}" for n in negs],
                                        {f"{ds.name}/{d}": float(s) for d, s in scored.items()}))
            else:
                examples.append(Example(key, pairs.queries[qid], f"{ds.name}/{did}",
                                        [f"{ds.name}/{n}" for n in mined.get(qid, [])]))
        texts.update({f"{ds.name}/{d}": t for d, t in corpus.items()})
        summaries.append({**pairs.summary(), "fingerprint": ds.fingerprint(), "query_ids": pairs.query_ids,
                          "skipped_without_teacher_scores": skipped})
    if config.triples:
        triples = read_triples(config.triples, config.triples_limit, held_out=held_texts)
        ids: dict[str, str] = {}

        def key_of(text: str) -> str:
            if text not in ids:
                ids[text] = f"triples/{len(ids)}"
                texts[ids[text]] = text
            return ids[text]

        for t in triples:
            qkey = f"triples-q/{t.query}"
            pos, neg = key_of(t.positive), key_of(t.negative)
            positives.setdefault(qkey, set()).add(pos)
            examples.append(Example(qkey, t.query, pos, [neg]))
        summaries.append({"triples": str(config.triples), "num_triples": len(triples),
                          "num_queries": len({t.query for t in triples})})
    if not examples:
        raise HeronError("no training examples (a teacher run must score the positives and some negatives)")
    return TrainingSet(examples, texts, positives, summaries)


def fit_training_idf(tokenizer, texts, lowercase: bool, max_length: int | None = None,
                     vocab_size: int | None = None):
    """An :class:`IDFQueryEncoder` with ``log(N / (1 + df))`` over the tokens of the training corpus."""
    from heron.retrieval.encoders.idf import IDFQueryEncoder

    vocab = int(vocab_size or len(tokenizer))
    df = np.zeros(vocab, dtype=np.int64)
    texts = list(texts)
    for start in range(0, len(texts), 2048):
        chunk = [t.lower() if lowercase else t for t in texts[start:start + 2048]]
        for ids in tokenizer(chunk, add_special_tokens=False, truncation=False, return_attention_mask=False,
                             return_token_type_ids=False, verbose=False)["input_ids"]:
            ids = np.unique(np.asarray(ids, dtype=np.int64))
            df[ids[(ids >= 0) & (ids < vocab)]] += 1
    return IDFQueryEncoder.fit(tokenizer, df, len(texts), formula="log", max_length=max_length, lowercase=lowercase)


def binary_query_encoder(fitted):
    """The inference-free query side without IDF: every (non-special) query token weighs 1 (SPLADE-doc)."""
    from heron.retrieval.encoders.idf import IDFQueryEncoder

    return IDFQueryEncoder(fitted.tokenizer, np.ones_like(fitted.idf), max_length=fitted.max_length,
                           lowercase=fitted.lowercase, formula="binary", num_docs=fitted.num_docs, df=fitted.df)


# -- training ----------------------------------------------------------------------------------------------
class SpladeTrainer:
    """One SPLADE training run: model, optimiser, regularisers; :meth:`step` does one update."""

    def __init__(self, config: SpladeTrainConfig, data: TrainingSet):
        from heron.retrieval.encoders.hf import load_checkpoint, resolve_device

        self.config, self.data = config, data
        seed_everything(config.seed)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        path, self.lowercase = resolve_base(config.base)
        self.tokenizer, self.model = load_checkpoint(path, masked_lm=True, name=config.base)
        self.model.to(self.device)
        self.model.train()
        self.idf_encoder = None  # the query side of an inference-free model
        idf = None
        if config.needs_idf:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
            fitted = fit_training_idf(self.tokenizer, data.corpus_texts(), self.lowercase, config.query_length,
                                      vocab)
            idf = fitted.idf
            if config.inference_free:
                # Geng et al.: IDF-weighted query tokens with IDF-aware FLOPS; plain FLOPS: binary tokens
                self.idf_encoder = fitted if config.doc_regularizer != "flops" else binary_query_encoder(fitted)
        terms = []
        flops_like = ("flops", "idf_flops")
        q_threshold = config.flops_threshold if config.query_regularizer in flops_like else None  # ℓ0 mask: FLOPS
        q_reg = None if config.inference_free else make_regularizer(
            config.query_regularizer, threshold=q_threshold, idf=idf, inference_free=False)
        d_reg = make_regularizer(config.doc_regularizer, threshold=config.flops_threshold, idf=idf,
                                 inference_free=config.inference_free)
        if q_reg is not None:
            terms.append(RegTerm(f"{q_reg.name}_q", q_reg, QuadraticWarmup(config.lambda_q, config.lambda_warmup),
                                 "query"))
        if d_reg is not None:
            terms.append(RegTerm(f"{d_reg.name}_d", d_reg, QuadraticWarmup(config.lambda_d, config.lambda_warmup),
                                 "document"))
        self.regularized = Regularized(terms)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr)
        warm = max(1, config.warmup_steps)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / config.steps))
        self.rng = np.random.default_rng(config.seed)
        self.step_count = 0
        groups: dict[str, dict[str, list[int]]] = {}  # source → query → its examples
        for i, ex in enumerate(data.examples):
            groups.setdefault(ex.query_key.split("/", 1)[0], {}).setdefault(ex.query_key, []).append(i)
        self._sources = [list(groups[name].values()) for name in sorted(groups)]

    def tokenize(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [t.lower() if self.lowercase else t for t in texts]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                               return_token_type_ids=False)
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)

    def encode(self, texts: list[str], max_length: int) -> torch.Tensor:
        ids, mask = self.tokenize(texts, max_length)
        if self.config.amp and self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return splade_forward(self.model, ids, mask)
        return splade_forward(self.model, ids, mask)

    def encode_queries(self, texts: list[str]) -> torch.Tensor:
        if self.idf_encoder is not None:
            return torch.from_numpy(self.idf_encoder.encode(texts).toarray()).to(self.device)
        return self.encode(texts, self.config.query_length)

    def sample_batch(self) -> tuple[list[Example], list[str], list[list[int]]]:
        """Distinct queries; documents = their positives, then each query's sampled negatives."""
        c, ex = self.config, self.data.examples
        batch, seen = [], set()
        if c.sampling == "pairs":
            order = iter(self.rng.permutation(len(ex)))
        else:  # slot j of the batch comes from source j mod S: a query uniformly, then one of its positives
            def balanced():
                for _ in range(100 * c.batch_size):  # redraws when a query is already in the batch
                    queries = self._sources[len(batch) % len(self._sources)]
                    members = queries[self.rng.integers(len(queries))]
                    yield members[self.rng.integers(len(members))]
            order = balanced()
        for i in order:
            if ex[i].query_key not in seen:
                batch.append(ex[i])
                seen.add(ex[i].query_key)
            if len(batch) == c.batch_size:
                break
        docs = [b.positive for b in batch]
        own_negs: list[list[int]] = []
        for b in batch:
            pool = [n for n in b.negatives if n not in self.data.positives[b.query_key]]
            take = min(c.negatives, len(pool))
            picked = [str(n) for n in self.rng.choice(pool, size=take, replace=False)] if take else []
            own_negs.append(list(range(len(docs), len(docs) + len(picked))))
            docs.extend(picked)
        return batch, docs, own_negs

    def ranking_loss(self, batch, docs, own_negs, scores: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.loss == "infonce":
            mask = torch.tensor([[k in self.data.positives[b.query_key] for k in docs] for b in batch],
                                device=scores.device)
            return losses.contrastive(scores, temperature=c.temperature, mask=mask)
        # distillation: each query against its own positive and negatives (equal counts: pad by repeating)
        n = max(len(x) for x in own_negs)
        if n == 0:
            raise HeronError("distillation needs negatives with teacher scores")
        rows = torch.arange(len(batch), device=scores.device)
        cols = torch.tensor([negs + [negs[-1]] * (n - len(negs)) if negs else [i] * n
                             for i, negs in enumerate(own_negs)], device=scores.device)
        s_pos, s_neg = scores[rows, rows], scores[rows[:, None], cols]
        t_pos = torch.tensor([b.teacher[b.positive] for b in batch], device=scores.device)
        t_neg = torch.tensor([[b.teacher[docs[j]] for j in row] for b, row in zip(batch, cols.tolist())],
                             device=scores.device)
        if c.loss == "margin_mse":
            return losses.margin_mse(s_pos, s_neg, t_pos, t_neg)
        student = torch.cat([s_pos[:, None], s_neg], dim=1)
        teacher = torch.cat([t_pos[:, None], t_neg], dim=1)
        return losses.kl_distillation(student, teacher, c.temperature)

    def step(self) -> dict:
        c = self.config
        self.step_count += 1
        batch, docs, own_negs = self.sample_batch()
        q = self.encode_queries([b.query for b in batch])
        d = self.encode([self.data.texts[k] for k in docs], c.document_length)
        scores = q @ d.t()
        rank = self.ranking_loss(batch, docs, own_negs, scores)
        total, parts = self.regularized(rank, {"query": q, "document": d}, self.step_count)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        return {"step": self.step_count, "loss": float(total.detach()), **parts, "l0_q": float(l0(q)),
                "l0_d": float(l0(d))}

    def save(self, output: str | Path, history: list[dict], seconds: float) -> Path:
        """Write the checkpoint folder ``output``, published atomically (:func:`heron.storage.staged`): a
        previous checkpoint there stays whole until the new one replaces it."""
        from heron.retrieval.encoders.hf import save_pretrained, write_encoder_config
        from heron.retrieval.encoders.splade import SpladeEncoder

        output = Path(output)
        self.model.eval()
        with staged(output) as tmp:
            save_pretrained(self.model, self.tokenizer, tmp)
            layout = {"model": ".", "query": None, "documents": None}
            if self.idf_encoder is not None:
                self.idf_encoder.save(tmp / "query")
                layout = {"model": None, "query": "query", "documents": "."}
            # reopen what was written: the checkpoint must load as heron's SPLADE encoder
            check = SpladeEncoder(tmp, query_model=self.idf_encoder, doc_max_length=self.config.document_length,
                                  query_max_length=self.config.query_length, device="cpu",
                                  lowercase=self.lowercase or None)
            info = check.describe()
            info["doc_model"] = output.name
            write_encoder_config(tmp, info, layout)
            write_json_atomic(tmp / "training.json", {
                "config": self.config.model_dump(), "datasets": self.data.summaries, "seconds": round(seconds, 1),
                "history": history}, durable=False)
        self.model.train()
        return output


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_splade(config: SpladeTrainConfig, output: str | Path, progress: bool = True,
                 data: TrainingSet | None = None) -> Path:
    """Train a SPLADE checkpoint into ``output`` (a Hugging Face masked-LM folder); returns its path."""
    from tqdm.auto import tqdm

    data = data or build_training_set(config)
    trainer = SpladeTrainer(config, data)
    history: list[dict] = []
    started = time.monotonic()
    desc = "SPLADE training" + (" (inference-free)" if config.inference_free else "")
    bar = tqdm(range(config.steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for i in bar:
        parts = trainer.step()
        if i % config.log_every == 0 or i == config.steps - 1:
            history.append(parts)
            bar.set_postfix(loss=f"{parts['loss']:.3f}", rank=f"{parts['main']:.3f}", l0_d=f"{parts['l0_d']:.0f}")
    bar.close()
    return trainer.save(output, history, time.monotonic() - started)
