"""Following changes without sweeping: process events, and the few processes worth reading again.

- Process events (fork, exec, exit) name the processes to read again at once; a
  thread's exit re-reads its process if a thread of it held a namespace alone.
- An exiting process (a zombie) still holds its pid and user namespaces until it
  is reaped, which no event reports: it is read again, often at first and less
  often later, until it is gone.
- A namespace that no process or thread is in is held by fds, sockets or bind
  mounts alone, and closing an fd makes no event: each such fd is checked again
  every VERIFY_EVERY (one readlink), and its process read again if it changed.
- Every mount table is followed (tables.py): a change wakes `watch_tables`.
- A lookup of a name the index lacks reads what the caller itself could have got
  the name from: its own process, and the mount tables that changed. Never the
  whole machine.

docs/design.md, "Freshness", says how these fit with sweeps.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol, TypeVar

import psutil
import trio

from . import discovery, kernel
from .model import ProcessRead
from .registry import SHARED_SLOT, Registry
from .tables import Tables

log = logging.getLogger("nsfs")

_T = TypeVar("_T")

# Between dropping the daemon's references on a namespace and probing it
# (registry._suspend): three RCU grace periods, then a little longer. After one, a
# namespace whose last process had just exited still opened by handle in 10 of 10
# tries; after three, in none on an idle machine but 1 of 10 with 5,000 processes
# running; after three and 50 ms, in none (about 100 ms in all).
GRACE_PERIODS: Final = 3
AFTER_GRACE: Final = 0.05

# How often what only the probe keeps (an fd in flight, say) is probed again: at the same
# moments of the wall clock in every nsfs daemon (a multiple of registry.SHARED_SLOT), a
# little before one, so that beside other daemons all of them let go of a namespace they
# all keep for one shared probe (registry.shared_probe_time).
REPROBE_EVERY: Final = 0.5
REPROBE_LEAD: Final = 0.03

# Events are read until the socket is empty or this many processes are named,
# then those processes are read again in one batch.
MAX_BATCH: Final = 1024

# After the first event of a batch, events are let gather this long: a process that
# forks, execs and exits within it (a shell loop's `stat`, say) costs one read of a pid
# that is gone, not three reads of a live one, and a burst is one batch. Measured at
# 5,000 processes with a loop of `stat` on a plain directory (100 processes a second):
# root's ls -l of the mount took 1.8x its idle time with 10 ms, 1.1x with 50 ms, as on
# a do-nothing FUSE filesystem.
GATHER: Final = 0.05

# A zombie is read again after this, then twice as long each time, up to ZOMBIE_MAX.
ZOMBIE_FIRST: Final = 0.05
ZOMBIE_MAX: Final = 0.5

# How often the fds and sockets of namespaces no process is in are checked again:
# one readlink each, about 0.2% of a core for 200 such fds.
VERIFY_EVERY: Final = 0.5

# A process that forked or started a thread is read again after these delays.
FOLLOW_UP: Final = (0.5, 3.0)

# Lookups of names the index lacks that one user may have looked into per second. At
# 5,000 processes, with a loop of made-up lookups, 20 cost the daemon 14.8% of a core
# above idle; 5, 12.4-13.0% (the loop's floors: 3.5-4.0% following its processes,
# 6.7-7.1% on a pyfuse3 filesystem that does nothing).
MISSES_PER_SECOND: Final = 5

# How often every process's number of open fds is looked at, at most: one stat a process,
# 4-5 us. Work that grows with the machine shares one budget, the sweeps' (`sweep_cpu`, 1% of
# a core by default): the fd counts may use half of it (`Rereads(cpu_share=)`), paced chunk by
# chunk, and are charged to it (`charge`), so that sweeps slow down to keep both within it.
# Beyond what that half pays for every FD_COUNTS_EVERY (at 1%, about 3,000 processes), a
# round of counts takes longer: the README's Freshness table says how long at each size.
FD_COUNTS_EVERY: Final = 3.0
FD_COUNT_CHUNK: Final = 512  # processes counted between two pauses: 2-3 ms of CPU


async def _step(what: str, step: Callable[[], object]) -> None:
    """Run one blocking step in a worker thread. A fault in it is logged, and the daemon
    goes on serving what it has: the next event, check or probe may well succeed."""
    try:
        await trio.to_thread.run_sync(step)
    except Exception:
        log.exception("%s failed; going on", what)


class Sweeps(Protocol):
    """What events need of the sweeps (service.Refresher)."""

    interval: float
    following_events: bool

    async def rescan(self) -> None: ...


class Alarm:
    """Wakes a task of the trio loop from any thread: no timer ticks while nothing is due."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    async def wait(self, until: float = math.inf) -> None:
        """Until rung (since the last wait ended) or until trio time `until`."""
        self._token = trio.lowlevel.current_trio_token()
        with trio.move_on_at(until):
            await self._event.wait()
        self._event = trio.Event()

    def ring(self) -> None:
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._set)

    def _set(self) -> None:
        self._event.set()  # the event current when this runs, not when rung


