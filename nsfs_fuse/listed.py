"""The kernel's own list of the namespaces in use (listns(2), Linux 6.19+), followed: a namespace
no process is in (held by an fd, an fd in flight, a bind mount, a child) is listed without
waiting for a sweep, however it was made.

Ids are never reused and listns gives them in increasing order, so what was made since the last
look is what lies above the highest id seen: one system call, which finds nothing while nothing
was made, cheap enough to make from the trio loop every `LIST_EVERY`. A new id waits `SETTLE`
(a new process's namespaces are read through its process events meanwhile, and then have their
holder named) and goes to `Registry.listed` in a worker thread, which pins what the index lacks.
Where the kernel has no listns the task ends at once: sweeps find what they can, as before.
"""

from __future__ import annotations

import errno
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import trio

from . import errors, kernel
from .tasks import step

log = logging.getLogger(__name__)

LIST_EVERY: Final = 0.05  # seconds between looks: the process events' own gathering time
SETTLE: Final = 0.1  # a new id is handed over this long after it was first listed
PAGE: Final = 512  # ids a call returns at most

# What listns says where the kernel lacks it, or refuses it to this daemon altogether.
NO_LISTNS: Final = frozenset({errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP})


class Listed(Protocol):
    """What this needs of the registry."""

    def listed(self, handles: Iterable[bytes]) -> None: ...


class ListedNamespaces:
    def __init__(
        self,
        registry: Listed,
        clock: Callable[[], float] = time.monotonic,
        listns: Callable[[int, int], list[int]] = kernel.listns,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._listns = listns
        self._last = 0  # the highest id listed so far
        self._waiting: deque[tuple[float, int]] = deque()  # (first listed at, id), oldest first

    def look(self) -> bool:
        """List the ids made since the last look (they wait `SETTLE`); False if the kernel has
        no listns (or refuses it to this daemon). A fault is judged, and the next look tries again."""
        now = self._clock()
        try:
            while ids := self._listns(self._last, PAGE):
                self._waiting.extend((now, i) for i in ids)
                self._last = ids[-1]
                if len(ids) < PAGE:
                    break
        except OSError as exc:
            if exc.errno in NO_LISTNS:
                return False
            errors.judge(exc, "listns", "the namespaces in use")
        return True

    def due(self) -> list[int]:
        """The ids whose wait is over, taken."""
        until = self._clock() - SETTLE
        taken = []
        while self._waiting and self._waiting[0][0] <= until:
            taken.append(self._waiting.popleft()[1])
        return taken

    async def run(self) -> None:
        if not self.look():
            log.info("no listns (Linux 6.19+): namespaces no process is in are found by sweeps")
            return
        log.info("following the kernel's list of namespaces (listns)")
        while True:
            await trio.sleep(LIST_EVERY)
            self.look()
            if ids := self.due():
                handles = [kernel.handle_of_id(i) for i in ids]
                await step("pinning listed namespaces", functools.partial(self._registry.listed, handles))
