"""Reading again, without sweeping, what no event names: zombies until they are reaped,
processes that forked or started a thread, processes whose number of open fds changed, the
processes in a namespace the kernel lists that no read holds, the fds and sockets of namespaces
no process is in (Rereads); and every mount table the kernel says changed (`watch_tables`).
docs/design.md, "Freshness", says how these fit with sweeps.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

import psutil
import trio

from . import discovery
from .model import NsKey, ProcessRead
from .mount_tables import Tables
from .registry import Registry
from .tasks import Alarm, step, timed

log = logging.getLogger(__name__)

# A zombie is read again after this, then twice as long each time, up to ZOMBIE_MAX.
ZOMBIE_FIRST: Final = 0.05
ZOMBIE_MAX: Final = 0.5

# How often the fds and sockets of namespaces no process is in are checked again:
# one readlink each, about 0.2% of a core for 200 such fds.
VERIFY_EVERY: Final = 0.5

# A process that forked or started a thread is read again after these delays.
FOLLOW_UP: Final = (0.5, 3.0)

# How often every process's number of open fds is looked at, at most: one stat a process,
# 4-5 us. Work that grows with the machine shares one budget, the sweeps' (`sweep_cpu`, 1% of
# a core by default): the fd counts may use half of it (`Rereads(cpu_share=)`), paced chunk by
# chunk, and are charged to it (`charge`), so that sweeps slow down to keep both within it.
# Beyond what that half pays for every FD_COUNTS_EVERY (at 1%, about 3,000 processes), a
# round of counts takes longer: the README's Freshness table says how long at each size.
FD_COUNTS_EVERY: Final = 3.0
FD_COUNT_CHUNK: Final = 512  # processes counted between two pauses: 2-3 ms of CPU

# The links under /proc/PID/ns/ that show a namespace of each type a process made or went into
# without fork, exec or thread (`search`): a pid namespace only for its children, a time
# namespace for its children (unshare) or for itself too (setns).
SEARCHED_LINKS: Final[dict[str, tuple[str, ...]]] = {
    "pid": ("pid_for_children",),
    "time": ("time", "time_for_children"),
}


class Rereads:
    """Reads processes again into the registry: now, or later, when no event will say why.

    - A zombie is read again until it is reaped.
    - A process that was just forked, or that just started a thread, is read again
      FOLLOW_UP later: it may have unshared or entered namespaces since (no event).
    - A process whose number of open fds changed (stat /proc/PID/fd, Linux 6.2+) is
      read again: it may have opened a namespace. Every FD_COUNTS_EVERY.
    - A process in a namespace searched for (`search`: the kernel lists it, no read holds
      it) is read again: the round of fd counts that begins then reads each process's link
      of that type too.
    - The fds and sockets that hold namespaces no process is in are checked one by
      one every VERIFY_EVERY.
    """

    def __init__(
        self,
        registry: Registry,
        scanner: discovery.Scanner,
        own_pid: int,
        cpu_share: float = 0.005,
        charge: Callable[[float], None] = lambda cpu: None,
    ) -> None:
        self._registry = registry
        self._scanner = scanner
        self._own_pid = own_pid
        self._cpu_share = cpu_share  # of a core, that fd counts may use
        self._told = False  # whether the log has said how long a round of fd counts lasts
        self._lock = threading.Lock()
        self._zombies: dict[int, tuple[float, float]] = {}  # pid -> (when to read it again, the delay after that)
        self._follow_ups: dict[int, list[float]] = {}  # pid -> when to read it again, soonest first
        self._fd_counts: dict[int, int] | None = {}  # None: this kernel does not count them
        self._searched: dict[str, set[str]] = {}  # link -> names: looked for in the next round
        self.alarm = Alarm()
        self._count_asked = Alarm()  # begin the next round of fd counts now
        self.charge = charge  # told the CPU time of fd counts and checks

    def apply(self, pids: Iterable[int], gone: Iterable[int] = ()) -> None:
        """Read `pids` again (blocking, for a worker thread); processes `gone` are known to
        have exited and are not read. A fault reading one process costs that process's
        read only, not the others'."""
        now = time.monotonic()
        reads = [ProcessRead(pid, now) for pid in gone]
        for pid in sorted(pids):
            try:
                reads.append(self._scanner.read(pid))
            except Exception:
                log.exception("reading process %d failed; going on", pid)
        self.note(reads)
        self._registry.update(reads)

    def note(self, reads: Iterable[ProcessRead]) -> None:
        """Remember which of `reads` found a zombie, to read it again until it is reaped."""
        now = time.monotonic()
        with self._lock:
            for read in reads:
                if read.failed:
                    continue  # found out nothing: a zombie stays one, until a read says otherwise
                if not read.exiting:
                    self._zombies.pop(read.pid, None)
                elif read.pid not in self._zombies:
                    if not self._zombies:
                        self.alarm.ring()  # due sooner than anything else; with other zombies, not
                    self._zombies[read.pid] = (now + ZOMBIE_FIRST, ZOMBIE_FIRST * 2)

    def follow_up(self, started: Iterable[int], ended: Iterable[int]) -> None:
        """Processes that forked or started a thread are read again later; those that ended are not."""
        now = time.monotonic()
        with self._lock:
            for pid in started:
                if pid != self._own_pid and pid not in self._follow_ups:
                    self._follow_ups[pid] = [now + delay for delay in FOLLOW_UP]
            for pid in ended:
                self._follow_ups.pop(pid, None)

    def read_recent(self) -> None:
        """Read now the processes that forked or started a thread lately (their follow-ups are
        still to come, and still come): the likeliest holders of a namespace just made without
        an exec (blocking)."""
        with self._lock:
            pids = list(self._follow_ups)
        if pids:
            self.apply(pids)

    def search(self, keys: Iterable[NsKey]) -> None:
        """Look for the processes in, or with an fd on, namespaces `keys` (any thread): the
        kernel lists them and no read holds them. The next round of fd counts begins now, not
        at its time, and reads each process's links of those types as well; a process may have
        made one or gone into it (unshare, setns) with no fork, exec, thread or fd, or just
        opened an fd on it. Each process found is read again. What it finds no process in
        (an fd in flight, a bind mount) stays `unseen`."""
        with self._lock:
            for key in keys:
                for link in SEARCHED_LINKS.get(key.type, (key.type,)):
                    self._searched.setdefault(link, set()).add(key.name)
        self._count_asked.ring()

    def _next_due(self) -> float:
        """When the soonest zombie or follow-up is due, in trio's time."""
        with self._lock:
            soonest = min(
                (*(when for when, _delay in self._zombies.values()), *(t[0] for t in self._follow_ups.values())),
                default=math.inf,
            )
        return trio.current_time() + max(0.0, soonest - time.monotonic())

    def _due(self) -> list[int]:
        now = time.monotonic()
        with self._lock:
            due = [pid for pid, (when, _delay) in self._zombies.items() if when <= now]
            for pid in due:
                delay = self._zombies[pid][1]
                self._zombies[pid] = (now + delay, min(delay * 2, ZOMBIE_MAX))
            for pid, times in list(self._follow_ups.items()):
                if times[0] <= now:
                    due.append(pid)
                    if len(times) > 1:
                        self._follow_ups[pid] = times[1:]
                    else:
                        del self._follow_ups[pid]
        return due

    def verify(self) -> None:
        """Check each fd and socket that holds a namespace no process is in; read again the
        processes whose fd changed (blocking)."""
        stale, cpu = timed(
            lambda: {h.pid for key, h in self._registry.loose_holders() if discovery.still_holds(key, h) is False}
        )
        self.charge(cpu)
        if stale:
            self.apply(stale)

    def _count(
        self, pids: list[int], before: dict[int, int], counts: dict[int, int] | None, searched: dict[str, set[str]]
    ) -> list[int]:
        """Count the open fds of `pids` into `counts` (unless None); return those of `pids` to
        read again: whose count differs from `before`'s, or that are in a namespace `searched`
        (blocking). A process the last round did not count (one that started since) has no
        count to compare with: it is read when its follow-ups are over, once, as their last
        read may have come before it opened an fd. Not in the first round: a sweep has just
        read every process."""
        with self._lock:
            followed = set(self._follow_ups)
        due = []
        for pid in pids:
            if pid == self._own_pid:
                continue
            if counts is not None:
                n = counts[pid] = discovery.fd_count(pid)
                if before.get(pid, n) != n or (pid not in before and before and pid not in followed):
                    due.append(pid)
                    continue
            if any(discovery.ns_link(pid, link) in names for link, names in searched.items()):
                due.append(pid)
        return due

    def _counted(self, counts: dict[int, int]) -> None:
        """A round of counts is complete: the next compares with it."""
        if not self._fd_counts and not any(counts.values()):  # every count 0 at the first look
            log.info("this kernel does not count open fds (Linux 6.2+): new fd holders wait for a sweep")
            self._fd_counts = None
        else:
            self._fd_counts = counts

    async def count_fds(self) -> None:
        """One round of fd counts and of the search asked for since the last round began, paced
        to `cpu_share` of a core chunk by chunk. After each chunk, the processes in it whose
        number of open fds changed since the last round, or that are in a namespace searched
        for, are read again (the pause comes after: what changed is not kept waiting for the
        pace). Where the kernel counts no fds, a round is only a search."""
        with self._lock:
            searched, self._searched = self._searched, {}
        before = self._fd_counts
        if before is None and not searched:
            return
        began = time.monotonic()
        pids, cpu = await trio.to_thread.run_sync(timed, psutil.pids)
        self.charge(cpu)
        counts: dict[int, int] | None = None if before is None else {}
        spent = cpu
        for at in range(0, len(pids), FD_COUNT_CHUNK):
            started = time.monotonic()
            chunk = functools.partial(self._count, pids[at : at + FD_COUNT_CHUNK], before or {}, counts, searched)
            due, cpu = await trio.to_thread.run_sync(timed, chunk)
            self.charge(cpu)
            spent += cpu
            if due:
                await trio.to_thread.run_sync(self.apply, due)
            await trio.sleep(max(0.0, cpu / self._cpu_share - (time.monotonic() - started)))
        if counts is None:
            return
        self._counted(counts)
        if not self._told and self._fd_counts is not None:
            self._told = True
            took = time.monotonic() - began
            log.info("a round of fd counts took %.1f s (%.3f s of CPU) over %d processes", took, spent, len(pids))

    async def _count_rounds(self) -> None:
        """Rounds of fd counts, FD_COUNTS_EVERY apart or as far apart as their pace makes them, or
        sooner when a search asks; paced alike, so never above their share of a core. Where the
        kernel counts no fds, a round runs only when a search asks."""
        while True:
            began = trio.current_time()
            try:
                await self.count_fds()
            except Exception:
                log.exception("counting fds failed; going on")
            await self._count_asked.wait(began + FD_COUNTS_EVERY if self._fd_counts is not None else math.inf)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._count_rounds)
            next_verify = trio.current_time()
            while True:
                await self.alarm.wait(min(next_verify, self._next_due()))
                if due := self._due():
                    await step("reading processes again", functools.partial(self.apply, due))
                if trio.current_time() >= next_verify:
                    next_verify = trio.current_time() + VERIFY_EVERY
                    await step("checking fds", self.verify)


async def watch_tables(registry: Registry, tables: Tables) -> None:
    """Read each mount table again as soon as the kernel says it changed."""
    while True:
        if await trio.to_thread.run_sync(tables.wait, 1.0, abandon_on_cancel=True):
            await step("reading mount tables", registry.refresh_tables)
