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
