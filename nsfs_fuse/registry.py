"""The table of pinned namespaces, and the immutable snapshots served from it.

What counts as held: a namespace some process, thread, fd, socket or bind mount
holds, and, up the hierarchy, the owner and parent of every held namespace (the
child keeps them alive in the kernel too). Relations never change for a
namespace, so they are read once, when it is first pinned (pins.py).

What each process holds is kept per pid, as the latest `ProcessRead` of it
delivered: a process event or a sweep reads a process again, and that read
replaces the last one whole. Bind mounts are kept per mount namespace, as the
latest read of its mount table: a sweep or a change of that table replaces them.

A namespace nothing is found holding is probed (pins.py): where the kernel has
nsfs file handles, its pin is closed and it is re-opened by handle, which only
succeeds while something no scan can see still holds it (an fd in flight).
docs/design.md, "Pins and the probe", says why.

All mutation happens under one lock, in a worker thread; FUSE handlers only read
`Registry.snapshot`, which is replaced whole.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .model import (
    EMPTY,
    KINDS,
    UNSEEN,
    Entry,
    Holder,
    HolderKind,
    Holders,
    NsKey,
    Opened,
    ProcessRead,
    Sighting,
    Snapshot,
)

log = logging.getLogger("nsfs")


class PinStore(Protocol):
    """What the registry needs of pins.Pins (unit tests give it fakes)."""

    @property
    def room(self) -> bool: ...

    def open(self, key: NsKey, sightings: list[Sighting], known: Callable[[NsKey], bool]) -> list[Opened]: ...

    def reopen(self, handle: bytes) -> int | None: ...

    def probe(self, name: str, pin: int | None, handle: bytes) -> tuple[bool, int | None]: ...

    def close(self, pin: int | None) -> None: ...


@dataclass(slots=True)
class _Process:
    read_at: float  # of the read this state came from
    keys: set[NsKey]  # what it holds (a tombstone, for a process that is gone, holds nothing)


# Who a namespace's direct holders come from: a process (its pid), or a mount
# namespace whose table has bind mounts of it.
Source = int | NsKey


class Registry:
    def __init__(self, pins: PinStore) -> None:
        self._lock = threading.Lock()
        self._pins = pins
        self._entries: dict[NsKey, Entry] = {}
        # Direct holders of each namespace, by where they come from.
        self._held: dict[NsKey, dict[Source, tuple[Holder, ...]]] = {}
        self._processes: dict[int, _Process] = {}
        self._tables: dict[NsKey, set[NsKey]] = {}  # what each mount table read holds, by mount namespace
        self._daemons: dict[int, frozenset[NsKey]] = {}  # other nsfs daemons and what they pin
        self._threaded: set[int] = set()  # processes a thread of which holds a namespace alone
        self._relations: dict[NsKey, set[Holder]] = {}  # owner-of and parent-of, by the owner or parent
        self._unseen: set[NsKey] = set()  # kept only because the probe found them alive
        self._serial = 0
        self._publisher = _Publisher()

    @property
    def snapshot(self) -> Snapshot:
        return self._publisher.snapshot

    # -- what discovery found -------------------------------------------------

    def update(self, reads: Iterable[ProcessRead]) -> bool:
        """Each read replaces what its process held before, unless a later read of it came first.

        Namespaces that lost their last holder are probed at once: a namespace
        whose last process exited goes without waiting for a sweep. True if one
        of them is still alive, kept only by the probe.
        """
        with self._lock:
            for read in reads:
                state = self._processes.get(read.pid)
                if state is not None and state.read_at > read.read_at:
                    continue  # an event read the process again while this read was on its way
                if read.daemon_pins:
                    self._daemons[read.pid] = read.daemon_pins
                else:
                    self._daemons.pop(read.pid, None)
                if any(s.holder.kind is HolderKind.TASK for s in read.sightings):
                    self._threaded.add(read.pid)
                else:
                    self._threaded.discard(read.pid)
                keys = self._replace(read.pid, read.sightings, set() if state is None else state.keys)
                self._processes[read.pid] = _Process(read.read_at, keys)
            before = self._unseen
            self._settle(probe_unseen=False)
            return not self._unseen <= before

    def update_mounts(self, mnt: NsKey, mounts: Iterable[Sighting]) -> bool:
        """The bind mounts in mount namespace `mnt` are now `mounts`: its table was read again.

        As `update`, true if a namespace that lost its last holder is kept only by the probe.
        """
        with self._lock:
            self._tables[mnt] = self._replace(mnt, mounts, self._tables.get(mnt, set()))
            before = self._unseen
            self._settle(probe_unseen=False)
            return not self._unseen <= before

    def end_sweep(self, tables: Mapping[NsKey, Iterable[Sighting]], started: float) -> Snapshot:
        """A sweep that began at `started` has read every process and then `tables`, the bind
        mounts of every mount namespace it could read: those replace what was known, mount
        namespaces it did not read hold nothing, and processes it did not find (nor events
        since) are gone."""
        with self._lock:
            for pid in [pid for pid, state in self._processes.items() if state.read_at < started]:
                self._replace(pid, (), self._processes.pop(pid).keys)
                self._daemons.pop(pid, None)
                self._threaded.discard(pid)
            for mnt in [mnt for mnt in self._tables if mnt not in tables]:
                self._replace(mnt, (), self._tables.pop(mnt))
            for mnt, mounts in tables.items():
                self._tables[mnt] = self._replace(mnt, mounts, self._tables.get(mnt, set()))
            return self._settle(probe_unseen=True)

    def has_unseen(self) -> bool:
        return bool(self._unseen)

    def has_tasks(self, pid: int) -> bool:
        """Whether a thread of process `pid` holds a namespace its process is not in."""
        return pid in self._threaded

    def loose_holders(self) -> list[tuple[NsKey, Holder]]:
        """The holders of namespaces no process or thread is in: no event says when they go."""
        with self._lock:
            return [
                (key, holder)
                for key, by_source in self._held.items()
                if not any(KINDS[h.kind].membership for holders in by_source.values() for h in holders)
                for holders in by_source.values()
                for holder in holders
            ]

    def reprobe(self) -> Snapshot:
        """Probe again what only the probe keeps: its hidden holder may have gone."""
        with self._lock:
            return self._settle(probe_unseen=True) if self._unseen else self.snapshot

    def close(self) -> None:
        """Release every pin."""
        with self._lock:
            for key in list(self._entries):
                self._release(key)
            self._held.clear()
            self._processes.clear()
            self._tables.clear()
            self._threaded.clear()
            self._daemons.clear()
            self._unseen.clear()
            self._publish()

    def _replace(self, source: Source, sightings: Iterable[Sighting], before: set[NsKey]) -> set[NsKey]:
        """Make `sightings` all that `source` holds; the keys it holds now."""
        by_key: dict[NsKey, list[Sighting]] = {}
        for sighting in sightings:
            by_key.setdefault(sighting.key, []).append(sighting)
        now: set[NsKey] = set()
        for key, found in by_key.items():
            if key in self._entries or self._pin_first(key, found):
                self._hold(key, source, tuple(s.holder for s in found))
                now.add(key)
        for key in before - now:
            by_pid = self._held.get(key)
            if by_pid is not None and by_pid.pop(source, None) is not None:
                self._publisher.changed(key)
                if not by_pid:
                    del self._held[key]  # the next settle probes it
        return now

    def _hold(self, key: NsKey, source: Source, holders: tuple[Holder, ...]) -> None:
        by_source = self._held.setdefault(key, {})
        if by_source.get(source) != holders:
            by_source[source] = holders
            self._publisher.changed(key)

    def _settle(self, probe_unseen: bool) -> Snapshot:
        """Probe what nothing holds any more (and, if asked, what only the probe kept), then publish."""
        live = self._closure(self._held)
        kept = set() if probe_unseen else {k for k in self._unseen if k in self._entries and k not in live}
        candidates = [k for k in self._entries if k not in live and k not in kept]
        daemon_pins: set[NsKey] = set().union(*self._daemons.values())
        unseen = kept | self._probe(candidates, live | kept, daemon_pins)
        self._publisher.changed(*(unseen ^ self._unseen))
        self._unseen = unseen
        self._pin_unpinned()
        return self._publish()

    # -- entries and their pins -----------------------------------------------

    def _pin_first(self, key: NsKey, sightings: list[Sighting]) -> bool:
        """Pin `key` (and its new owner and parent) through the first sighting that still leads to it."""
        opened = self._pins.open(key, sightings, self._entries.__contains__)
        for new in opened:
            self._serial += 1
            entry = Entry(serial=self._serial, first_seen_ns=time.time_ns(), **new._asdict())
            self._entries[new.key] = entry
            self._publisher.changed(new.key, entries=True)
            for relative, holder in entry.relations():
                self._relations.setdefault(relative, set()).add(holder)
                self._publisher.changed(relative)
        return bool(opened)

    def _pin_unpinned(self) -> None:
        """Give entries listed without a pin one, by handle, as pins free up."""
        for key, entry in list(self._entries.items()):
            if not self._pins.room:
                return
            if entry.pin is None and entry.handle is not None and (pin := self._pins.reopen(entry.handle)) is not None:
                self._set_pin(key, entry, pin)

    def _set_pin(self, key: NsKey, entry: Entry, pin: int | None) -> None:
        self._entries[key] = dataclasses.replace(entry, pin=pin)
        self._publisher.changed(entries=True)

    def _release(self, key: NsKey) -> None:
        self._pins.close(self._forget(key).pin)

    def _forget(self, key: NsKey) -> Entry:
        entry = self._entries.pop(key)
        for relative, holder in entry.relations():
            relations = self._relations.get(relative, set())
            relations.discard(holder)
            if not relations:
                self._relations.pop(relative, None)
            self._publisher.changed(relative)
        self._held.pop(key, None)
        self._publisher.changed(key, entries=True)
        log.debug("released %s", key.name)
        return entry

    # -- what is alive --------------------------------------------------------

    def _closure(self, held: Iterable[NsKey]) -> set[NsKey]:
        """`held` plus every owner and parent up to the initial namespaces."""
        live: set[NsKey] = set()
        stack = list(held)
        while stack:
            key = stack.pop()
            if key in live or key not in self._entries:
                continue
            live.add(key)
            entry = self._entries[key]
            stack.extend(k for k in (entry.owner, entry.parent) if k is not None)
        return live

    def _depth(self, key: NsKey) -> int:
        depth, entry = 0, self._entries.get(key)
        while entry is not None and entry.parent is not None:
            depth += 1
            entry = self._entries.get(entry.parent)
        return depth

    def _probe(self, candidates: list[NsKey], live: set[NsKey], daemon_pins: set[NsKey]) -> set[NsKey]:
        """Release each candidate unless something the scan cannot see still holds it.

        Leaves go first: the daemon's own pin on a child keeps its parent and owner
        alive, so non-hierarchical namespaces are probed before pid namespaces,
        and those before user namespaces, deepest first. A namespace another nsfs
        daemon pins, or one above such a namespace, would always answer the probe:
        for those the scan's word is final.
        """
        rank = {"pid": 1, "user": 2}
        order = sorted(candidates, key=lambda k: (rank.get(k.type, 0), -self._depth(k)))
        pinned_elsewhere = self._closure(daemon_pins)
        unseen: set[NsKey] = set()
        for key in order:
            if key in live:  # kept alive by a child the probe found alive
                continue
            entry = self._entries[key]
            if entry.handle is None or key in pinned_elsewhere:
                self._release(key)
                continue
            alive, pin = self._pins.probe(key.name, entry.pin, entry.handle)
            if not alive:
                self._forget(key)
                continue
            if pin != entry.pin:  # usually the number just closed comes back: nothing to publish
                self._set_pin(key, entry, pin)
            unseen.add(key)
            live.update(self._closure([key]))
        return unseen

    # -- publishing -----------------------------------------------------------

    def _holders_of(self, key: NsKey) -> Holders:
        parts = tuple(self._held.get(key, {}).values())
        if relations := self._relations.get(key):
            parts += (tuple(relations),)
        if key in self._unseen:
            parts += ((UNSEEN,),)
        return Holders(parts)

    def _publish(self) -> Snapshot:
        return self._publisher.publish(self._entries, self._holders_of)


class _Publisher:
    """Turns changes into snapshots: a new one only if anything shown has changed.

    Only the holders of namespaces something happened to are gathered again. A
    snapshot whose entries did not change keeps its generation, and with it the
    per-user-namespace views worked out for it.
    """

    def __init__(self) -> None:
        self.snapshot = EMPTY
        self._changed: set[NsKey] = set()  # whose holders may differ from the snapshot's
        self._entries_changed = False
        self._generation = 0

    def changed(self, *keys: NsKey, entries: bool = False) -> None:
        self._changed.update(keys)
        self._entries_changed |= entries

    def publish(self, entries: dict[NsKey, Entry], holders_of: Callable[[NsKey], Holders]) -> Snapshot:
        changed, self._changed = self._changed, set()
        holders = dict(self.snapshot.holders)
        holders_changed = False
        for key in changed:
            if key not in entries:
                holders_changed |= holders.pop(key.name, None) is not None
            elif holders.get(key.name) != (now := holders_of(key)):
                holders[key.name] = now
                holders_changed = True
        if self._entries_changed:
            self._entries_changed = False
            self._generation += 1
            self.snapshot = Snapshot.of(entries.values(), holders, self._generation)
        elif holders_changed:
            self.snapshot = dataclasses.replace(self.snapshot, holders=holders)
        return self.snapshot