class Prober:
    """Probes suspended namespaces once their time has come and the kernel has finished
    releasing what the daemon let go of; suspends again, every REPROBE_EVERY, what only the
    probe keeps. Sleeps until the registry suspends something (it rings `alarm`), a
    suspended namespace's time comes, or a reprobe is due."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.alarm = Alarm()

    async def run(self) -> None:
        next_reprobe = _next_reprobe()
        while True:
            due = self._registry.probe_due()
            wake = next_reprobe if self._registry.has_unseen() else math.inf
            if due is not None:
                wake = min(wake, _trio_time(due))
            if wake > trio.current_time():
                await self.alarm.wait(wake)
            if trio.current_time() >= next_reprobe:
                next_reprobe = _next_reprobe()
                if self._registry.has_unseen():
                    await _step("reprobe", self._registry.reprobe)
            due = self._registry.probe_due()
            if due is not None and due <= time.monotonic():
                upto, began = self._registry.suspensions, time.monotonic()
                await trio.to_thread.run_sync(kernel.grace_periods, GRACE_PERIODS)
                await trio.sleep(AFTER_GRACE)
                await _step("probe", functools.partial(self._registry.confirm, upto, began))


def _timed(work: Callable[[], _T]) -> tuple[_T, float]:
    """`work()` and the CPU time this thread spent on it."""
    cpu = time.thread_time()
    return work(), time.thread_time() - cpu


def _trio_time(monotonic: float) -> float:
    """A time.monotonic() time on trio's clock, which counts from elsewhere."""
    return trio.current_time() + monotonic - time.monotonic()


def _next_reprobe() -> float:
    """The next reprobe (trio's clock): REPROBE_LEAD before a multiple of REPROBE_EVERY on the
    wall clock, the same moments in every daemon of the machine."""
    assert REPROBE_EVERY % SHARED_SLOT == 0, "reprobes fall on the shared slots"
    wall = time.time()
    at = (math.floor(wall / REPROBE_EVERY) + 1) * REPROBE_EVERY - REPROBE_LEAD
    if at <= wall:
        at += REPROBE_EVERY
    return trio.current_time() + at - wall


