"""``heron train …``: trainers that write encoder checkpoints (safetensors + JSON config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from heron.errors import HeronError

app = typer.Typer(help="Train encoders on a dataset's train qrels (never its test qrels).", no_args_is_help=True)
console = Console()


@app.command("csr")
def train_csr_command(
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", help="BEIR name or folder; repeatable (the "
                                               "train qrels of each are used).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write.")],
    base: Annotated[str, typer.Option(help="Frozen dense base model: alias, HF id or folder.")] = "minilm",
    k: Annotated[int, typer.Option("--k", min=1, help="Active latents per vector (TopK).")] = 32,
    hidden_mult: Annotated[int, typer.Option(min=1, max=64, help="Latents = this × the embedding size.")] = 4,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 3000,
    batch_size: Annotated[int, typer.Option(min=2, help="Query/positive pairs per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    cl_coef: Annotated[float, typer.Option(help="Weight of the contrastive (InfoNCE) term.")] = 1.0,
    aux_k: Annotated[int, typer.Option(min=0, help="Dead latents used by the AuxK loss (0 = off).")] = 512,
    split: Annotated[str, typer.Option(help="Qrels split to train on (test and dev are refused).")] = "train",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="Torch threads.")] = None,
) -> None:
    """Train CSR sparse codes (TopK autoencoder + InfoNCE) over a frozen dense encoder.

    Example: heron train csr --dataset scifact --base minilm --k 32 --output checkpoints/scifact-csr-k32
    """
    from pydantic import ValidationError

    from heron.training.csr import CSRTrainConfig, train_csr

    try:
        config = CSRTrainConfig(datasets=dataset, base=base, k=k, hidden_mult=hidden_mult, steps=steps,
                                batch_size=batch_size, lr=lr, cl_coef=cl_coef, aux_k=aux_k, split=split, seed=seed,
                                threads=threads)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HeronError(f"train csr: field {'.'.join(map(str, first['loc']))!r}: {first['msg']}") from None
    path = train_csr(config, output)
    console.print(f"checkpoint written: {path}", soft_wrap=True)


@app.command("colbert")
def train_colbert_command(
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", help="BEIR name or folder; repeatable (the "
                                               "train qrels of each are used).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write (PyLate layout).")],
    base: Annotated[str, typer.Option(help="Backbone: alias, HF id or folder.")] = "minilm",
    crisp: Annotated[str | None, typer.Option(help="Cluster inside the forward pass: C4x8, C8x32, C25, C50.")]
    = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 300,
    batch_size: Annotated[int, typer.Option(min=2, help="Queries per step (one positive each).")] = 16,
    negatives: Annotated[int, typer.Option(min=0, help="BM25 hard negatives per query.")] = 1,
    lr: Annotated[float, typer.Option(help="Backbone learning rate.")] = 5e-5,
    document_length: Annotated[int, typer.Option(min=8, help="Document max tokens.")] = 180,
    split: Annotated[str, typer.Option(help="Qrels split to train on (test and dev are refused).")] = "train",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="Torch threads.")] = None,
) -> None:
    """Train a ColBERT-style multi-vector model (MaxSim, in-batch + BM25 hard negatives), optionally CRISP.

    Example: heron train colbert --dataset scifact --output checkpoints/scifact-colbert --crisp C25
    """
    from pydantic import ValidationError

    from heron.retrieval.crisp import parse_setting
    from heron.training.colbert import ColBERTTrainConfig, train_colbert

    if crisp:
        parse_setting(crisp)
    try:
        config = ColBERTTrainConfig(datasets=dataset, base=base, crisp=crisp, steps=steps, batch_size=batch_size,
                                    negatives=negatives, lr=lr, document_length=document_length, split=split,
                                    seed=seed, threads=threads)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HeronError(f"train colbert: field {'.'.join(map(str, first['loc']))!r}: {first['msg']}") from None
    path = train_colbert(config, output)
    console.print(f"checkpoint written: {path}", soft_wrap=True)


@app.command("splade")
def train_splade_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write (Hugging Face "
                                         "masked-LM layout).")],
    dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="BEIR name or folder; repeatable "
                                                      "(its train qrels are used).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML training config (configs/train/); "
                                                "flags given here override it.")] = None,
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
    split: Annotated[str | None, typer.Option(help="Qrels split to train on (test and dev are refused).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads.")] = None,
) -> None:
    """Train a SPLADE encoder: InfoNCE / MarginMSE / KL with FLOPS (or IDF-aware FLOPS) regularisation.

    Examples:
      heron train splade -d scifact -c configs/train/splade-cpu.yaml -o checkpoints/scifact-splade
      heron train splade -d scifact -c configs/train/splade-idf-cpu.yaml -o checkpoints/scifact-splade-doc
      heron build-index --dataset scifact --encoder splade --model checkpoints/scifact-splade --output indexes/x
    """
    from heron.training.splade import SpladeTrainConfig, load_config, train_splade

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


@app.command("prf")
def train_prf_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write (safetensors + JSON).")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="BEIR name or folder (train qrels).")]
    = None,
    index: Annotated[Path | None, typer.Option("--index", "-i", help="Index of the dataset (inverted or FAISS) "
                                               "whose vectors feedback works on.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML training config; flags override "
                                                "it.")] = None,
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
    split: Annotated[str | None, typer.Option(help="Qrels split to train on (test and dev are refused).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads.")] = None,
) -> None:
    """Train the learned PRF model on an index's vectors, with LoL's comparative regulariser (or without).

    Examples:
      heron train prf -d scifact -i indexes/scifact-splade-tiny -o checkpoints/scifact-prf-lol
      heron eval -d scifact --index indexes/scifact-splade-tiny --prf model:checkpoints/scifact-prf-lol
    """
    from heron.training.prf import PRFTrainConfig, train_prf
    from heron.training.splade import load_config

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
