"""The kernel's own list of the namespaces in use (listns(2), Linux 6.19+), followed: a namespace
no process is in (held by an fd, an fd in flight, a bind mount, a child) is listed without
waiting for a sweep, however it was made.

Ids are never reused and listns gives them in increasing order, so what was made since the last
look is what lies above the highest id seen: one system call, which finds nothing while nothing
was made. A look is taken after each batch of process events (most namespaces are made by a
process that forks or execs) and otherwise every `LIST_EVERY` (one made by a process that did
neither: `unshare` and `setns` back, say). A new id waits `SETTLE` (a new process's namespaces are
read through its process events meanwhile, and then have their holder named) and goes to
`Registry.listed` in a worker thread, which pins what the index lacks. Where the kernel has no
listns the task ends at once: sweeps find what they can, as before.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import trio

from . import errors, kernel
from .tasks import Alarm, step, trio_time

log = logging.getLogger(__name__)

# Seconds between looks while no process event comes: a look is cheap, but every wake of the
# loop is not (20 a second cost 0.5% of a core here; 4 a second, 0.1%).
LIST_EVERY: Final = 0.25
SETTLE: Final = 0.1  # a new id is handed over this long after it was first listed
PAGE: Final = 512  # ids a call returns at most

# What listns says where the kernel lacks it, or refuses it to this daemon altogether.
NO_LISTNS: Final = frozenset({errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP})


class Listed(Protocol):
    """What this needs of the registry."""

    def knows_id(self, ns_id: int) -> bool: ...

    def listed(self, listed: Iterable[tuple[int, bytes]]) -> list[int]: ...


class ListedNamespaces:
    def __init__(
        self,
        registry: Listed,
        find_holders: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        listns: Callable[[int, int], list[int]] = kernel.listns,
    ) -> None:
        """`find_holders` reads the processes likeliest to hold a namespace just made (blocking):
        called before the registry is given ids of namespaces the index lacks, so that what
        they hold is listed with its holder, not `unseen`."""
        self._registry = registry
        self._find_holders = find_holders
        self._clock = clock
        self._listns = listns
        self._last = 0  # the highest id listed so far
        self._waiting: deque[tuple[float, int]] = deque()  # (first listed at, id), oldest first
        self._looked = -math.inf  # when the last look was taken
        self.alarm = Alarm()  # rung after each batch of process events: look now

    def look(self) -> bool:
        """List the ids made since the last look (they wait `SETTLE`); False if the kernel has
        no listns (or refuses it to this daemon). A fault is judged, and the next look tries again."""
        now = self._looked = self._clock()
        try:
            while ids := self._listns(self._last, PAGE):
                self._waiting.extend((now, i) for i in ids)
                self._last = ids[-1]
                if len(ids) < PAGE:
                    break
        except OSError as exc:
            if exc.errno in NO_LISTNS:
                return False
            errors.fault("listns", exc.errno or 0, "the namespaces in use")  # none of its errnos is an answer
        return True

    def due(self) -> list[int]:
        """The ids whose wait is over, taken."""
        until = self._clock() - SETTLE
        taken = []
        while self._waiting and self._waiting[0][0] <= until:
            taken.append(self._waiting.popleft()[1])
        return taken

    def next_look(self) -> float:
        """When (on the clock given) the next look is due unless the alarm rings first: when
        the oldest waiting id's wait ends, and `LIST_EVERY` after the last look at the latest."""
        due = self._looked + LIST_EVERY
        return min(due, self._waiting[0][0] + SETTLE) if self._waiting else due

    async def run(self) -> None:
        if not await trio.to_thread.run_sync(self.look):  # the first look lists every namespace
            log.info("no listns (Linux 6.19+): namespaces no process is in are found by sweeps")
            return
        log.info("following the kernel's list of namespaces (listns)")
        while True:
            await self.alarm.wait(trio_time(self.next_look()))
            self.look()
            if ids := self.due():
                await step("pinning listed namespaces", functools.partial(self._hand_over, ids))

    def _hand_over(self, ids: list[int]) -> None:
        """Give the registry the namespaces of `ids` it lacks (blocking), having read first the
        processes that may hold them; those it met a fault pinning wait to be tried again."""
        if not (new := [i for i in ids if not self._registry.knows_id(i)]):
            return
        self._find_holders()
        again = self._registry.listed([(i, kernel.handle_of_id(i)) for i in new])
        now = self._clock()
        self._waiting.extend((now, i) for i in again)
