"""Following changes without sweeping: process events, and the few processes worth reading again.

- Process events (fork, exec, exit) name the processes to read again at once; a
  thread's exit re-reads its process if a thread of it held a namespace alone.
- An exiting process (a zombie) still holds its pid and user namespaces until it
  is reaped, which no event reports: it is read again, sooner then later, until
  it is gone.
- A namespace that no process or thread is in is held by fds, sockets or bind
  mounts alone, and closing an fd makes no event: each such fd is checked again
  every VERIFY_EVERY (one readlink), and its process read again if it changed.
- A lookup of a name the index lacks reads what the caller itself could have got
  the name from: its own process and its mount table. Never the whole machine.

docs/design.md, "Freshness", says how these fit with sweeps.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Final, Protocol

import trio

from . import discovery, kernel
from .model import ProcessRead
from .registry import Registry

log = logging.getLogger("nsfs")

# A namespace whose last process exited may outlive the exit event by a moment
# (its pid namespace until the parent reaps, its user namespace until the task is
# freed): namespaces only the probe keeps are probed again after these delays.
REPROBE_AFTER: Final = (0.05, 0.25, 1.0)

# Events are read until the socket is empty or this many processes are named,
# then those processes are read again in one batch.
MAX_BATCH: Final = 1024

# A zombie is read again after this, then twice as long each time, up to ZOMBIE_MAX.
ZOMBIE_FIRST: Final = 0.05
ZOMBIE_MAX: Final = 0.5

# How often the fds and sockets of namespaces no process is in are checked again.
VERIFY_EVERY: Final = 0.25

# How often the re-read schedule is looked at.
TICK: Final = 0.05


class Sweeps(Protocol):
    """What events need of the sweeps (service.Refresher)."""

    interval: float
    following_events: bool

    async def rescan(self) -> None: ...


class Reprober:
    """Probes again what only the probe keeps (an fd in flight, say): every
    interval, and shortly after exits that left such namespaces."""

    def __init__(self, registry: Registry, interval: float) -> None:
        self._registry = registry
        self._interval = interval
        self._soon = trio.Event()

    def soon(self) -> None:
        """Probe after each of REPROBE_AFTER, then every interval again."""
        self._soon.set()

    async def run(self) -> None:
        delays: tuple[float, ...] = ()
        while True:
            with trio.move_on_after(delays[0] if delays else self._interval) as waited:
                await self._soon.wait()
            if not waited.cancelled_caught:  # soon() was called: start the short delays over
                self._soon = trio.Event()
                delays = REPROBE_AFTER
                continue
            delays = delays[1:]
            if self._registry.has_unseen():
                await trio.to_thread.run_sync(self._registry.reprobe)


class Rereads:
    """Reads processes again into the registry: now, or later for zombies; and checks fds."""

    def __init__(self, registry: Registry, scanner: discovery.Scanner, reprober: Reprober) -> None:
        self._registry = registry
        self._scanner = scanner
        self._reprober = reprober
        self._lock = threading.Lock()
        self._zombies: dict[int, tuple[float, float]] = {}  # pid -> (when to read it again, the delay after that)

    def apply(self, pids: Iterable[int]) -> bool:
        """Read `pids` again (blocking, for a worker thread).

        True if a namespace one of them held is now kept only by the probe.
        """
        reads = [self._scanner.read(pid) for pid in sorted(pids)]
        self.note(reads)
        return self._registry.update(reads)

    def note(self, reads: Iterable[ProcessRead]) -> None:
        """Remember which of `reads` found a zombie, to read it again until it is reaped."""
        now = time.monotonic()
        with self._lock:
            for read in reads:
                if not read.exiting:
                    self._zombies.pop(read.pid, None)
                elif read.pid not in self._zombies:
                    self._zombies[read.pid] = (now + ZOMBIE_FIRST, ZOMBIE_FIRST * 2)

    def _due(self) -> list[int]:
        now = time.monotonic()
        with self._lock:
            due = [pid for pid, (when, _delay) in self._zombies.items() if when <= now]
            for pid in due:
                delay = self._zombies[pid][1]
                self._zombies[pid] = (now + delay, min(delay * 2, ZOMBIE_MAX))
        return due

    def verify(self) -> bool:
        """Check each fd and socket that holds a namespace no process is in; read again the
        processes whose fd changed (blocking). True as for `apply`."""
        stale = {h.pid for key, h in self._registry.loose_holders() if discovery.still_holds(key, h) is False}
        return bool(stale) and self.apply(stale)

    async def run(self) -> None:
        next_verify = trio.current_time()
        while True:
            await trio.sleep(TICK)
            unseen = False
            if due := self._due():
                unseen |= await trio.to_thread.run_sync(self.apply, due)
            if trio.current_time() >= next_verify:
                next_verify = trio.current_time() + VERIFY_EVERY
                unseen |= await trio.to_thread.run_sync(self.verify)
            if unseen:
                self._reprober.soon()


class Finder:
    """After a lookup miss: read what the caller could have got the name from, and nothing else.

    That is its own process (ns links, threads, fds, sockets) and its mount table.
    One caller at a time; a process is read again for a lookup only after ten times
    what its last read cost, so a caller with many fds looping over made-up names
    costs the daemon a tenth of a core at most, and the rest of the machine nothing.
    """

    def __init__(self, rereads: Rereads, registry: Registry, scanner: discovery.Scanner) -> None:
        self._rereads = rereads
        self._registry = registry
        self._scanner = scanner
        self._limiter = trio.CapacityLimiter(1)
        self._not_before: dict[int, float] = {}

    async def own(self, tid: int) -> None:
        """The calling thread is in a namespace the index lacks: read its process, always."""
        await trio.to_thread.run_sync(self._read, tid, limiter=self._limiter)

    async def look(self, tid: int) -> None:
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
        self._rereads.apply([pid])
        mnt = next((s.key for s in discovery.caller_sightings(tid) if s.key.type == "mnt"), None)
        if mnt is not None:
            self._registry.update_mounts(mnt, list(discovery.mount_sightings(tid, mnt)))
        if len(self._not_before) > 4096:
            self._not_before = {p: t for p, t in self._not_before.items() if t > now}
        self._not_before[pid] = now + 10 * (time.thread_time() - cpu)


class Events:
    """Process events folded into the registry: each named process is read again."""

    def __init__(self, registry: Registry, rereads: Rereads, reprober: Reprober) -> None:
        self._registry = registry
        self._rereads = rereads
        self._reprober = reprober

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
                pids: set[int] = set()
                try:
                    while len(pids) < MAX_BATCH:
                        for what, pid, tgid in kernel.parse_proc_events(sock.recv(65536)):
                            if pid == tgid:
                                pids.add(pid)
                            elif what == kernel.PROC_EVENT_EXIT and self._registry.has_tasks(tgid):
                                pids.add(tgid)  # a thread that held a namespace alone may be the one exiting
                except BlockingIOError:
                    pass
                except OSError as exc:  # ENOBUFS: events were lost; a sweep at full speed catches up
                    log.warning("process events lost (%s): sweeping now", exc.strerror)
                    nursery.start_soon(sweeps.rescan)
                if not pids:
                    continue  # only threads came and went (trio's own workers among them)
                if await trio.to_thread.run_sync(self._rereads.apply, pids):
                    self._reprober.soon()


async def _events_arrive(sock: socket.socket, patience: float = 1.0) -> bool:
    """Whether the exit of a child of ours shows up on `sock` within `patience` seconds."""
    child = await trio.lowlevel.open_process(["true"])
    await child.wait()
    with trio.move_on_after(patience):
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                events = kernel.parse_proc_events(sock.recv(65536))
            except BlockingIOError:
                continue
            if any(what == kernel.PROC_EVENT_EXIT and pid == child.pid for what, pid, _tgid in events):
                return True
    return False
