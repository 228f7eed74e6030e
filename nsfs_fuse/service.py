"""The running daemon: process events, sweeps, signals, the FUSE loop.

Process events (fork, exec, exit) name the processes to read again, so the index
follows them at once. Sweeps read every process and every mount namespace: they
find what events never report (fds, sockets, bind mounts, setns or unshare without
exec). While events flow, a sweep is spread out so that it uses at most a set share
of a core; without them, sweeps run at full speed every interval. Either way
they run in a worker thread, and the trio thread that serves FUSE requests never
reads /proc itself beyond the caller's own links (docs/design.md, "Freshness").
"""

from __future__ import annotations

import logging
import math
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyfuse3
import trio

from . import discovery, kernel, pins
from .fs import NsFs
from .model import ProcessRead
from .registry import Registry

log = logging.getLogger("nsfs")

# After an unpaced sweep the daemon waits at least this long, and at least as
# long as the sweep's CPU time: neither the interval nor lookups of names that
# do not exist can keep it sweeping more than half the time.
MIN_PAUSE = 0.02

# A namespace whose last process exited may outlive the exit event by a moment
# (its pid namespace until the parent reaps, its user namespace until the task is
# freed): namespaces only the probe keeps are probed again after these delays.
REPROBE_AFTER = (0.05, 0.25, 1.0)

# Events are read until the socket is empty or this many processes are named,
# then those processes are read again in one batch.
MAX_BATCH = 1024


@dataclass(frozen=True)
class Config:
    mountpoint: str
    interval: float = 1.0
    sweep_cpu: float = 0.01  # share of a core a sweep may use while events flow
    fuse_options: frozenset[str] = frozenset()


# pace(cpu, elapsed) -> whether to go on: called by a sweep after each chunk of
# processes with the CPU time and wall time it has taken so far; it may sleep.
Pace = Callable[[float, float], bool]


def sweeper(registry: Registry, scanner: discovery.Scanner) -> Callable[[Pace], float]:
    """A full sweep into `registry`, paced by its argument: blocking, for a worker thread.

    Returns the CPU time the sweep took: what it cost the machine, which waiting
    for the registry lock, the GIL or the pace would inflate on the wall clock.
    """

    told = False  # whether the log has said how long a paced sweep lasts

    def sweep(pace: Pace) -> float:
        nonlocal told
        started, cpu = time.monotonic(), time.thread_time()

        def each(reads: list[ProcessRead]) -> bool:
            registry.update(reads)
            return pace(time.thread_time() - cpu, time.monotonic() - started)

        mounts = scanner.sweep(each)
        if mounts is not None:
            with mounts:
                registry.end_sweep(mounts.sightings(), started)
        cost = time.thread_time() - cpu
        if mounts is not None and pace is not full_speed and not told:
            told = True
            log.info("a paced sweep took %.0f s (%.2f s of CPU)", time.monotonic() - started, cost)
        log.debug(
            "sweep %s in %.3f s (%.3f s of CPU), %d namespaces",
            "done" if mounts is not None else "abandoned",
            time.monotonic() - started,
            cost,
            len(registry.snapshot.entries),
        )
        return cost

    return sweep


def full_speed(_cpu: float, _elapsed: float) -> bool:
    return True


class Refresher:
    """Runs sweeps: one `interval` after another, or sooner when a lookup asks for one.

    While `following_events` is set a sweep is paced to `sweep_cpu` of a core,
    unless a lookup is waiting for it. A sweep asked for by a lookup runs at full
    speed, but never sooner after the last one than that one's CPU time, so a
    stream of lookup misses cannot keep the daemon sweeping without pause.
    """

    def __init__(self, sweep: Callable[[Pace], float], interval: float, sweep_cpu: float = 0.01) -> None:
        self.sweep = sweep
        self.interval = interval
        self.sweep_cpu = sweep_cpu
        self.following_events = False
        self._started = 0  # sweeps begun
        self._merged = 0  # sweeps ended (done or abandoned)
        self._wake = trio.Event()
        self._merged_event = trio.Event()
        self._urgent = False  # a lookup waits for the next sweep
        self._abandon = threading.Event()  # tells a paced sweep to stop: a lookup waits for the next one
        self._last_end = -math.inf
        self._last_cost = 0.0

    async def rescan(self) -> None:
        """Return once a sweep that started after this call has ended.

        Concurrent callers share that sweep.
        """
        target = self._started + 1
        while self._merged < target:
            merged = self._merged_event
            self._urgent = True
            self._abandon.set()
            self._wake.set()
            await merged.wait()

    def stop(self) -> None:
        """End a sweep under way at its next chunk: the daemon is exiting, and trio waits for its thread."""
        self._abandon.set()

    def _pace(self, cpu: float, elapsed: float) -> bool:
        """Between two chunks of a paced sweep (in its thread): sleep to stay within the budget."""
        wait = cpu / self.sweep_cpu - elapsed
        if wait > 0:
            self._abandon.wait(wait)
        return not self._abandon.is_set()

    async def run(self) -> None:
        # The first sweep ran before the loop started.
        self._last_end = trio.current_time()
        while True:
            with trio.move_on_at(self._last_end + self.interval):
                await self._wake.wait()
            if self._urgent or not self.following_events:
                await trio.sleep_until(self._last_end + max(MIN_PAUSE, self._last_cost))
            paced = self.following_events and not self._urgent
            self._wake = trio.Event()
            self._urgent = False
            self._abandon.clear()
            self._started += 1
            try:
                self._last_cost = await trio.to_thread.run_sync(self.sweep, self._pace if paced else full_speed)
            except Exception:
                # Whatever went wrong, the last snapshot is still true enough to serve.
                log.exception("sweep failed; serving the previous snapshot")
            self._last_end = trio.current_time()
            self._merged = self._started
            self._merged_event.set()
            self._merged_event = trio.Event()


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


