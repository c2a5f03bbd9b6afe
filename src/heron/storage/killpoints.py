"""Named crash points for tests: ``HERON_TEST_KILL_AT=POINT[:N]`` makes the process SIGKILL itself the
``N``-th time (default the first) it reaches :func:`kill_point` ``(POINT)``.

Every build calls :func:`kill_point` at the steps where a crash could leave partial state (after a shard
is written and before it is recorded, after each checkpoint, before and after the publish swap, …);
docs/reliability/resume.md lists the points. Unset (always, outside tests) it costs one environment
look-up per call, and the calls are at checkpoint granularity (per shard or window, never per document).

Example: ``HERON_TEST_KILL_AT=inverted.pass1:3`` kills a build right after the third checkpoint of the
inverted index's pass 1.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "HERON_TEST_KILL_AT"
_reached: dict[str, int] = {}  # point → times reached in this process (only counted while the hook is set)


def kill_point(name: str) -> None:
    """SIGKILL this process if ``HERON_TEST_KILL_AT`` names ``name`` and this is its N-th arrival there."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _reached[name] = count = _reached.get(name, 0) + 1
    if count == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
