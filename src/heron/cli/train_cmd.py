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
