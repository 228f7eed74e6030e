"""The daemon's figures in the Prometheus text format: what it lists, and its own health.

Namespaces are per kernel, so a fleet runs one daemon per node and Prometheus gathers
the nodes. Served over HTTP (`-o metrics=[ADDR:]PORT`) or written for node_exporter's
textfile collector (`-o metrics_file=PATH`). The figures are root's view: every
namespace the daemon lists, whoever asks.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import errors, kernel
from .model import KINDS, NS_TYPES, HolderKind, NsKey, Snapshot, charged_uid

# How often the textfile is rewritten: node_exporter reads it at each scrape.
FILE_PERIOD = 10.0

# A network namespace held by nothing but these may be a leak: `ip netns add` and forgotten,
# or held by something the daemon cannot name.
_LEAKY: frozenset[HolderKind] = frozenset({HolderKind.MOUNT, HolderKind.UNSEEN})


@dataclass(frozen=True, slots=True)
class Health:
    """What the daemon says of itself at one moment."""

    pins: int  # fds held on namespaces
    fds: int  # every fd the daemon has open
    fd_budget: int  # fds that may hold namespaces and mount-table readers
    fd_budget_used: int
    mount_tables: int  # mount tables followed by their change flag
    sweeps: int  # sweeps ended since start
    last_sweep_seconds: float
    last_sweep_cpu_seconds: float
    following_events: bool  # process events arrive: sweeps are only a safety net


@dataclass(frozen=True, slots=True)
class Counts:
    """What one snapshot lists, counted (worked out once per snapshot: scrapes are cheap)."""

    by_type: Counter[str]
    by_kind: Counter[tuple[str, str]]  # (type, holder kind): namespaces that kind holds
    leaks: Counter[str]  # by type: held by bind mounts or `unseen` alone
    by_engine: Counter[str]  # namespaces a container (or service) of each engine holds
    by_owner: Counter[tuple[str, int]]  # (type, uid): as the kernel counts them for its limits


def count(snapshot: Snapshot) -> Counts:
    by_type: Counter[str] = Counter()
    by_kind: Counter[tuple[str, str]] = Counter()
    leaks: Counter[str] = Counter()
    by_engine: Counter[str] = Counter()
    by_owner: Counter[tuple[str, int]] = Counter()
    users: dict[NsKey, tuple[NsKey | None, int | None]] = {
        e.key: (e.parent, e.creator_uid) for e in snapshot.users.values()
    }
    for name, entry in snapshot.entries.items():
        nstype = entry.key.type
        by_type[nstype] += 1
        holders = snapshot.holders.get(name)
        kinds: set[HolderKind] = set()
        engines: set[str] = set()
        for holder in holders or ():
            kinds.add(holder.kind)
            if holder.container is not None:
                engines.add(holder.container.engine)
        for kind in kinds:
            by_kind[nstype, kind.value] += 1
        by_engine.update(engines)
        if nstype == "net" and kinds and kinds <= _LEAKY:
            leaks[nstype] += 1
        if nstype != "user" or entry.parent is not None:  # the top user namespace was made by none
            by_owner[nstype, charged_uid(entry.key if nstype == "user" else entry.owner, users)] += 1
    return Counts(by_type, by_kind, leaks, by_engine, by_owner)


class NamespaceCollector(Collector):
    """Gauges worked out at each scrape from the registry's current snapshot and the daemon."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        health: Callable[[], Health],
        faults: Callable[[], dict[tuple[str, int], int]] | None = None,  # None: errors.TALLY's
    ) -> None:
        self._snapshot = snapshot
        self._health = health
        self._faults = faults
        self._lock = threading.Lock()  # two scrapes at once count one snapshot once
        self._counted: tuple[Snapshot, Counts] | None = None

    def _counts(self) -> Counts:
        snapshot = self._snapshot()
        with self._lock:
            if self._counted is None or self._counted[0] is not snapshot:
                self._counted = (snapshot, count(snapshot))
            return self._counted[1]

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        by_type = GaugeMetricFamily("nsfs_namespaces", "Namespaces listed, by type.", labels=["type"])
        for nstype in NS_TYPES:
            by_type.add_metric([nstype], counts.by_type[nstype])
        yield by_type
        held = GaugeMetricFamily(
            "nsfs_namespaces_held",
            "Namespaces with at least one holder of a kind (a `holders` line), by type and kind.",
            labels=["type", "kind"],
        )
        for nstype in NS_TYPES:
            for kind in KINDS:
                held.add_metric([nstype, kind.value], counts.by_kind[nstype, kind.value])
        yield held
        leaks = GaugeMetricFamily(
            "nsfs_leak_candidates",
            "Network namespaces held only by bind mounts or by nothing the daemon can name (unseen).",
            labels=["type"],
        )
        leaks.add_metric(["net"], counts.leaks["net"])
        yield leaks
        containers = GaugeMetricFamily(
            "nsfs_container_namespaces",
            "Namespaces a container (or a systemd service) holds, by engine (a `containers` line).",
            labels=["engine"],
        )
        for engine, number in sorted(counts.by_engine.items()):
            containers.add_metric([engine], number)
        yield containers
        yield from _limit_families(counts.by_owner, kernel.namespace_limits())
        yield from _health_families(self._health())
        yield _faults_family(errors.TALLY.counts() if self._faults is None else self._faults())


