"""The running daemon: sweeps, signals, the FUSE loop, and the wiring of what follows changes.

What keeps the index fresh between sweeps (process events, re-reads, mount tables,
the prober) is in follow.py. Sweeps read every process: a safety net for what none
of that sees. While events flow, a sweep is spread out so that it uses at most a
set share of a core; without them, sweeps run at full speed every interval. Either
way they run in a worker thread, and the trio thread that serves FUSE requests
never reads /proc itself beyond the caller's own links (docs/design.md, "Freshness").
"""

from __future__ import annotations

import logging
import math
import os
import resource
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pyfuse3
import trio

from . import discovery, kernel, pins
from .follow import Events, Finder, Prober, Rereads, Retirer, watch_tables
from .fs import NsFs
from .model import ProcessRead
from .mounted import events_socket
from .registry import Registry
from .signals import Signals
from .sweeping import SweepProcess
from .tables import Tables
from .watchers import Watchers, listening

log = logging.getLogger("nsfs")

# After an unpaced sweep the daemon waits at least this long, and at least as
# long as the sweep's CPU time: neither the interval nor a stream of lost process
# events can keep it sweeping more than half the time.
MIN_PAUSE = 0.02


@dataclass(frozen=True)
class Config:
    mountpoint: str
    interval: float = 1.0
    sweep_cpu: float = 0.01  # share of a core sweeps and fd counts may use while events flow
    fuse_options: frozenset[str] = frozenset()
    metrics_address: tuple[str, int] | None = None  # serve /metrics here
    metrics_file: str | None = None  # rewrite this textfile every metrics.FILE_PERIOD
    events: str | None = None  # the socket watchers.py serves; None: mounted.events_socket(mountpoint)


# pace(cpu, elapsed) -> whether to go on: called by a sweep after each chunk of
# processes with the CPU time and wall time it has taken so far; it may sleep.
Pace = Callable[[float, float], bool]


def sweeper(
    registry: Registry,
    source: SweepProcess,
    note: Callable[[list[ProcessRead]], None],
    reread: Callable[[list[int]], None],
) -> Callable[[Pace], float]:
    """A full sweep into `registry`, paced by its argument: blocking, for a worker thread.
    `note` is told the reads that changed; `reread` reads again, at once, the processes
    whose kept read the sweep's reader cannot vouch for (`Registry.touch`).

    Returns the CPU time the sweep took, the reading process's and this thread's: what it
    cost the machine, which waiting for the registry lock, the GIL or the pace would
    inflate on the wall clock.
    """

    told = False  # whether the log has said how long a paced sweep lasts

    def sweep(pace: Pace) -> float:
        nonlocal told
        started, cpu, reader_cpu = time.monotonic(), time.thread_time(), source.cpu()

        def spent() -> float:
            return time.thread_time() - cpu + max(0.0, source.cpu() - reader_cpu)

        def each(reads: list[ProcessRead], same: list[tuple[int, float]]) -> bool:
            registry.update(reads, swept=True)
            note(reads)
            if same and (stale := registry.touch(same)):
                reread(stale)
            return pace(spent(), time.monotonic() - started)

        done = source.sweep(each, background=pace is not full_speed, forget=registry.take_dirty())
        if done:
            registry.end_sweep(started)
        cost = spent()
        if done and pace is not full_speed and not told:
            told = True
            log.info("a paced sweep took %.0f s (%.2f s of CPU)", time.monotonic() - started, cost)
        log.debug(
            "sweep %s in %.3f s (%.3f s of CPU), %d namespaces",
            "done" if done else "abandoned",
            time.monotonic() - started,
            cost,
            len(registry.snapshot.entries),
        )
        return cost

    return sweep


def full_speed(_cpu: float, _elapsed: float) -> bool:
    return True