class Events:
    """Process events folded into the registry: each named process is read again."""

    def __init__(self, registry: Registry, scanner: discovery.Scanner, reprober: Reprober) -> None:
        self._registry = registry
        self._scanner = scanner
        self._reprober = reprober

    def apply(self, pids: frozenset[int]) -> bool:
        """Read `pids` again (blocking, for a worker thread).

        True if a namespace one of them held is now kept only by the probe.
        """
        return self._registry.update([self._scanner.read(pid) for pid in sorted(pids)])

    async def follow(self, refresher: Refresher) -> None:
        """Read fork, exec and exit events until cancelled.

        Without them (no proc connector, or a daemon outside the initial pid and
        user namespaces) the sweeps are all there is, and the log says so once.
        """
        try:
            sock = kernel.proc_events()
        except OSError as exc:
            log.warning(
                "process events unavailable (%s): sweeping every %g s instead", exc.strerror, refresher.interval
            )
            return
        with sock:
            # Outside the initial pid and user namespaces the kernel accepts the
            # subscription and sends nothing: see one event arrive before relying on them.
            if not await _events_arrive(sock):
                log.warning("process events unavailable (none arrive): sweeping every %g s instead", refresher.interval)
                return
            refresher.following_events = True
            log.info("following process events")
            try:
                await self._follow(sock, refresher)
            finally:
                refresher.following_events = False

    async def _follow(self, sock: socket.socket, refresher: Refresher) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(sock)
                pids: set[int] = set()
                try:
                    while len(pids) < MAX_BATCH:
                        for _what, pid, tgid in kernel.parse_proc_events(sock.recv(65536)):
                            if pid == tgid:  # threads come and go without events: sweeps see them
                                pids.add(pid)
                except BlockingIOError:
                    pass
                except OSError as exc:  # ENOBUFS: events were lost; a sweep at full speed catches up
                    log.warning("process events lost (%s): sweeping now", exc.strerror)
                    nursery.start_soon(refresher.rescan)
                if not pids:
                    continue  # only threads came and went (trio's own workers among them)
                if await trio.to_thread.run_sync(self.apply, frozenset(pids)):
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


async def _main(
    refresher: Refresher, events: Events, reprober: Reprober, config: Config, ready: Callable[[], None]
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresher.run)
        nursery.start_soon(events.follow, refresher)
        nursery.start_soon(reprober.run)
        nursery.start_soon(_on_signals, nursery.cancel_scope)
        await trio.sleep(0)
        log.info("serving %s", config.mountpoint)
        ready()
        try:
            await pyfuse3.main()  # returns when the filesystem is unmounted
        finally:
            refresher.stop()
            nursery.cancel_scope.cancel()


async def _on_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


def serve(config: Config, ready: Callable[[], None]) -> None:
    """Scan, mount, serve until unmounted or signalled, then release every pin.

    `ready` is called once the mount exists and requests are being served.
    Raises OSError or RuntimeError if the mount cannot be made.
    """
    nsfs_dev = kernel.nsfs_device()
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    registry = Registry(pins.Pins(nsfs_dev, pins.budget(soft_limit, resource.RLIM_INFINITY)))
    scanner = discovery.Scanner(os.getpid(), nsfs_dev)
    refresher = Refresher(sweeper(registry, scanner), config.interval, config.sweep_cpu)
    try:
        refresher.sweep(full_speed)  # the first listing is complete from the start
        log.info("found %d namespaces", len(registry.snapshot.entries))
        ops = NsFs(registry, refresher)
        pyfuse3.init(ops, config.mountpoint, set(config.fuse_options))
        try:
            reprober = Reprober(registry, config.interval)
            events = Events(registry, scanner, reprober)
            trio.run(_main, refresher, events, reprober, config, ready)
        finally:
            pyfuse3.close(unmount=True)
    finally:
        registry.close()
        log.info("exiting: %s unmounted, every pin closed", config.mountpoint)
