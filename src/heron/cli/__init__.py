"""The ``heron`` command line (typer + rich).

Every command reports a user mistake (unknown dataset, missing or malformed file, unknown retriever)
as one line on stderr and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from heron.errors import HeronError

app = typer.Typer(
    name="heron",
    help="heron: learned sparse and embedding retrieval — build indexes, search, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _build_cached_index(raw: dict):
    from heron.build import build_from_mapping  # the build layer loads only when an index must be built

    return build_from_mapping(raw)


def _register() -> None:
    from heron.retrieval import set_index_builder

    set_index_builder(_build_cached_index)
    from heron.cli import eval_cmd, index_cmd, models_cmd, serve_cmd, train_cmd

    app.command("build-index")(index_cmd.build_index_command)
    app.command("query")(index_cmd.query_command)
    app.command("eval")(eval_cmd.eval_command)
    app.command("compare")(eval_cmd.compare_command)
    app.command("serve")(serve_cmd.serve_command)
    app.add_typer(index_cmd.index_app, name="index")
    app.add_typer(models_cmd.app, name="models")
    app.add_typer(train_cmd.app, name="train")


_register()


def main() -> None:
    """Entry point: run the app, turning heron's one-line errors into exit code 2."""
    try:
        app()
    except HeronError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {exc.filename}: {exc.strerror}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
