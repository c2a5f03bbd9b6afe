"""``heron data``: build the datasets heron makes itself (the dictionary corpus)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from heron import settings

app = typer.Typer(help="Build datasets from public sources (the dictionary corpus).", no_args_is_help=True)
console = Console(soft_wrap=True)


@app.command("dictionaries")
def dictionaries_command(
    out_dir: Path = typer.Argument(None, metavar="OUT_DIR",
                                   help="Dataset folder to write (default: $HERON_CACHE/datasets/dictionaries, "
                                        "which `-d dictionaries` then finds)."),
    seed: int = typer.Option(17, "--seed", help="Seed of the query sample."),
    queries: int = typer.Option(2000, "--queries", min=2, help="Queries to sample (split into dev and test halves)."),
    debs: Path = typer.Option(None, "--debs", help="Folder already holding the two pinned .deb files (no download)."),
) -> None:
    """Build the reverse-dictionary dataset from dict-gcide and dict-wn.

    The two Debian packages are fetched with apt-get download (sha256-pinned).
    Corpus: one document per GCIDE entry, its WordNet-sourced text removed.
    Queries: WordNet glosses of a seeded sample of headwords found in both,
    split into dev and test; qrels: the GCIDE entries of each headword.
    Prints the counts and the sha256 of every file (same seed, same files).
    See docs/datasets.md.
    """
    from heron.eval.dictionaries import build_dictionaries

    target = out_dir if out_dir is not None else settings.cache_dir() / "datasets" / "dictionaries"
    manifest = build_dictionaries(target, seed=seed, n_queries=queries, debs=debs,
                                  log=lambda message: console.print(f"[dim]{message}[/]"))
    console.print(f"wrote {target}")
    for key, value in manifest["counts"].items():
        console.print(f"  {key:36s} {value}")
    for name, digest in manifest["sha256"].items():
        console.print(f"  sha256 {digest}  {name}")
