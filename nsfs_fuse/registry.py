"""The table of pinned namespaces, and the immutable snapshots served from it.

What counts as held: a namespace some process, thread, fd, socket or bind mount
holds, and, up the hierarchy, the owner and parent of every held namespace (the
child keeps them alive in the kernel too). Relations never change for a
namespace, so they are read once, when it is first pinned (pins.py).

What each process holds is kept per pid, as the latest `ProcessRead` of it
delivered: a process event or a sweep reads a process again, and that read
replaces the last one whole. Bind mounts are kept per mount namespace, as the
latest read of its mount table: the table of every mount namespace something
holds is followed (tables.py), and each change of it replaces them.

A namespace nothing is found holding is suspended (its pin points at a placeholder)
and, once the kernel has had time to let go, probed: re-opened by its nsfs file
handle, which only succeeds while something no scan can see still holds it (an fd
in flight). docs/design.md, "Pins and the probe", says why it waits.

All mutation happens under one lock, in a worker thread; FUSE handlers only read
`Registry.snapshot`, which is replaced whole.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol, TypeVar

from immutables import Map

from .following import Following, TableStore
from .holdings import Holdings
from .model import (
    EMPTY,
    UNSEEN,
    Entry,
    Holder,
    Holders,
    NsKey,
    Opened,
    ProcessRead,
    Sighting,
    Snapshot,
    with_ancestors,
)

log = logging.getLogger("nsfs")

_K = TypeVar("_K")
_V = TypeVar("_V")

# Beside other nsfs daemons. A namespace another daemon pins would answer every probe
# while that pin is open, so the daemons probe such namespaces at shared moments: each
# drops its reference at once, then waits for the next multiple of SHARED_SLOT seconds of
# the wall clock (the one clock every daemon of a machine reads alike, containers' time
# namespaces included) and SHARED_WAIT more, for the others to have dropped theirs too;
# the prober then lets the kernel finish releasing, and probes. What is only pinned by
# daemons is gone then, and each lets go; what something unseen holds answers all of them.
SHARED_SLOT: Final = 0.25
SHARED_WAIT: Final = 0.1


def shared_probe_time() -> float:
    """When (time.monotonic) a namespace another daemon pins, suspended now, may be probed."""
    wall, now = time.time(), time.monotonic()
    return now + math.ceil(wall / SHARED_SLOT) * SHARED_SLOT - wall + SHARED_WAIT


class PinStore(Protocol):
    """What the registry needs of pins.Pins (unit tests give it fakes)."""

    @property
    def room(self) -> bool: ...

    def open(self, key: NsKey, sightings: list[Sighting], known: Callable[[NsKey], bool]) -> list[Opened]: ...

    def reopen(self, handle: bytes) -> int | None: ...

    def suspend(self, pin: int | None) -> None: ...

    def gone(self, handle: bytes) -> bool: ...

    def resume(self, name: str, pin: int | None, handle: bytes) -> tuple[bool, int | None]: ...

    def close(self, pin: int | None) -> None: ...

    def close_retired(self) -> None: ...

    def retired_due(self) -> float | None: ...


class Registry:
    def __init__(
        self, pins: PinStore, tables: TableStore | None = None, shared_due: Callable[[], float] = shared_probe_time
    ) -> None:
        self._lock = threading.Lock()
        self._pins = pins
        self._shared_due = shared_due
        self._entries: dict[NsKey, Entry] = {}
        self._publisher = _Publisher(self._listing_changed)
        self._holdings = Holdings(self._pinned, self._publisher.changed, self._unheld)
        self._following = Following(tables, self._holdings, self._pin_of)
        self._relations: dict[NsKey, set[Holder]] = {}  # owner-of and parent-of, by the owner or parent
        self._unseen: set[NsKey] = set()  # kept only because the probe found them alive
        # pins dropped, to be probed: (suspension number, not before this time.monotonic)
        self._suspended: dict[NsKey, tuple[int, float]] = {}
        self._suspensions = 0
        self._serial = 0
        self._loose: set[NsKey] = set()  # lost their last direct holder or child: see _settle
        self._pinless: set[NsKey] = set()  # listed without a pin (past the fd limit)
        self.on_suspend: Callable[[], None] = lambda: None  # told when there is something to probe (any thread)
        self.on_listing: Callable[[], None] = lambda: None  # told when a snapshot's entries changed (any thread)

    @property
    def snapshot(self) -> Snapshot:
        return self._publisher.snapshot

    def listed_since(self, generation: int, upto: int) -> set[str] | None:
        """The names whose entries changed after snapshot generation `generation`, up to `upto`;
        None if that is further back than is kept (any thread, no registry lock)."""
        return self._publisher.changes.since(generation, upto)

    def _listing_changed(self) -> None:
        self.on_listing()  # looked up now: set after the registry is made

    # -- what discovery found -------------------------------------------------

    def update(self, reads: Iterable[ProcessRead], swept: bool = False) -> None:
        """Each read replaces what its process held before, unless a later read of it came first.
        `swept`: the reads come from the sweep's reader (holdings.py says why that matters).

        Namespaces that lost their last holder are suspended at once, to be probed
        (`confirm`): a namespace whose last process exited goes without waiting for a sweep.
        """
        with self._lock:
            for read in reads:
                self._holdings.read(read, swept)
            self._settle(probe_unseen=False)

    def touch(self, same: Iterable[tuple[int, float]]) -> list[int]:
        """The sweep's reader found each (pid, read_at) of `same` as it last read it. Returns
        the pids whose kept read may differ from that: the caller reads them again, now."""
        with self._lock:
            stale = [pid for pid, read_at in same if not self._holdings.touch(pid, read_at)]
            self._settle(probe_unseen=False)
        return stale

    def take_dirty(self) -> set[int]:
        """The pids the sweep's reader must forget (and read whole) before its next sweep."""
        with self._lock:
            return self._holdings.take_dirty()

    def refresh_tables(self) -> None:
        """Read again the followed mount tables that changed."""
        with self._lock:
            self._following.refresh()
            self._settle(probe_unseen=False)

    def end_sweep(self, started: float) -> Snapshot:
        """A sweep that began at `started` has read every process: those it did not find
        (nor events since) are gone."""
        with self._lock:
            self._holdings.end_sweep(started)
            return self._settle(probe_unseen=True, whole=True)

    def has_unseen(self) -> bool:
        return bool(self._unseen)

    def has_tasks(self, pid: int) -> bool:
        """Whether a thread of process `pid` holds a namespace its process is not in."""
        return self._holdings.has_tasks(pid)

    def knows(self, pid: int) -> bool:
        """Whether process `pid` was ever read (a lone dict look-up: no lock needed)."""
        return self._holdings.knows(pid)

    def loose_holders(self) -> list[tuple[NsKey, Holder]]:
        """The holders of namespaces no process or thread is in: no event says when they go."""
        with self._lock:
            return self._holdings.loose()

    def reprobe(self) -> Snapshot:
        """Probe again what only the probe keeps: its hidden holder may have gone."""
        with self._lock:
            return self._settle(probe_unseen=True) if self._unseen else self.snapshot

    @property
    def suspensions(self) -> int:
        """How many namespaces have been suspended so far: `confirm` takes it as a bound."""
        return self._suspensions

    def has_suspended(self) -> bool:
        return bool(self._suspended)

    def probe_due(self) -> float | None:
        """When (time.monotonic) the soonest suspended namespace may be probed; None if none is
        suspended. Those other daemons pin wait for a shared moment (`shared_probe_time`)."""
        return min((due for _number, due in self._suspended.values()), default=None)

    def confirm(self, upto: int, began: float = math.inf) -> Snapshot:
        """Probe the namespaces suspended up to suspension number `upto` whose time had come
        when the prober's wait `began`, now that the kernel has finished what dropping the
        daemon's references on them started (see `_suspend`).

        Each is opened again by its handle: if that fails nothing else held it, and it is
        released; if it succeeds something no scan sees holds it, and it stays, `unseen`,
        unless it is only the owner or parent of one that does.
        """
        with self._lock:
            due = [k for k, (number, when) in self._suspended.items() if number <= upto and when <= began]
            alive = {k for k in due if self._resume(k)}
            above = self._closure(r for k in alive for r in (self._entries[k].owner, self._entries[k].parent) if r)
            unseen = (self._unseen - above) | (alive - self._closure(self._holdings.keys()) - above)
            self._publisher.changed(*(unseen ^ self._unseen))
            self._unseen = unseen
            return self._settle(probe_unseen=False)

    def retired_due(self) -> float | None:
        """When (time.monotonic) the oldest number of a released pin may be closed (pins.py)."""
        return self._pins.retired_due()

    def close_retired(self) -> None:
        with self._lock:
            self._pins.close_retired()

    def close(self) -> None:
        """Release every pin."""
        with self._lock:
            for key in list(self._entries):
                self._release(key)
            self._holdings.clear()
            self._unseen.clear()
            self._suspended.clear()
            self._publish()

    def _unheld(self, key: NsKey) -> None:
        """`key` just lost its last direct holder: the next settle looks at it."""
        self._loose.add(key)

    def _pinned(self, key: NsKey, sightings: list[Sighting]) -> bool:
        """Whether `key` is pinned, pinning it through `sightings` if it is new.

        A suspended `key` is probed at once: held again, or a new namespace that got
        the number of a dead one (inode numbers are reused as soon as one is freed, so
        the old one being alive means the sighting is of it).
        """
        if key in self._suspended:
            self._resume(key)
        return key in self._entries or self._pin_first(key, sightings)

    def _resume(self, key: NsKey) -> bool:
        """Probe suspended `key` (see `confirm`): whether it is alive; released if not."""
        entry = self._entries[key]
        assert entry.handle is not None
        found, pin = self._pins.resume(key.name, entry.pin, entry.handle)
        del self._suspended[key]
        self._publisher.changed(key, entries=True)  # its ns back, or the entry gone
        log.debug("probed %s: %s", key.name, "alive" if found else "gone")
        if not found:
            self._forget(key)
        elif pin != entry.pin:
            self._set_pin(key, entry, pin)
        return found

    def _pin_of(self, key: NsKey) -> int | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.pin

    def _settle(self, probe_unseen: bool = False, whole: bool = False) -> Snapshot:
        """Suspend what nothing holds any more, then publish.

        Only namespaces that just lost their last direct holder or their last child are
        looked at (`_loose`): a process coming and going costs the same on a machine
        with ten namespaces or ten thousand. `whole` looks at every entry instead (after
        a sweep); `probe_unseen` suspends what only the probe kept, too. A namespace
        released takes its children's relations and, for a mount namespace, its bind
        mounts with it, which may leave more namespaces unheld: another round.
        """
        held = self._holdings.keys()
        if regained := {k for k in self._unseen if k in held}:  # held by something a scan found
            self._publisher.changed(*regained)
            self._unseen -= regained
        if probe_unseen:
            self._loose |= self._unseen
        if whole:
            live = self._closure(held) | (set() if probe_unseen else self._closure(self._unseen))
            self._loose = {k for k in self._entries if k not in live}
        daemon_pins = self._holdings.daemon_pins()
        while self._loose:
            loose, self._loose = self._loose, set()
            candidates = [
                k
                for k in loose
                if k in self._entries
                and k not in held
                and k not in self._suspended
                and (whole or not self._relations.get(k))  # a child keeps it; its end will tell
                and (probe_unseen or k not in self._unseen)
            ]
            whole = False
            self._suspend(candidates, daemon_pins)
        self._pin_unpinned()
        self._following.follow(self._suspended)
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
            if new.pin is None:
                self._pinless.add(new.key)
            self._following.pinned(new.key)
            for relative, holder in entry.relations():
                self._relations.setdefault(relative, set()).add(holder)
                self._publisher.changed(relative)
        return bool(opened)

    def _pin_unpinned(self) -> None:
        """Give entries listed without a pin one, by handle, as pins free up."""
        for key in list(self._pinless):
            if not self._pins.room:
                return
            entry = self._entries[key]
            if entry.handle is None or key in self._suspended:
                continue
            if (pin := self._pins.reopen(entry.handle)) is not None:
                self._set_pin(key, entry, pin)

    def _set_pin(self, key: NsKey, entry: Entry, pin: int | None) -> None:
        self._entries[key] = dataclasses.replace(entry, pin=pin)
        self._publisher.changed(key, entries=True)
        if pin is None:
            self._pinless.add(key)
        else:
            self._pinless.discard(key)

    def _release(self, key: NsKey) -> None:
        self._following.stop(key)
        self._pins.close(self._forget(key).pin)

    def _forget(self, key: NsKey) -> Entry:
        entry = self._entries.pop(key)
        self._pinless.discard(key)
        self._following.forget(key)
        self._unseen.discard(key)
        self._suspended.pop(key, None)
        self._holdings.forget(key)  # a dead mount namespace has no mounts left
        for relative, holder in entry.relations():
            relations = self._relations.get(relative, set())
            relations.discard(holder)
            if not relations:
                self._relations.pop(relative, None)
                self._loose.add(relative)  # its last child went
            self._publisher.changed(relative)
        self._publisher.changed(key, entries=True)
        log.debug("released %s", key.name)
        return entry

    # -- what is alive --------------------------------------------------------

    def _closure(self, keys: Iterable[NsKey]) -> set[NsKey]:
        return with_ancestors(self._entries, keys)

    def _suspend(self, candidates: list[NsKey], daemon_pins: set[NsKey]) -> None:
        """Drop the daemon's references on namespaces nothing is known to hold, keeping their entries.

        Without file handles the scan's word is final: released at once. The others are
        suspended (pins.py): their pins point at a placeholder until `confirm`, after the
        kernel has had time to release them. A probe that re-opened a namespace at once
        would find it still there, and keep it. One another nsfs daemon pins (or one
        above such a namespace) is probed at a moment every daemon shares
        (`shared_probe_time`), when they have all let go of it.

        One look is taken at once, though, and kept no longer than the look: a namespace
        the kernel frees as soon as its last reference goes (the usual end of one held by
        a bind mount or an fd) cannot be opened then, and is released without waiting.
        """
        pinned_elsewhere = self._closure(daemon_pins)
        for key in candidates:
            entry = self._entries[key]
            if entry.handle is None:
                self._unseen.discard(key)
                self._release(key)
                continue
            self._following.stop(key)
            # Its mounts are not known while its table is not followed: those namespaces are
            # looked at themselves, in another round.
            self._holdings.forget_mounts(key)
            self._pins.suspend(entry.pin)
            if self._pins.gone(entry.handle):
                self._release(key)
                continue
            self._suspensions += 1
            due = self._shared_due() if key in pinned_elsewhere else -math.inf
            self._suspended[key] = (self._suspensions, due)
            self._publisher.changed(key, entries=True)  # shown without its ns until probed
            self.on_suspend()

    # -- publishing -----------------------------------------------------------

    def _holders_of(self, key: NsKey) -> Holders:
        parts: tuple[tuple[Holder, ...], ...] = ()
        if relations := self._relations.get(key):
            parts += (tuple(relations),)
        if key in self._unseen:
            parts += ((UNSEEN,),)
        return Holders(parts, self._holdings.direct(key))

    def _shown(self, key: NsKey) -> Entry | None:
        """Entry `key` as listed; while it is probed, without its `ns` (its pin points at a
        placeholder meanwhile: an `ns` link read just before fails to open, ENXIO, never opens
        the wrong file)."""
        entry = self._entries.get(key)
        if entry is not None and key in self._suspended:
            return dataclasses.replace(entry, pin=None)
        return entry

    def _publish(self) -> Snapshot:
        return self._publisher.publish(self._shown, self._holders_of)


