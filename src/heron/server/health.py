"""Health of the served members: which are usable, and the full verification run when the server starts.

Every member (one index of a bundle, or a single index) is ``verifying`` until the background
verification has checked all of its files against its manifest, then ``ok`` — or ``failed``, with the
error, when verification, loading or a search raised (a search raising
:class:`~heron.errors.IntegrityError` fails the member whose file it names). A failed member stays failed
until the server restarts: its searches answer 503 naming it, the other members keep serving. The server's
status is ``failed`` when any member failed, else ``degraded`` while verification runs, else ``ok``.

Example::

    >>> health = Health({"tiny": ["bm25"]}, {})
    >>> health.status()
    'degraded'
    >>> health.mark_ok("tiny", "bm25"); health.status()
    'ok'
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from heron.errors import HeronError, IntegrityError

logger = logging.getLogger("heron.server")


def verify_member(path: Path) -> None:
    """Verify every file of the index at ``path`` against its manifest (full checksums); raise on a mismatch."""
    try:
        from heron.indexing.registry import verify_index
    except ImportError:  # before heron.indexing.registry.verify_index: open with every checksum checked
        from heron.indexing.registry import open_index

        open_index(path, verify=True)
        return
    problems = verify_index(path)
    if isinstance(problems, (list, tuple)) and problems:
        raise IntegrityError(path, "; ".join(map(str, problems)))


def describe_error(exc: BaseException) -> str:
    """One line for a member's failure: the message of a heron error, else the exception's type too."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, HeronError) and text else f"{type(exc).__name__}: {text or 'no message'}"


class Health:
    """State of every member of every served index (thread-safe); see the module docstring.

    ``members``: index name → member names; ``paths``: (index, member) → the member's directory (to find
    which member a damaged file belongs to).
    """

    def __init__(self, members: dict[str, list[str]], paths: dict[tuple[str, str], Path]):
        self._state = {(index, m): {"status": "verifying"} for index, names in members.items() for m in names}
        self._paths = {key: Path(os.path.abspath(p)) for key, p in paths.items()}
        self._lock = threading.Lock()
        self.verified = threading.Event()

    def mark_ok(self, index: str, member: str) -> None:
        with self._lock:
            if self._state[(index, member)]["status"] == "verifying":
                self._state[(index, member)] = {"status": "ok"}

    def fail(self, index: str, member: str, error: str) -> None:
        with self._lock:
            first = self._state[(index, member)]["status"] != "failed"
            if first:
                self._state[(index, member)] = {"status": "failed", "error": error}
        if first:
            logger.error("index %s member %s failed: %s", index, member, error)

    def member_of(self, path: object) -> tuple[str, str] | None:
        """The (index, member) whose directory holds ``path``, if any."""
        target = Path(os.path.abspath(str(path)))
        for key, root in self._paths.items():
            if target == root or root in target.parents:
                return key
        return None

    def failure(self, index: str, members: list[str]) -> tuple[str, str] | None:
        """The first failed member among ``members`` of ``index`` and its error, or None."""
        with self._lock:
            for m in members:
                state = self._state.get((index, m))
                if state is not None and state["status"] == "failed":
                    return m, state["error"]
        return None

    def status(self) -> str:
        with self._lock:
            states = {s["status"] for s in self._state.values()}
        return "failed" if "failed" in states else "degraded" if "verifying" in states else "ok"

    def members(self, index: str) -> dict[str, dict]:
        """member → ``{"status", "error"?}`` of ``index``."""
        with self._lock:
            return {m: dict(s) for (i, m), s in self._state.items() if i == index}

    def verify_in_background(self, verify: Callable[[Path], None] = verify_member) -> threading.Thread:
        """Start the full verification of every member, one after another, on a daemon thread."""

        def work():
            for (index, member), path in self._paths.items():
                try:
                    verify(path)
                except Exception as exc:  # any failure to verify fails the member, never the server
                    self.fail(index, member, describe_error(exc))
                else:
                    self.mark_ok(index, member)
            self.verified.set()

        thread = threading.Thread(target=work, name="heron-verify", daemon=True)
        thread.start()
        return thread


__all__ = ["Health", "describe_error", "verify_member"]