class Retirer:
    """Closes the fd numbers of released pins once they have been retired long enough
    (pins.RETIRE_SECONDS). Sleeps until the registry retires one (`alarm`) or one is due."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.alarm = Alarm()

    async def run(self) -> None:
        await self.alarm.wait(trio.current_time())  # from here on no ring is lost
        while True:
            due = self._registry.retired_due()
            if due is None:
                await self.alarm.wait()
                continue
            await trio.sleep(max(0.0, due - time.monotonic()))
            await _step("closing retired pins", self._registry.close_retired)


class Rereads:
    """Reads processes again into the registry: now, or later, when no event will say why.

    - A zombie is read again until it is reaped.
    - A process that was just forked, or that just started a thread, is read again
      FOLLOW_UP later: it may have unshared or entered namespaces since (no event).
    - A process whose number of open fds changed (stat /proc/PID/fd, Linux 6.2+) is
      read again: it may have opened a namespace. Every FD_COUNTS_EVERY.
    - The fds and sockets that hold namespaces no process is in are checked one by
      one every VERIFY_EVERY.
    """

    def __init__(self, registry: Registry, scanner: discovery.Scanner, own_pid: int, cpu_share: float = 0.005) -> None:
        self._registry = registry
        self._scanner = scanner
        self._own_pid = own_pid
        self._cpu_share = cpu_share  # of a core, that fd counts may use
        self._told = False  # whether the log has said how long a round of fd counts lasts
        self._lock = threading.Lock()
        self._zombies: dict[int, tuple[float, float]] = {}  # pid -> (when to read it again, the delay after that)
        self._follow_ups: dict[int, list[float]] = {}  # pid -> when to read it again, soonest first
        self._fd_counts: dict[int, int] | None = {}  # None: this kernel does not count them
        self.alarm = Alarm()
        self.charge: Callable[[float], None] = lambda cpu: None  # told the CPU time of fd counts and checks

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
        stale, cpu = _timed(
            lambda: {h.pid for key, h in self._registry.loose_holders() if discovery.still_holds(key, h) is False}
        )
        self.charge(cpu)
        if stale:
            self.apply(stale)

    def _count(self, pids: list[int], counts: dict[int, int]) -> None:
        """Count the open fds of `pids` into `counts` (blocking)."""
        for pid in pids:
            if pid != self._own_pid:
                counts[pid] = discovery.fd_count(pid)

    def _counted(self, counts: dict[int, int]) -> list[int]:
        """A round of counts is complete: the processes whose count changed since the last."""
        if self._fd_counts is None:
            return []
        if not self._fd_counts and not any(counts.values()):  # every count 0 at the first look
            log.info("this kernel does not count open fds (Linux 6.2+): new fd holders wait for a sweep")
            self._fd_counts = None
            return []
        before, self._fd_counts = self._fd_counts, counts
        return [pid for pid, n in counts.items() if before.get(pid, n) != n]

    async def count_fds(self) -> None:
        """One round of fd counts, paced to `cpu_share` of a core chunk by chunk; then read
        again every process whose number of open fds changed since the last round."""
        began = time.monotonic()
        pids, cpu = await trio.to_thread.run_sync(_timed, psutil.pids)
        self.charge(cpu)
        counts: dict[int, int] = {}
        spent = cpu
        for at in range(0, len(pids), FD_COUNT_CHUNK):
            started = time.monotonic()
            chunk = functools.partial(self._count, pids[at : at + FD_COUNT_CHUNK], counts)
            _, cpu = await trio.to_thread.run_sync(_timed, chunk)
            self.charge(cpu)
            spent += cpu
            await trio.sleep(max(0.0, cpu / self._cpu_share - (time.monotonic() - started)))
        changed = self._counted(counts)
        if not self._told and self._fd_counts is not None:
            self._told = True
            took = time.monotonic() - began
            log.info("a round of fd counts took %.1f s (%.3f s of CPU) over %d processes", took, spent, len(pids))
        if changed:
            await trio.to_thread.run_sync(self.apply, changed)

    async def _count_rounds(self) -> None:
        """Rounds of fd counts, FD_COUNTS_EVERY apart or as far apart as their pace makes them."""
        while True:
            began = trio.current_time()
            try:
                await self.count_fds()
            except Exception:
                log.exception("counting fds failed; going on")
            if self._fd_counts is None:
                return  # this kernel does not count them
            await trio.sleep_until(began + FD_COUNTS_EVERY)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._count_rounds)
            next_verify = trio.current_time()
            while True:
                await self.alarm.wait(min(next_verify, self._next_due()))
                if due := self._due():
                    await _step("reading processes again", functools.partial(self.apply, due))
                if trio.current_time() >= next_verify:
                    next_verify = trio.current_time() + VERIFY_EVERY
                    await _step("checking fds", self.verify)


class Finder:
    """After a lookup miss: read what the caller could have got the name from, and nothing else.

    That is its own process (ns links, threads, fds, sockets) and the mount tables
    that changed. One caller at a time; a process is read again for a lookup only
    after ten times what its last read cost.

    A loop of lookups of made-up names would keep the daemon looking as fast as it
    can: a user's misses are looked into at most MISSES_PER_SECOND times a second;
    the others are answered at once from what is known. Never by waiting: the kernel
    runs one LOOKUP or READDIR of a directory at a time unless the filesystem said
    FUSE_PARALLEL_DIROPS at INIT, and pyfuse3 with libfuse 3.14 or 3.17 never says it
    (INIT reply flags 0x4040b039: libfuse 3.14 sets it in conn.want and never copies it
    into the reply, which pyfuse3 cannot reach). So while one caller's lookup in the root
    waits, every other caller's lookups and `ls` of the root wait too: two 1 s lookups
    of different names take 2 s, and root's `ls -l` took 1.7-2.5x its time while a loop
    of sleeping misses ran (answered at once, 0.7-1.4x). A look into a process (a few
    ms) is such a wait as well, hence few of them.
    """

    def __init__(self, rereads: Rereads, registry: Registry) -> None:
        self._rereads = rereads
        self._registry = registry
        self._limiter = trio.CapacityLimiter(1)
        self._not_before: dict[int, float] = {}  # pid -> when a lookup may read it again
        self._turn: dict[int, float] = {}  # uid -> when its next miss may be looked into

    async def own(self, tid: int) -> None:
        """The calling thread is in a namespace the index lacks: read its process, always."""
        await trio.to_thread.run_sync(self._read, tid, limiter=self._limiter)

    async def look(self, tid: int, uid: int) -> None:
        """Read what thread `tid` of user `uid` could have learned a name from, if it is the
        user's turn."""
        now = trio.current_time()
        if now < self._turn.get(uid, now):
            return  # not its turn: answered from what is known, at once
        if len(self._turn) > 4096:
            self._turn = {u: t for u, t in self._turn.items() if t > now}
        self._turn[uid] = now + 1 / MISSES_PER_SECOND
        await trio.to_thread.run_sync(self._look, tid, limiter=self._limiter)

    def _read(self, tid: int) -> None:
        if (pid := discovery.process_of(tid)) is not None:
            self._rereads.apply([pid])

    def _look(self, tid: int) -> None:
        pid = discovery.process_of(tid)
        now = time.monotonic()
        if pid is None or now < self._not_before.get(pid, 0.0):
            return
        cpu = time.thread_time()
        self._registry.refresh_tables()  # a bind mount made just now: its table's change may be on its way
        self._rereads.apply([pid])
        if len(self._not_before) > 4096:
            self._not_before = {p: t for p, t in self._not_before.items() if t > now}
        self._not_before[pid] = now + 10 * (time.thread_time() - cpu)


