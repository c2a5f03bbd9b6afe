"""``heron serve``: the HTTP query server over one or more indexes / bundles (FastAPI + uvicorn)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from heron.errors import HeronError

console = Console(stderr=True)


def serve_command(
    index: Annotated[list[str], typer.Option("--index", "-i", help="Index or bundle directory, a "
                                             "milvus:// address, or NAME=DIR; repeatable.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8000,
    workers: Annotated[int | None, typer.Option(min=1, help="Search threads (default: CPU count).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch / kernel threads per search.")] = None,
    device: Annotated[str, typer.Option(help="Query encoders: auto, cpu or cuda.")] = "auto",
    prf: Annotated[str, typer.Option(help="Feedback method for requests with prf=true: rocchio, average or "
                                     "model:PATH.")] = "rocchio",
    max_k: Annotated[int, typer.Option(min=1, max=1000, help="Largest k a request may ask for.")] = 1000,
    max_batch: Annotated[int, typer.Option(min=1, max=1000, help="Most queries in one batch request.")] = 64,
    max_query_chars: Annotated[int, typer.Option(min=1, help="Longest query text.")] = 2000,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body.")] = 1 << 20,
    timeout: Annotated[float, typer.Option(min=0.001, max=86400.0, help="Seconds a search may take, queue wait "
                                           "included; past it the answer is 503 and the work stops.")] = 30.0,
    max_queue: Annotated[int, typer.Option(min=0, help="Requests each lane (single queries, batches) lets wait "
                                           "for a search thread; one more gets 429 with Retry-After.")] = 64,
    batch_workers: Annotated[int | None, typer.Option(min=1, help="Search threads batch requests may hold at "
                                                      "once (default: half the workers).")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="HERON_API_KEY", show_envvar=True, help="Require this key "
                                                "on every route but /healthz ('Authorization: Bearer KEY' or "
                                                "'X-API-Key: KEY').")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(help="Host header value clients may use (repeatable; "
                                                           "'*.example.com', '*' for any). Default on loopback: "
                                                           "localhost, 127.0.0.1, ::1.")] = None,
    no_api_key: Annotated[bool, typer.Option("--no-api-key", help="Serve beyond loopback without an API key, "
                                             "on purpose.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the full verification of every member's "
                                            "files that runs in the background at start.")] = False,
    max_write_docs: Annotated[int, typer.Option(min=1, max=100_000, help="Most documents (or ids) in one write "
                                                "request (the write routes need --api-key).")] = 1000,
    refresh: Annotated[float, typer.Option(min=0.0, max=86400.0, help="Seconds between checks for commits made by "
                                           "other processes, such as heron index add; 0: never.")] = 1.0,
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
                              max_body_bytes=max_body_bytes, timeout_s=timeout, prf=prf, max_queue=max_queue,
                              batch_workers=batch_workers, api_key=api_key or None, verify=not no_verify,
                              max_write_docs=max_write_docs, refresh_s=refresh,
                              allowed_hosts=exposure(host, bool(api_key), allowed_host, no_api_key),
                              **({"workers": workers} if workers else {}))
    from heron.models import quiet_model_loading

    quiet_model_loading()
    opened = {}
    for name, path in parse_index_args(index).items():
        console.print(f"loading {name}: {path}", highlight=False)
        opened[name] = Index.open(path, device=device, threads=threads)
    app = create_app(opened, settings)
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # cheap queries wait less for the GIL behind a batch's thread
    uvicorn.run(app, host=host, port=port, log_level=log_level)


#: seconds a thread holds the GIL before another may run (Python's default: 0.005); measured in
#: docs/reliability/server.md: with batches running, cheap-query p99 and batch throughput both improve
SWITCH_INTERVAL_S = 0.001
#: Host names a loopback server answers by default (a DNS-rebinding page names another host)
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1"]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond loopback


def exposure(host: str, has_key: bool, allowed_hosts: list[str] | None, no_api_key: bool) -> list[str]:
    """The Host allow-list for binding ``host``; refuses to serve beyond loopback without an API key (unless
    ``no_api_key``) or without an explicit ``--allowed-host`` list."""
    if is_loopback(host):
        return list(allowed_hosts) if allowed_hosts else LOOPBACK_HOSTS + ([host] if host not in LOOPBACK_HOSTS else [])
    if not has_key and not no_api_key:
        raise HeronError(f"--host {host} listens beyond loopback: give an API key (--api-key or HERON_API_KEY), or "
                         f"--no-api-key to serve without one")
    if not allowed_hosts:
        raise HeronError(f"--host {host} listens beyond loopback: list the host names clients use with "
                         f"--allowed-host (repeatable; '*' accepts any)")
    return list(allowed_hosts)
