"""The running daemon: periodic and on-demand scans, signals, the FUSE loop.

Scans run in a worker thread and publish a new snapshot when they are merged;
the trio thread that serves FUSE requests never runs one itself.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyfuse3
import trio

from . import discovery, kernel
from .fs import NsFs
from .registry import Registry

log = logging.getLogger("nsfs")

# Between two scans the daemon waits at least this long, and at least as long as
# the last scan took: neither the refresh period nor lookups of names that do not
# exist can keep it scanning more than half the time.
MIN_PAUSE = 0.02

# While process events keep the index fresh, full sweeps (for fds, mounts, and
# setns or unshare without exec) take at most this share of a core.
SWEEP_SHARE = 0.02


@dataclass(frozen=True)
class Config:
    mountpoint: str
    interval: float = 1.0
    fuse_options: frozenset[str] = frozenset()


def full_refresh(registry: Registry) -> Callable[[], None]:
    """One full scan of /proc merged into `registry`: blocking, for a worker thread."""
    scanner = discovery.Scanner(os.getpid(), kernel.nsfs_device())

    def refresh() -> None:
        started = time.monotonic()
        with scanner.scan() as found:
            registry.merge(found, started)
        log.debug("scan took %.3f s, %d namespaces", time.monotonic() - started, len(registry.snapshot.entries))

    return refresh


class Refresher:
    """Runs `refresh` every `interval` seconds, or sooner when a lookup asks for one.

    On demand, the next scan still waits at least as long as the last one took,
    so a stream of lookup misses cannot keep the daemon scanning without pause.
    """

    def __init__(self, refresh: Callable[[], None], interval: float) -> None:
        self.refresh = refresh
        self.interval = interval
        self._started = 0  # scans begun
        self._merged = 0  # scans merged and published
        self._wake = trio.Event()
        self._merged_event = trio.Event()
        self._last_start = -math.inf
        self._last_end = -math.inf
        self._last_cost = 0.0
        self.following_events = False  # set while process events arrive: sweeps can be rarer

    def wake(self) -> None:
        """Ask for a scan soon (after the usual pause), without waiting for it."""
        self._wake.set()

    async def rescan(self) -> None:
        """Return once a scan that started after this call has been merged.

        Concurrent callers share that scan.
        """
        target = self._started + 1
        while self._merged < target:
            merged = self._merged_event
            self._wake.set()
            await merged.wait()

    async def run(self) -> None:
        # The first scan ran before the loop started.
        self._last_start = self._last_end = trio.current_time()
        while True:
            period = max(self.interval, self._last_cost / SWEEP_SHARE) if self.following_events else self.interval
            due = self._last_start + period
            with trio.move_on_at(due):
                await self._wake.wait()
            # Woken or due, never sooner than the pause after the last scan.
            await trio.sleep_until(self._last_end + max(MIN_PAUSE, self._last_cost))
            self._wake = trio.Event()
            self._started += 1
            self._last_start = trio.current_time()
            try:
                await trio.to_thread.run_sync(self.refresh)
            except Exception:
                # Whatever went wrong, the last snapshot is still true enough to serve.
                log.exception("scan failed; serving the previous snapshot")
            self._last_end = trio.current_time()
            self._last_cost = self._last_end - self._last_start
            self._merged = self._started
            self._merged_event.set()
            self._merged_event = trio.Event()


def apply_events(registry: Registry) -> Callable[[set[int], set[int]], bool]:
    """Fold a batch of process events into `registry`: blocking, for a worker thread.

    True if a namespace is now held only by something the scan has not seen yet
    (its last process exited, an fd or mount still holds it): worth a sweep soon,
    so that `holders` names that holder rather than saying `unseen`.
    """

    def apply(born: set[int], gone: set[int]) -> bool:
        sightings = [s for pid in born - gone for s in discovery.process_sightings(pid, discovery.comm_of(pid))]
        registry.update(sightings, gone)
        return bool(registry.newly_unseen)

    return apply


async def follow_events(refresher: Refresher, apply: Callable[[set[int], set[int]], bool]) -> None:
    """Read fork, exec and exit events, so that the index follows processes between sweeps.

    Without them (no CAP_NET_ADMIN, or no proc connector) the periodic scan is all
    there is, and the log says so once.
    """
    try:
        sock = kernel.proc_events()
    except OSError as exc:
        log.warning("process events unavailable (%s): scanning every %g s instead", exc.strerror, refresher.interval)
        return
    with sock:
        # Outside the initial pid and user namespaces the kernel accepts the
        # subscription and sends nothing: see one event arrive before relying on them.
        if not await _events_arrive(sock):
            log.warning("process events unavailable (none arrive): scanning every %g s instead", refresher.interval)
            return
        refresher.following_events = True
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                born: set[int] = set()
                gone: set[int] = set()
                try:
                    while True:
                        for what, pid, tgid in kernel.parse_proc_events(sock.recv(65536, socket.MSG_DONTWAIT)):
                            if pid != tgid:
                                continue  # threads: the sweeps see those
                            (gone if what == kernel.PROC_EVENT_EXIT else born).add(pid)
                except BlockingIOError:
                    pass
                except OSError as exc:  # ENOBUFS: events were lost; a sweep catches up
                    log.warning("process events lost (%s): rescanning", exc.strerror)
                    await refresher.rescan()
                if await trio.to_thread.run_sync(apply, born, gone):
                    refresher.wake()
        finally:
            refresher.following_events = False


async def _events_arrive(sock: socket.socket, patience: float = 1.0) -> bool:
    """Whether the exit of a child of ours shows up on `sock` within `patience` seconds."""
    child = await trio.lowlevel.open_process(["true"])
    await child.wait()
    with trio.move_on_after(patience):
        while True:
            await trio.lowlevel.wait_readable(sock)
            for what, pid, _tgid in kernel.parse_proc_events(sock.recv(65536)):
                if what == kernel.PROC_EVENT_EXIT and pid == child.pid:
                    return True
    return False


async def _main(
    refresher: Refresher, events: Callable[[set[int], set[int]], bool], mountpoint: str, ready: Callable[[], None]
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresher.run)
        nursery.start_soon(follow_events, refresher, events)
        nursery.start_soon(_on_signals, nursery.cancel_scope)
        await trio.sleep(0)
        log.info("serving %s", mountpoint)
        ready()
        try:
            await pyfuse3.main()  # returns when the filesystem is unmounted
        finally:
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
    registry = Registry()
    refresher = Refresher(full_refresh(registry), config.interval)
    try:
        refresher.refresh()  # the first listing is complete from the start
        log.info("found %d namespaces", len(registry.snapshot.entries))
        ops = NsFs(registry, refresher)
        pyfuse3.init(ops, config.mountpoint, set(config.fuse_options))
        try:
            trio.run(_main, refresher, apply_events(registry), config.mountpoint, ready)
        finally:
            pyfuse3.close(unmount=True)
    finally:
        registry.close()
        log.info("exiting: %s unmounted, every pin closed", config.mountpoint)