class Refresher:
    """Runs sweeps: one `interval` after another, or sooner when asked (`rescan`: process
    events were lost).

    While `following_events` is set a sweep is paced to `sweep_cpu` of a core,
    unless someone waits for it. A sweep asked for runs at full speed, but never
    sooner after the last one than that one's CPU time, so a stream of requests
    cannot keep the daemon sweeping without pause.
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
        self._urgent = False  # someone waits for the next sweep
        self._abandon = threading.Event()  # tells a paced sweep to stop: someone waits for the next one
        self._last_end = -math.inf
        self._last_cost = 0.0
        self.last_length = 0.0  # wall time of the last sweep that ended (metrics.py)
        self._charged = 0.0  # CPU time of other background work, since the start
        self._charged_before = 0.0  # ... up to the start of the sweep under way

    @property
    def sweeps(self) -> int:
        """Sweeps ended since the loop started."""
        return self._merged

    @property
    def last_cost(self) -> float:
        """The CPU time of the last sweep that ended."""
        return self._last_cost

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

    def charge(self, cpu: float) -> None:
        """Other work that grows with the machine (fd counts) took `cpu` seconds (any thread):
        the sweep under way slows down to keep both within `sweep_cpu`."""
        self._charged += cpu

    def _pace(self, cpu: float, elapsed: float) -> bool:
        """Between two chunks of a paced sweep (in its thread): sleep to stay within the budget."""
        wait = (cpu + self._charged - self._charged_before) / self.sweep_cpu - elapsed
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
            self._charged_before = self._charged
            began = trio.current_time()
            try:
                self._last_cost = await trio.to_thread.run_sync(self.sweep, self._pace if paced else full_speed)
            except Exception:
                # Whatever went wrong, the last snapshot is still true enough to serve.
                log.exception("sweep failed; serving the previous snapshot")
            self._last_end = trio.current_time()
            self.last_length = self._last_end - began
            self._merged = self._started
            self._merged_event.set()
            self._merged_event = trio.Event()


async def _main(
    refresher: Refresher,
    others: Sequence[Callable[[], Awaitable[None]]],
    config: Config,
    ready: Callable[[], None],
    signals: Signals,
) -> None:
    signals.act()  # what arrived while mounting
    if signals.ending is not None:
        return  # serve() unmounts: nothing was served
    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresher.run)
        for run in others:
            nursery.start_soon(run)
        nursery.start_soon(signals.follow, pyfuse3.terminate)
        await trio.sleep(0)
        log.info("serving %s", config.mountpoint)
        ready()
        try:
            await pyfuse3.main()  # returns when the filesystem is unmounted, or terminated
        finally:
            refresher.stop()
            nursery.cancel_scope.cancel()


def _metrics(
    config: Config, registry: Registry, refresher: Refresher, tables: Tables, budget: pins.Budget
) -> list[Callable[[], Awaitable[None]]]:
    """Start serving metrics if asked (RuntimeError if the port cannot be had); the tasks that
    write the metrics file, if asked."""
    if config.metrics_address is None and config.metrics_file is None:
        return []
    from . import metrics

    def health() -> metrics.Health:
        snapshot = registry.snapshot
        return metrics.Health(
            pins=sum(1 for e in snapshot.entries.values() if e.pin is not None),
            fds=len(os.listdir("/proc/self/fd")) - 1,  # less the one listing them
            fd_budget=budget.size,
            fd_budget_used=budget.used,
            mount_tables=len(tables),
            sweeps=refresher.sweeps,
            last_sweep_seconds=refresher.last_length,
            last_sweep_cpu_seconds=refresher.last_cost,
            following_events=refresher.following_events,
        )

    collected = metrics.registry_of(metrics.NamespaceCollector(lambda: registry.snapshot, health))
    if config.metrics_address is not None:
        address, port = config.metrics_address
        try:
            metrics.serve_http(collected, address, port)
        except OSError as exc:
            raise RuntimeError(f"metrics cannot listen on {address}:{port}: {exc.strerror}") from None
    path = config.metrics_file
    if path is None:
        return []

    async def write() -> None:
        while True:
            try:
                await trio.to_thread.run_sync(metrics.write_file, collected, path)
            except OSError as exc:
                log.warning("cannot write metrics to %s: %s", path, exc.strerror)
            except Exception:
                log.exception("writing metrics failed")  # a bug: the mount goes on
            await trio.sleep(metrics.FILE_PERIOD)

    return [write]


def serve(config: Config, ready: Callable[[], None]) -> None:
    """Scan, mount, serve until unmounted or signalled, then release every pin.

    `ready` is called once the mount exists and requests are being served.
    Raises OSError or RuntimeError if the mount cannot be made.
    """
    # From here on no signal that can be caught ends the daemon by its default action, which
    # would leave the mount behind, dead: one that arrives before the loop runs is acted on
    # after the first sweep, and again as the loop starts (signals.py).
    with Signals().installed() as signals:
        _serve(config, ready, signals)


def _serve(config: Config, ready: Callable[[], None], signals: Signals) -> None:
    nsfs_dev = kernel.nsfs_device()
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    scanner = discovery.Scanner(os.getpid(), nsfs_dev)
    budget = pins.Budget(pins.budget(soft_limit, resource.RLIM_INFINITY))
    tables = Tables(scanner.helpers, budget)
    pinned = pins.Pins(nsfs_dev, budget)
    registry = Registry(pinned, tables)
    rereads = Rereads(registry, scanner, os.getpid(), cpu_share=config.sweep_cpu / 2)
    sweeps = SweepProcess(os.getpid(), nsfs_dev, scanner.helpers)
    refresher = Refresher(sweeper(registry, sweeps, rereads.note, rereads.apply), config.interval, config.sweep_cpu)
    try:
        refresher.sweep(full_speed)  # the first listing is complete from the start
        log.info("found %d namespaces", len(registry.snapshot.entries))
        signals.act()  # what arrived during the first sweep: after an END, nothing is mounted
        if signals.ending is not None:
            return
        writers = _metrics(config, registry, refresher, tables, budget)
        with listening(config.events or events_socket(config.mountpoint)) as listener:
            watchers = Watchers(registry, listener)
            registry.on_listing = watchers.alarm.ring
            ops = NsFs(registry, Finder(rereads, registry))
            pyfuse3.init(ops, config.mountpoint, set(config.fuse_options))
            signals.mounted = True
            try:
                events = Events(registry, rereads)

                async def follow_events() -> None:
                    await events.follow(refresher)

                async def follow_tables() -> None:
                    await watch_tables(registry, tables)

                prober = Prober(registry)
                registry.on_suspend = prober.alarm.ring
                retirer = Retirer(registry)
                pinned.on_retire = retirer.alarm.ring
                rereads.charge = refresher.charge
                others = [follow_events, prober.run, retirer.run, rereads.run, follow_tables, watchers.run, *writers]
                trio.run(_main, refresher, others, config, ready, signals)
            finally:
                pyfuse3.close(unmount=True)
    finally:
        sweeps.close()
        registry.close()
        tables.close_all()
        if signals.mounted:
            log.info("exiting: %s unmounted, every pin closed", config.mountpoint)
        else:
            log.info("exiting: nothing mounted, every pin closed")
