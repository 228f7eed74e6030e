"""The running daemon: periodic and on-demand scans, signals, the FUSE loop.

Scans run in a worker thread and publish a new snapshot when they are merged;
the trio thread that serves FUSE requests never runs one itself.
"""

from __future__ import annotations

import logging
import math
import os
import signal
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
        self._interval = interval
        self._started = 0  # scans begun
        self._merged = 0  # scans merged and published
        self._wake = trio.Event()
        self._merged_event = trio.Event()
        self._last_start = -math.inf
        self._last_end = -math.inf
        self._last_cost = 0.0

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
            due = self._last_start + self._interval
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


async def _main(refresher: Refresher, mountpoint: str, ready: Callable[[], None]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresher.run)
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
            trio.run(_main, refresher, config.mountpoint, ready)
        finally:
            pyfuse3.close(unmount=True)
    finally:
        registry.close()
        log.info("exiting: %s unmounted, every pin closed", config.mountpoint)