class _Publisher:
    """Turns changes into snapshots: a new one only if anything shown has changed.

    Each snapshot is the last one with what changed changed: the entries and the holders
    of the namespaces something happened to, nothing else (the snapshot's maps are
    immutable and share the rest). A snapshot whose entries did not change keeps its
    generation, and with it the per-user-namespace views worked out for it.
    """

    def __init__(self, on_entries: Callable[[], None]) -> None:
        self.snapshot = EMPTY
        self.changes = _Changes()
        self._on_entries = on_entries
        self._changed: set[NsKey] = set()  # whose holders may differ from the snapshot's
        self._entries_changed: set[NsKey] = set()  # whose entries may
        self._generation = 0

    def changed(self, *keys: NsKey, entries: bool = False) -> None:
        self._changed.update(keys)
        if entries:
            self._entries_changed.update(keys)

    def publish(self, shown: Callable[[NsKey], Entry | None], holders_of: Callable[[NsKey], Holders]) -> Snapshot:
        """`shown(key)`: the entry of `key` as listed now, None if it has none."""
        if not self._changed and not self._entries_changed:
            return self.snapshot
        before = self.snapshot
        changed, self._changed = self._changed, set()
        entries_changed, self._entries_changed = self._entries_changed, set()
        with _map(before.holders).mutate() as holders:
            for key in changed:  # told only of real changes: comparing would cost what building does
                if shown(key) is None:
                    holders.pop(key.name, None)
                else:
                    holders[key.name] = holders_of(key)
            new_holders = holders.finish()
        if entries_changed:
            snapshot = self._with_entries(before, entries_changed, shown, new_holders)
            if snapshot is not None:
                self.snapshot = snapshot
                self._on_entries()
                return snapshot
        if new_holders is not before.holders:
            self.snapshot = dataclasses.replace(before, holders=new_holders)
        return self.snapshot

    def _with_entries(
        self, before: Snapshot, keys: set[NsKey], shown: Callable[[NsKey], Entry | None], holders: Map[str, Holders]
    ) -> Snapshot | None:
        """`before` with the entries of `keys` as shown now; None if none of them changed."""
        entries = _map(before.entries).mutate()
        by_serial = _map(before.by_serial).mutate()
        users = _map(before.users).mutate()
        moved: set[str] = set()
        for key in keys:
            old, new = entries.get(key.name), shown(key)
            if old == new:
                continue
            moved.add(key.name)
            if old is not None:
                del entries[key.name], by_serial[old.serial]
                users.pop(key.name, None)
            if new is not None:
                entries[key.name] = by_serial[new.serial] = new
                if key.type == "user":
                    users[key.name] = new
        if not moved:
            return None
        self._generation += 1
        self.changes.note(self._generation, moved)
        return Snapshot(entries.finish(), by_serial.finish(), holders, self._generation, users.finish())


def _map(mapping: Mapping[_K, _V]) -> Map[_K, _V]:
    """`mapping` as an immutables.Map: the empty snapshot's plain dicts are made one once."""
    return mapping if isinstance(mapping, Map) else Map(mapping)


class _Changes:
    """Which entries each of the last KEPT generations changed: what lets a follower of the
    listing (watchers.py) work out what is new from what changed, not from the whole table."""

    KEPT: Final = 512

    def __init__(self) -> None:
        self._lock = threading.Lock()  # noted under the registry's lock, read from the trio thread
        self._by_generation: dict[int, frozenset[str]] = {}

    def note(self, generation: int, names: Iterable[str]) -> None:
        with self._lock:
            self._by_generation[generation] = frozenset(names)
            self._by_generation.pop(generation - self.KEPT, None)

    def since(self, generation: int, upto: int) -> set[str] | None:
        if upto - generation >= self.KEPT:
            return None  # further back than is kept, however far
        with self._lock:
            if any(g not in self._by_generation for g in range(generation + 1, upto + 1)):
                return None
            return set().union(*(self._by_generation[g] for g in range(generation + 1, upto + 1)))