async def watch_tables(registry: Registry, tables: Tables) -> None:
    """Read each mount table again as soon as the kernel says it changed."""
    while True:
        if await trio.to_thread.run_sync(tables.wait, 1.0, abandon_on_cancel=True):
            await _step("reading mount tables", registry.refresh_tables)


class Events:
    """Process events folded into the registry: each named process is read again."""

    def __init__(self, registry: Registry, rereads: Rereads) -> None:
        self._registry = registry
        self._rereads = rereads

    async def follow(self, sweeps: Sweeps) -> None:
        """Read fork, exec and exit events until cancelled.

        Without them (no proc connector, or a daemon outside the initial pid and
        user namespaces) the sweeps are all there is, and the log says so once.
        """
        try:
            sock = kernel.proc_events()
        except OSError as exc:
            log.warning("process events unavailable (%s): sweeping every %g s instead", exc.strerror, sweeps.interval)
            return
        with sock:
            # Outside the initial pid and user namespaces the kernel accepts the
            # subscription and sends nothing: see one event arrive before relying on them.
            if not await _events_arrive(sock):
                log.warning("process events unavailable (none arrive): sweeping every %g s instead", sweeps.interval)
                return
            sweeps.following_events = True
            log.info("following process events")
            try:
                await self._follow(sock, sweeps)
            finally:
                sweeps.following_events = False

    async def _follow(self, sock: socket.socket, sweeps: Sweeps) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(sock)
                await trio.sleep(GATHER)
                pids: set[int] = set()
                started: set[int] = set()  # forked, or started a thread: read again later too
                ended: set[int] = set()
                try:
                    while len(pids) < MAX_BATCH:
                        for what, pid, tgid in kernel.parse_proc_events(sock.recv(65536)):
                            if what == kernel.PROC_EVENT_FORK:
                                started.add(tgid)
                            if pid == tgid:
                                pids.add(pid)
                                if what == kernel.PROC_EVENT_EXIT:
                                    ended.add(pid)
                                else:
                                    ended.discard(pid)  # a pid used again after its exit
                            elif what == kernel.PROC_EVENT_EXIT and self._registry.has_tasks(tgid):
                                pids.add(tgid)  # a thread that held a namespace alone may be the one exiting
                            elif what in kernel.CREDENTIAL_EVENTS:
                                pids.add(tgid)  # who may read its holder lines follows its credentials
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        log.error("reading process events failed (%s): sweeping instead", exc.strerror)
                        return
                    log.warning("process events lost (%s): sweeping now", exc.strerror)  # a sweep catches up
                    nursery.start_soon(sweeps.rescan)
                self._rereads.follow_up(started - ended, ended)
                if not pids:
                    continue  # only threads came and went (trio's own workers among them)
                # A process that came and went unread (a shell loop's `stat`) is gone: noted
                # as such without reading it, so that no late sweep read brings it back.
                gone = {pid for pid in ended if not self._registry.knows(pid)}
                await _step("reading processes", functools.partial(self._rereads.apply, pids - gone, gone))


async def _events_arrive(sock: socket.socket, patience: float = 1.0) -> bool:
    """Whether the exit of a child of ours shows up on `sock` within `patience` seconds."""
    try:
        child = await trio.lowlevel.open_process(["true"])
    except OSError:
        return False
    await child.wait()
    with trio.move_on_after(patience):
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                events = kernel.parse_proc_events(sock.recv(65536))
            except BlockingIOError:
                continue
            except OSError:  # ENOBUFS: what was lost may have been it
                return False
            if any(what == kernel.PROC_EVENT_EXIT and pid == child.pid for what, pid, _tgid in events):
                return True
    return False
