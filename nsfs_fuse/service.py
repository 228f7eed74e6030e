"""The running daemon, wired: the first sweep, the mount, the FUSE loop beside the tasks that
keep the index fresh (process_events.py, rereads.py, listed.py, probing.py, sweeps.py), the events
socket and metrics, signals; and everything released at the end.

The trio thread that serves FUSE requests never reads /proc itself beyond the caller's own
links (docs/design.md, "Freshness").
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pyfuse3
import trio

from . import discovery, kernel, pins
from .events_socket import EventsSocket, listening
from .fs import NsFs
from .listed import ListedNamespaces
from .lookups import MissReads
from .mount_tables import Tables
from .probing import Prober, Retirer
from .process_events import ProcessEvents
from .readers.mounted import events_socket
from .registry import Registry
from .rereads import Rereads, watch_tables
from .signals import Signals
from .sweeps import Refresher, SweepProcess, full_speed, sweeper
from .tasks import Alarm, Charges

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    mountpoint: str
    interval: float = 1.0
    sweep_cpu: float = 0.01  # share of a core sweeps and fd counts may use while events flow
    fuse_options: frozenset[str] = frozenset()
    metrics_address: tuple[str, int] | None = None  # serve /metrics here
    metrics_file: str | None = None  # rewrite this textfile every metrics.FILE_PERIOD
    events: str | None = None  # the socket events_socket.py serves; None: mounted.events_socket(mountpoint)
    listns: bool = True  # follow the kernel's list of namespaces where it has one (listed.py)


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
    # What the registry and the pins ring from worker threads, to wake the loop's tasks.
    to_probe, to_retire, listing_changed = Alarm(), Alarm(), Alarm()
    pinned = pins.Pins(nsfs_dev, budget, on_retire=to_retire.ring)
    registry = Registry(pinned, tables, on_suspend=to_probe.ring, on_listing=listing_changed.ring)
    charges = Charges()  # fd counts and checks, paid from the sweeps' budget
    rereads = Rereads(registry, scanner, os.getpid(), cpu_share=config.sweep_cpu / 2, charge=charges.charge)
    sweeps = SweepProcess(os.getpid(), nsfs_dev, scanner.helpers)
    sweep = sweeper(registry, sweeps, rereads.note, rereads.apply)
    refresher = Refresher(sweep, config.interval, config.sweep_cpu, charges)
    try:
        refresher.sweep(full_speed)  # the first listing is complete from the start
        log.info("found %d namespaces", len(registry.snapshot.entries))
        signals.act()  # what arrived during the first sweep: after an END, nothing is mounted
        if signals.ending is not None:
            return
        writers = _metrics(config, registry, refresher, tables, budget)
        with listening(config.events or events_socket(config.mountpoint)) as listener:
            clients = EventsSocket(registry, listener, listing_changed)
            ops = NsFs(registry, MissReads(rereads, registry))
            pyfuse3.init(ops, config.mountpoint, set(config.fuse_options))
            signals.mounted = True
            try:
                listed = None
                if config.listns:
                    listed = ListedNamespaces(registry, rereads.read_recent, rereads.search)
                events = ProcessEvents(registry, rereads, listed)

                async def follow_events() -> None:
                    await events.follow(refresher)

                async def follow_tables() -> None:
                    await watch_tables(registry, tables)

                prober, retirer = Prober(registry, to_probe), Retirer(registry, to_retire)
                others = [follow_events, prober.run, retirer.run, rereads.run, follow_tables, clients.run, *writers]
                if listed is not None:
                    others.append(listed.run)
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