def _limit_families(by_owner: Counter[tuple[str, int]], limits: dict[str, int]) -> Iterator[Metric]:
    """How close each user is to the kernel's limits, which fail a new namespace with a bare ENOSPC."""
    owned = GaugeMetricFamily(
        "nsfs_namespaces_by_owner",
        "Namespaces by type and by the uid the kernel counts them against for its limits.",
        labels=["type", "uid"],
    )
    for (nstype, uid), number in sorted(by_owner.items()):
        owned.add_metric([nstype, str(uid)], number)
    yield owned
    limit = GaugeMetricFamily(
        "nsfs_namespace_limit",
        "The kernel's limit on namespaces of a type one user may own (/proc/sys/user/max_TYPE_namespaces).",
        labels=["type"],
    )
    for nstype in NS_TYPES:
        if nstype in limits:
            limit.add_metric([nstype], limits[nstype])
    yield limit


def _health_families(health: Health) -> Iterator[Metric]:
    def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"nsfs_{name}", text, value=value)

    yield gauge("pins", "Namespaces the daemon holds an fd on.", health.pins)
    yield gauge("open_fds", "File descriptors the daemon has open.", health.fds)
    yield gauge("fd_budget", "Fds that may hold namespaces and mount-table readers.", health.fd_budget)
    yield gauge("fd_budget_used", "Of those, in use.", health.fd_budget_used)
    yield gauge("mount_tables_followed", "Mount tables followed by their change flag.", health.mount_tables)
    yield CounterMetricFamily("nsfs_sweeps", "Full sweeps of /proc since the daemon started.", value=health.sweeps)
    yield gauge("last_sweep_seconds", "How long the last full sweep took.", health.last_sweep_seconds)
    yield gauge("last_sweep_cpu_seconds", "The CPU time the last full sweep took.", health.last_sweep_cpu_seconds)
    yield gauge(
        "process_events_followed",
        "1 while the kernel's process events arrive; 0 if the daemon relies on sweeps alone.",
        1 if health.following_events else 0,
    )


def _faults_family(faults: dict[tuple[str, int], int]) -> Metric:
    family = CounterMetricFamily(
        "nsfs_errors",
        "Errors from the kernel the daemon's policy does not expect, by operation and errno; each"
        " cost one item (a process, a namespace, a mount table), skipped or kept as it was.",
        labels=["operation", "errno"],
    )
    for (op, code), count in sorted(faults.items()):
        family.add_metric([op, errors.errno_name(code)], count)
    return family


def registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve_http(registry: CollectorRegistry, address: str, port: int) -> None:
    """Serve /metrics from a thread of its own; OSError if the port cannot be had."""
    start_http_server(port, addr=address, registry=registry)


def write_file(registry: CollectorRegistry, path: str) -> None:
    """The whole text at `path`, replaced at once (written aside, then renamed)."""
    write_to_textfile(path, registry)
