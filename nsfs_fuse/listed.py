"""The kernel's own list of the namespaces in use (listns(2), Linux 6.19+), followed: a namespace
no process is in (held by an fd, an fd in flight, a bind mount, a child) is listed without
waiting for a sweep, however it was made.

Ids are never reused and listns gives them in increasing order, so what was made since the last
look is what lies above the highest id seen: one system call, which finds nothing while nothing
was made. The looks are taken by a thread of their own, every `LIST_EVERY` (a namespace made by a
process that neither forks nor execs: `unshare` and `setns` back, say) and at once after each
batch of process events (most namespaces are made by a process that forks or execs). A look
wakes the loop only when it found something, so following the list costs a sleeping thread's
wakes, not the loop's (20 a second: 0.15% of a core here, against 0.55% for the loop's timer).

A new id is handed over to `Registry.listed` (in a worker thread), which pins what the index
lacks, at once, unless a batch of process events was gathering when it was listed: then after
that batch is read, which names the holders of a new process's namespaces. What no read holds
even then is looked for: the next round of fd counts begins at once and also reads every
process's namespace links for it (Rereads.search), which names a process that opened an fd on it
or went into it with no fork, exec or thread (an `unshare` of its own). Where the kernel has no
listns the task ends at once: sweeps find what they can, as before.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import trio

from . import errors, kernel
from .model import Listing, NsKey
from .tasks import Alarm, step

log = logging.getLogger(__name__)

# Seconds between looks while no process event comes, about the time process events take to
# gather (process_events.GATHER): 20 looks a second.
LIST_EVERY: Final = 0.05
AGAIN_AFTER: Final = 1.0  # an id whose pinning met a fault is tried again this long after
PAGE: Final = 512  # ids a call returns at most

# What listns says where the kernel lacks it, or refuses it to this daemon altogether.
NO_LISTNS: Final = frozenset({errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP})


class Listed(Protocol):
    """What this needs of the registry."""

    def knows_id(self, ns_id: int) -> bool: ...

    def listed(self, listed: Iterable[tuple[int, bytes]]) -> Listing: ...


class ListedNamespaces:
    def __init__(
        self,
        registry: Listed,
        find_holders: Callable[[], None] = lambda: None,
        search: Callable[[list[NsKey]], None] = lambda keys: None,
        clock: Callable[[], float] = time.monotonic,
        listns: Callable[[int, int], list[int]] = kernel.listns,
    ) -> None:
        """`find_holders` reads the processes likeliest to hold a namespace just made (blocking):
        called before the registry is given ids of namespaces the index lacks, so that what
        they hold is listed with its holder, not `unseen`. `search` looks (soon, any thread)
        for the processes in, or with an fd on, namespaces the registry pinned that no read
        holds even then: made by a process that neither forked nor execed."""
        self._registry = registry
        self._find_holders = find_holders
        self._search = search
        self._clock = clock
        self._listns = listns
        self._last = 0  # the highest id listed so far
        self._lock = threading.Lock()  # over the three below (the looks' thread, the loop's, a worker's);
        # _gathering is one flag the loop sets alone
        self._waiting: deque[tuple[int, int]] = deque()  # (batches read before it may go, id), oldest first
        self._again: deque[tuple[float, int]] = deque()  # (tried again from, id) of those that met a fault
        self._batches = 0  # batches of process events read so far
        self._gathering = False  # a batch of process events is gathering
        self._asked = threading.Event()  # look now
        self._stopped = False
        self._ready = Alarm()  # something waits to be handed over

    def events_gathering(self) -> None:
        """A batch of process events has begun to gather (from the loop): what is listed until
        it is read waits for it."""
        self._gathering = True

    def events_read(self) -> None:
        """The batch has been read (from the loop, also when the events end): look now."""
        with self._lock:
            self._batches += 1
            self._gathering = False
        self._asked.set()

    def look(self) -> bool:
        """List the ids made since the last look; False if the kernel has no listns (or refuses
        it to this daemon). A fault is judged, and the next look tries again."""
        now = self._clock()
        try:
            while ids := self._listns(self._last, PAGE):
                with self._lock:
                    self._waiting.extend((self._batches + self._gathering, i) for i in ids)
                self._last = ids[-1]
                if len(ids) < PAGE:
                    break
        except OSError as exc:
            if exc.errno in NO_LISTNS:
                return False
            errors.fault("listns", exc.errno or 0, "the namespaces in use")  # none of its errnos is an answer
        with self._lock:
            while self._again and self._again[0][0] <= now:
                self._waiting.append((0, self._again.popleft()[1]))
        return True

    def ready(self) -> bool:
        """Whether an id may be handed over now."""
        with self._lock:
            return bool(self._waiting) and self._waiting[0][0] <= self._batches

    def take(self) -> list[int]:
        """The ids that may be handed over now, taken: those listed while no batch of process
        events was gathering, and those listed before the last batch was read."""
        with self._lock:
            taken = []
            while self._waiting and self._waiting[0][0] <= self._batches:
                taken.append(self._waiting.popleft()[1])
            return taken

    async def run(self) -> None:
        if not await trio.to_thread.run_sync(self.look):  # the first look lists every namespace
            log.info("no listns (Linux 6.19+): namespaces no process is in are found by sweeps")
            return
        log.info("following the kernel's list of namespaces (listns)")
        watching = functools.partial(
            trio.to_thread.run_sync, self._watch, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1)
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watching)
                while True:
                    if ids := self.take():
                        await step("pinning listed namespaces", functools.partial(self._hand_over, ids))
                    await self._ready.wait()
        finally:
            self._stopped = True
            self._asked.set()

    def _watch(self) -> None:
        """The looks, in a thread of their own until stopped: every `LIST_EVERY` and when asked;
        the loop is woken only when an id may be handed over."""
        while not self._stopped:
            self._asked.wait(LIST_EVERY)
            self._asked.clear()
            if self.look() and self.ready():
                self._ready.ring()

    def _hand_over(self, ids: list[int]) -> None:
        """Give the registry the namespaces of `ids` it lacks (blocking), having read first the
        processes that may hold them; what it pins that no read holds is searched for, and
        those it met a fault pinning are tried again later."""
        if not (new := [i for i in ids if not self._registry.knows_id(i)]):
            return
        self._find_holders()
        if not (new := [i for i in new if not self._registry.knows_id(i)]):
            return
        listing = self._registry.listed([(i, kernel.handle_of_id(i)) for i in new])
        if listing.unseen:
            self._search(listing.unseen)
        later = self._clock() + AGAIN_AFTER
        with self._lock:
            self._again.extend((later, i) for i in listing.again)
