"""``heron serve`` as a child process on a free loopback port, started and waited for.

Shared by tests/test_server.py and bench/server_load.py (which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_heron_serve(args: list[str], *, env: dict | None = None,
                      timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start ``python -m heron serve --port <free port> *args`` and wait until ``GET /healthz`` answers 200.

    Returns the process (stdout discarded, stderr piped) and the server's base URL; the caller stops
    the process. If the server exits, or does not answer within ``timeout`` seconds, it is killed and
    ``RuntimeError`` carries the end of its stderr.
    """
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "heron", "serve", "--port", str(port), *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"heron serve did not start: {proc.communicate()[1][-3000:]}")
        time.sleep(0.5)


def schemathesis_cli():
    """The ``schemathesis`` command beside this Python (the dev extra); the calling test is skipped without it."""
    from pathlib import Path

    import pytest

    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is not installed (dev extra)")
    return cli


def run_schemathesis(cli, url: str, config, *args: str, key: str | None = None, max_examples: int,
                     timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """``schemathesis run`` over the server's OpenAPI spec with ``config``, every check, seed 1 and ``max_examples``
    examples per operation (``key``: sent as a bearer token); ``args`` are passed on."""
    auth = ["-H", f"Authorization: Bearer {key}"] if key is not None else []
    return subprocess.run([str(cli), "--config-file", str(config), "run", f"{url}/openapi.json", "--checks", "all",
                           *auth, *args, "--max-examples", str(max_examples), "--seed", "1", "--request-timeout", "60"],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
