"""What the daemon's background tasks share: a blocking step run in a worker thread (its
fault logged, the daemon going on), an alarm any thread can ring, CPU timing."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import trio

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def step(what: str, step: Callable[[], object]) -> None:
    """Run one blocking step in a worker thread. A fault in it is logged, and the daemon
    goes on serving what it has: the next event, check or probe may well succeed."""
    try:
        await trio.to_thread.run_sync(step)
    except Exception:
        log.exception("%s failed; going on", what)


class Alarm:
    """Wakes a task of the trio loop from any thread: no timer ticks while nothing is due."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._early = False  # rung before the first wait

    async def wait(self, until: float = math.inf) -> None:
        """Until rung (since the last wait ended, or ever before the first) or until trio time `until`."""
        self._token = trio.lowlevel.current_trio_token()
        if self._early:
            self._early = False
            self._event.set()
        with trio.move_on_at(until):
            await self._event.wait()
        self._event = trio.Event()

    def ring(self) -> None:
        if self._token is None:
            self._early = True
            return
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._set)

    def _set(self) -> None:
        self._event.set()  # the event current when this runs, not when rung


def timed(work: Callable[[], _T]) -> tuple[_T, float]:
    """`work()` and the CPU time this thread spent on it."""
    cpu = time.thread_time()
    return work(), time.thread_time() - cpu


def trio_time(monotonic: float) -> float:
    """A time.monotonic() time on trio's clock, which counts from elsewhere."""
    return trio.current_time() + monotonic - time.monotonic()


class Charges:
    """CPU time (seconds) that background work other than sweeps spent (fd counts and checks),
    noted from any thread: the sweeps' pace counts it against their budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0.0

    @property
    def total(self) -> float:
        return self._total

    def charge(self, cpu: float) -> None:
        with self._lock:
            self._total += cpu
