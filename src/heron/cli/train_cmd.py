"""``heron train …``: trainers that write encoder checkpoints (safetensors + JSON config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from heron.cli.options import ShortMetavarCommand
from heron.errors import HeronError

app = typer.Typer(help="Train encoders on a dataset's train qrels (never its test qrels).", no_args_is_help=True)
console = Console()


# options every trainer takes
Datasets = Annotated[list[str] | None, typer.Option("--dataset", "-d", help="BEIR name or folder; repeatable (the "
                                                    "train qrels of each are used).")]
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML training config (configs/train/); flags "
                                             "given here override its fields.")]
Split = Annotated[str | None, typer.Option(help="Qrels split to train on (test and dev are refused).")]
Seed = Annotated[int | None, typer.Option(help="Random seed.")]
Threads = Annotated[int | None, typer.Option(help="Torch threads.")]


@app.command("csr", cls=ShortMetavarCommand)
def train_csr_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write.")],
    dataset: Datasets = None,
    config: Config = None,
    base: Annotated[str | None, typer.Option(help="Frozen dense base model: alias, HF id or folder (default "
                                             "minilm).")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="Active latents per vector (TopK; default 32).")]
    = None,
    hidden_mult: Annotated[int | None, typer.Option(min=1, max=64, help="Latents = this × the embedding size "
                                                    "(default 4).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimiser steps (default 3000).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Query/positive pairs per step (default 128).")]
    = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1e-3).")] = None,
    cl_coef: Annotated[float | None, typer.Option(help="Weight of the contrastive (InfoNCE) term (default 1).")]
    = None,
    aux_k: Annotated[int | None, typer.Option(min=0, help="Dead latents used by the AuxK loss (0 = off; default "
                                              "512).")] = None,
    split: Split = None, seed: Seed = None, threads: Threads = None,  # every trainer's
) -> None:
    """Train CSR sparse codes (TopK autoencoder + InfoNCE) over a frozen dense encoder.

    Examples:
      heron train csr -d scifact --k 32 -o checkpoints/scifact-csr-k32
      heron train csr -d scifact -c configs/train/csr.yaml -o checkpoints/scifact-csr
    """
    from heron.training.configs import load_config
    from heron.training.csr import CSRTrainConfig, train_csr

    cfg = load_config(config, CSRTrainConfig, datasets=dataset, base=base, k=k, hidden_mult=hidden_mult, steps=steps,
                      batch_size=batch_size, lr=lr, cl_coef=cl_coef, aux_k=aux_k, split=split, seed=seed,
                      threads=threads)
    path = train_csr(cfg, output)
    console.print(f"checkpoint written: {path}", soft_wrap=True)


@app.command("colbert", cls=ShortMetavarCommand)
def train_colbert_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write (PyLate layout).")],
    dataset: Datasets = None,
    config: Config = None,
    base: Annotated[str | None, typer.Option(help="Backbone: alias, HF id or folder (default minilm).")] = None,
    crisp: Annotated[str | None, typer.Option(help="Cluster inside the forward pass: C4x8, C8x32, C25, C50.")]
    = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimiser steps (default 300).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Queries per step, one positive each (default "
                                                   "16).")] = None,
    negatives: Annotated[int | None, typer.Option(min=0, help="BM25 hard negatives per query (default 1).")] = None,
    lr: Annotated[float | None, typer.Option(help="Backbone learning rate (default 5e-5).")] = None,
    document_length: Annotated[int | None, typer.Option(min=8, help="Document max tokens (default 180).")] = None,
    split: Split = None, seed: Seed = None, threads: Threads = None,  # every trainer's
) -> None:
    """Train a ColBERT-style multi-vector model (MaxSim, in-batch + BM25 hard negatives), optionally CRISP.

    Examples:
      heron train colbert -d scifact -o checkpoints/scifact-colbert --crisp C25
      heron train colbert -d scifact -c configs/train/colbert.yaml -o checkpoints/scifact-colbert
    """
    from heron.multivector.crisp import parse_setting
    from heron.training.colbert import ColBERTTrainConfig, train_colbert
    from heron.training.configs import load_config

    cfg = load_config(config, ColBERTTrainConfig, datasets=dataset, base=base, crisp=crisp, steps=steps,
                      batch_size=batch_size, negatives=negatives, lr=lr, document_length=document_length, split=split,
                      seed=seed, threads=threads)
    if cfg.crisp:
        parse_setting(cfg.crisp)
    path = train_colbert(cfg, output)
    console.print(f"checkpoint written: {path}", soft_wrap=True)


@app.command("splade", cls=ShortMetavarCommand)
def train_splade_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write (Hugging Face "
                                         "masked-LM layout).")],
    dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="BEIR name or folder; repeatable "
                                                      "(its train qrels are used).")] = None,
    config: Config = None,
    triples: Annotated[Path | None, typer.Option(help="MS MARCO-style text triples (query, positive, "
                                                 "negative).")] = None,
    base: Annotated[str | None, typer.Option(help="Masked LM to start from: alias, HF id or folder "
                                             "(default splade-tiny).")] = None,
    inference_free: Annotated[bool | None, typer.Option("--inference-free/--siamese", help="No query encoder: "
                                                        "only documents are encoded and trained (queries IDF-"
                                                        "weighted with idf_flops, binary with flops).")]
    = None,
    loss: Annotated[str | None, typer.Option(help="infonce, margin_mse or kl (the last two need "
                                             "--teacher-run).")] = None,
    teacher_run: Annotated[Path | None, typer.Option(help="TREC run file with teacher scores.")] = None,
    negatives: Annotated[int | None, typer.Option(min=0, help="Hard negatives per query.")] = None,
    negative_source: Annotated[str | None, typer.Option(help="Where hard negatives come from: bm25, splade or "
                                                        "an index folder of the dataset.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimiser steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Queries per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate.")] = None,
    lambda_q: Annotated[float | None, typer.Option(help="Query regulariser weight (after warm-up).")] = None,
    lambda_d: Annotated[float | None, typer.Option(help="Document regulariser weight (after warm-up).")] = None,
    lambda_warmup: Annotated[int | None, typer.Option(min=0, help="Steps T of the quadratic λ warm-up.")] = None,
    query_regularizer: Annotated[str | None, typer.Option(help="flops, l1, idf_flops or none.")] = None,
    doc_regularizer: Annotated[str | None, typer.Option(help="flops, idf_flops (IDF-aware FLOPS) or none "
                                                        "(default: idf_flops inference-free, else flops).")]
    = None,
    flops_threshold: Annotated[int | None, typer.Option(min=0, help="ℓ0 mask: rows with ≤ this many non-zeros "
                                                        "skip FLOPS.")] = None,
    document_length: Annotated[int | None, typer.Option(min=8, help="Document max tokens.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    split: Split = None, seed: Seed = None, threads: Threads = None,  # every trainer's
) -> None:
    """Train a SPLADE encoder: InfoNCE / MarginMSE / KL with FLOPS (or IDF-aware FLOPS) regularisation.

    Examples:
      heron train splade -d scifact -c configs/train/splade-cpu.yaml -o checkpoints/scifact-splade
      heron train splade -d scifact -c configs/train/splade-idf-cpu.yaml -o checkpoints/scifact-splade-doc
      heron build-index --dataset scifact --encoder splade --model checkpoints/scifact-splade --output indexes/x
    """
    from heron.training.configs import load_config
    from heron.training.splade import SpladeTrainConfig, train_splade

    cfg = load_config(config, SpladeTrainConfig, datasets=dataset or None, triples=str(triples) if triples else None,
                      base=base, inference_free=inference_free, loss=loss,
                      teacher_run=str(teacher_run) if teacher_run else None, negatives=negatives,
                      negative_source=negative_source, steps=steps, batch_size=batch_size, lr=lr, lambda_q=lambda_q,
                      lambda_d=lambda_d, lambda_warmup=lambda_warmup, query_regularizer=query_regularizer,
                      doc_regularizer=doc_regularizer,
                      flops_threshold=flops_threshold, document_length=document_length, device=device, split=split,
                      seed=seed, threads=threads)
    path = train_splade(cfg, output)
    console.print(f"checkpoint written: {path}", soft_wrap=True)


@app.command("prf", cls=ShortMetavarCommand)
def train_prf_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write (safetensors + JSON).")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="BEIR name or folder (train qrels).")]
    = None,
    index: Annotated[Path | None, typer.Option("--index", "-i", help="Index of the dataset (inverted or FAISS) "
                                               "whose vectors feedback works on.")] = None,
    config: Config = None,
    lol: Annotated[bool | None, typer.Option("--lol/--no-lol", help="Nested feedback sets with LoL's "
                                             "comparative regulariser (default on).")] = None,
    feedback: Annotated[str | None, typer.Option(help="Nested feedback-set sizes, comma-separated "
                                                 "(default 0,1,3,5).")] = None,
    lambda_cr: Annotated[float | None, typer.Option(help="Weight of the comparative regulariser.")] = None,
    max_feedback: Annotated[int | None, typer.Option(min=1, help="Feedback slots at query time (default: the "
                                                     "largest --feedback size).")] = None,
    candidates: Annotated[int | None, typer.Option(min=2, help="First-pass candidates per query.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimiser steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Queries per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    terms: Annotated[int | None, typer.Option(min=0, help="Sparse: weights kept per revised query (0 = all).")]
    = None,
    query_gain: Annotated[bool | None, typer.Option("--query-gain/--no-query-gain", help="Sparse: also learn "
                                                    "per-term gains of the query's own terms (default on).")] = None,
    split: Split = None, seed: Seed = None, threads: Threads = None,  # every trainer's
) -> None:
    """Train the learned PRF model on an index's vectors, with LoL's comparative regulariser (or without).

    Examples:
      heron train prf -d scifact -i indexes/scifact-splade-tiny -o checkpoints/scifact-prf-lol
      heron eval -d scifact --index indexes/scifact-splade-tiny --prf model:checkpoints/scifact-prf-lol
    """
    from heron.training.configs import load_config
    from heron.training.prf import PRFTrainConfig, train_prf

    sizes = None
    if feedback:
        try:
            sizes = [int(x) for x in feedback.split(",") if x.strip()]
        except ValueError:
            raise HeronError(f"--feedback {feedback!r}: expected comma-separated integers such as 0,1,3,5") from None
    cfg = load_config(config, PRFTrainConfig, dataset=dataset, index=str(index) if index else None, lol=lol,
                      feedback=sizes, lambda_cr=lambda_cr, max_feedback=max_feedback, candidates=candidates,
                      steps=steps, batch_size=batch_size, lr=lr, terms=terms, query_gain=query_gain, split=split,
                      seed=seed, threads=threads)
    path = train_prf(cfg, output)
    console.print(f"PRF model written: {path}", soft_wrap=True)
