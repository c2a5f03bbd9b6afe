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
    from heron.cli import data_cmd, eval_cmd, export_cmd, index_cmd, models_cmd, serve_cmd, train_cmd

    app.command("build-index")(index_cmd.build_index_command)
    app.command("query")(index_cmd.query_command)
    app.command("eval")(eval_cmd.eval_command)
    app.command("compare")(eval_cmd.compare_command)
    app.command("serve")(serve_cmd.serve_command)
    app.add_typer(index_cmd.index_app, name="index")
    app.add_typer(models_cmd.app, name="models")
    app.add_typer(train_cmd.app, name="train")
    app.add_typer(data_cmd.app, name="data")
    app.add_typer(export_cmd.app, name="export")


_register()


def _click_exceptions():
    try:  # typer ≥ 0.20 carries its own copy of click
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer runs on click
        from click import exceptions
    return exceptions


def _error(message: str, code: int = 2) -> None:
    """``message`` as one line on stderr (``error: …``), then exit with ``code``."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err_console.print(f"[bold red]error:[/] {one_line}", markup=True, highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app; every user mistake is one line on stderr and exit code 2.

    heron's own errors (:class:`~heron.errors.HeronError`), files that cannot be opened, and command-line
    usage errors (a missing option, a value out of range: typer's multi-line box otherwise) alike.
    """
    exceptions = _click_exceptions()
    try:
        code = app(standalone_mode=False)
    except exceptions.NoArgsIsHelpError:
        sys.exit(2)  # the help was printed
    except exceptions.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _error(f"{exc.format_message()}{hint}", exc.exit_code)
    except exceptions.ClickException as exc:
        _error(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _error("aborted", 1)
    except HeronError as exc:
        _error(str(exc))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
