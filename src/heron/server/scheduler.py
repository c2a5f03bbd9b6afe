"""Admission control and cooperative cancellation for the server's searches.

Searches run in two lanes, each with its own threads, so that neither waits behind the other's tasks:

- ``query``: single searches (``POST /v1/search``), up to ``workers`` running at once;
- ``batch``: batch searches (``POST /v1/search/batch``), up to ``batch_workers`` requests running at once
  (default half the workers, at least one). A batch runs its queries ``chunk`` at a time (default one),
  one chunk on its lane's threads at a time, and checks its deadline between chunks. Heavy batches thus
  never hold more than ``batch_workers`` threads, and a cheap query never queues behind a batch's tasks.

Each lane lets at most ``max_queue`` requests wait for a slot; one more is refused at once
(:class:`Overloaded`: HTTP 429 with ``Retry-After``). A request's deadline counts from its arrival, queue
wait included; past it the request is answered (:class:`Timeout`: HTTP 503) and its work stops: a task
not yet started is cancelled, the task that is running (one query, or one chunk) finishes, and no further
chunk starts. A lane slot is held until its task has really finished, so the work admitted never
exceeds the threads, whatever was answered already.

Example::

    >>> import asyncio
    >>> s = Scheduler(workers=2)
    >>> asyncio.run(s.run_batch(["a", "b", "c"], lambda part: [q.upper() for q in part], timeout=5))
    ['A', 'B', 'C']
    >>> s.shutdown()
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

#: seconds a refused client is told to wait (``Retry-After``)
RETRY_AFTER_S = 1


class Overloaded(Exception):
    """A lane's queue is full: answer 429 with ``Retry-After``."""

    def __init__(self, lane: Lane):
        super().__init__(f"the server is busy ({lane.name} queue full: {lane.max_queue} waiting); retry in "
                         f"{RETRY_AFTER_S} s")
        self.lane = lane.name


class Timeout(Exception):
    """A request passed its deadline (waiting or searching): answer 503; its work has stopped."""


class Lane:
    """A bounded number of running requests (``slots``) and of requests waiting for one (``max_queue``).

    Used from the event loop only; a freed slot goes to the longest-waiting request."""

    def __init__(self, name: str, slots: int, max_queue: int):
        self.name, self.slots, self.max_queue = name, slots, max_queue
        self.running = 0  # requests holding a slot
        self.rejected = 0
        self.timeouts = 0
        self.searched = 0  # queries run on the pool
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, deadline: float) -> None:
        if self.running < self.slots and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_queue:
            self.rejected += 1
            raise Overloaded(self)
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await asyncio.wait_for(turn, max(_left(deadline), 0))
        except TimeoutError:
            self.timeouts += 1
            raise Timeout from None
        except BaseException:
            if turn.done() and not turn.cancelled():  # handed a slot, then cancelled: pass it on
                self.release()
            raise
        finally:
            if turn in self._waiters:
                self._waiters.remove(turn)

    def release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes to this waiter
                return
        self.running -= 1


#: how much lower the CPU priority (nice) of batch threads is than the server's: when the cores are
#: saturated, the kernel runs cheap queries' threads first (measured in docs/reliability/server.md)
BATCH_NICENESS = 10


def _lower_priority() -> None:
    """Lower this (batch lane) thread's CPU priority by :data:`BATCH_NICENESS` (Linux threads have their own)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BATCH_NICENESS))
    except (AttributeError, OSError):  # not Linux, or not allowed: equal priority
        pass


class Scheduler:
    """The server's two lanes and their threads; see the module docstring."""

    def __init__(self, workers: int, batch_workers: int | None = None, max_queue: int = 64, chunk: int = 1):
        self.workers, self.chunk = workers, chunk
        slots = {"query": workers, "batch": batch_workers or max(1, workers // 2)}
        self.lanes = {name: Lane(name, n, max_queue) for name, n in slots.items()}
        self.pools = {name: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"heron-{name}",
                                               initializer=_lower_priority if name == "batch" else None)
                      for name, n in slots.items()}
        self._busy = 0  # pool tasks executing now
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Threads executing a search task now (both lanes)."""
        return self._busy

    async def run(self, fn: Callable[[], object], timeout: float, lane: str = "query"):
        """``fn()`` on the lane's threads within ``timeout`` seconds (one task: a single search)."""
        lane_ = self.lanes[lane]
        deadline = time.monotonic() + timeout
        await lane_.acquire(deadline)
        slot = _Slot(lane_)
        try:
            return await self._task(fn, 1, deadline, slot)
        finally:
            slot.done()

    async def run_batch(self, items: Sequence, fn: Callable[[Sequence], list], timeout: float,
                        lane: str = "batch") -> list:
        """``fn(part)`` for consecutive parts of ``items`` (``chunk`` each), one at a time on the lane's threads, the
        results concatenated; stops at the deadline (between parts)."""
        lane_ = self.lanes[lane]
        deadline = time.monotonic() + timeout
        await lane_.acquire(deadline)
        slot = _Slot(lane_)
        out: list = []
        try:
            for start in range(0, len(items), self.chunk):
                part = items[start:start + self.chunk]
                out.extend(await self._task(lambda part=part: fn(part), len(part), deadline, slot))
            return out
        finally:
            slot.done()

    async def _task(self, fn, count: int, deadline: float, slot: _Slot):
        left = _left(deadline)
        if left <= 0:
            slot.lane.timeouts += 1
            raise Timeout
        lane = slot.lane

        def job():
            with self._lock:
                self._busy += 1
                lane.searched += count
            try:
                return fn()
            finally:
                with self._lock:
                    self._busy -= 1

        future = self.pools[lane.name].submit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), left)
        except TimeoutError:
            lane.timeouts += 1
            raise Timeout from None
        finally:
            if not future.done():  # timed out, or the client went away: stop here
                future.cancel()  # not started: never runs
                slot.hold(future)  # running: the slot is freed when it finishes

    def shutdown(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


class _Slot:
    """A lane slot, released when the request is done and its last pool task has finished."""

    def __init__(self, lane: Lane):
        self.lane = lane
        self._pending: Future | None = None
        self._loop = asyncio.get_running_loop()

    def hold(self, future: Future) -> None:
        self._pending = future

    def done(self) -> None:
        if self._pending is None:
            self.lane.release()
        else:  # released on the event loop once the running task ends (at once if it was cancelled)
            self._pending.add_done_callback(self._release_soon)

    def _release_soon(self, _future) -> None:
        try:
            self._loop.call_soon_threadsafe(self.lane.release)
        except RuntimeError:  # the loop has closed (an app stopped): nobody waits on this lane any more
            self.lane.release()


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


__all__ = ["RETRY_AFTER_S", "Lane", "Overloaded", "Scheduler", "Timeout"]
