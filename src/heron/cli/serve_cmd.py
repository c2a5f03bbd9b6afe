"""``heron serve``: the HTTP query server over one or more indexes / bundles (FastAPI + uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from heron.errors import HeronError

console = Console(stderr=True)


def serve_command(
    index: Annotated[list[str], typer.Option("--index", "-i", help="Index or bundle directory, or NAME=DIR; "
                                             "repeatable.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8000,
    workers: Annotated[int | None, typer.Option(min=1, help="Search threads (default: CPU count).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch / kernel threads per search.")] = None,
    device: Annotated[str, typer.Option(help="Query encoders: auto, cpu or cuda.")] = "auto",
    prf: Annotated[str, typer.Option(help="Feedback method for requests with prf=true: rocchio, average or "
                                     "model:PATH.")] = "rocchio",
    max_k: Annotated[int, typer.Option(min=1, max=1000, help="Largest k a request may ask for.")] = 1000,
    max_batch: Annotated[int, typer.Option(min=1, help="Most queries in one batch request.")] = 64,
    max_query_chars: Annotated[int, typer.Option(min=1, help="Longest query text.")] = 2000,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body.")] = 1 << 20,
    timeout: Annotated[float, typer.Option(min=0.001, max=86400.0, help="Seconds a search may take before a "
                                           "503.")] = 30.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve indexes over HTTP: POST /v1/search, /v1/search/batch; GET /v1/indexes, /healthz, /metrics, /docs.

    Example: heron serve --index indexes/scifact-bundle --port 8000
    """
    try:
        import uvicorn

        from heron.server import ServerSettings, create_app, parse_index_args
    except ImportError as exc:
        raise HeronError(f"the server needs the server extra (pip install -e '.[server]'): {exc}") from None
    from heron.api import Index

    settings = ServerSettings(max_k=max_k, max_batch=max_batch, max_query_chars=max_query_chars,
                              max_body_bytes=max_body_bytes, timeout_s=timeout, prf=prf,
                              **({"workers": workers} if workers else {}))
    from heron.models import quiet_model_loading

    quiet_model_loading()
    opened = {}
    for name, path in parse_index_args(index).items():
        console.print(f"loading {name}: {path}", highlight=False)
        opened[name] = Index.open(path, device=device, threads=threads)
    app = create_app(opened, settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
