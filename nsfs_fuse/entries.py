"""The pinned namespaces: each one's entry (pin, handle, owner, parent, ...), the relations
it gives its owner and parent (`owner-of`, `parent-of` holders), and pins for entries listed
without one (past the fd limit) as pins free up. What is alive, and when an entry goes, is
the registry's to decide; this only keeps what it decided, and tells `changed` what it changed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Protocol

from .model import Entry, Holder, NsKey, Opened, Sighting, with_ancestors

log = logging.getLogger(__name__)


class PinStore(Protocol):
    """What the registry needs of pins.Pins (unit tests give it fakes)."""

    @property
    def room(self) -> bool: ...

    def open(self, key: NsKey, sightings: list[Sighting], known: Callable[[NsKey], bool]) -> list[Opened]: ...

    def open_listed(self, handle: bytes, known: Callable[[NsKey], bool]) -> tuple[NsKey | None, list[Opened]]: ...

    def reopen(self, handle: bytes) -> int | None: ...

    def suspend(self, pin: int | None) -> None: ...

    def gone(self, handle: bytes) -> bool: ...

    def resume(self, name: str, pin: int | None, handle: bytes) -> tuple[bool, int | None]: ...

    def close(self, pin: int | None) -> None: ...

    def close_retired(self) -> None: ...

    def retired_due(self) -> float | None: ...


class Changed(Protocol):
    def __call__(self, *keys: NsKey, entries: bool = False) -> None: ...


class Entries:
    def __init__(self, pins: PinStore, changed: Changed) -> None:
        self._pins = pins
        self._changed = changed  # told whose entries (entries=True) or holders changed
        self._entries: dict[NsKey, Entry] = {}
        self._relations: dict[NsKey, set[Holder]] = {}  # owner-of and parent-of, by the owner or parent
        self._pinless: set[NsKey] = set()  # listed without a pin (past the fd limit)
        self._ids: dict[int, NsKey] = {}  # by NS_GET_ID, where the kernel has it
        self._serial = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __getitem__(self, key: NsKey) -> Entry:
        return self._entries[key]

    def __iter__(self) -> Iterator[NsKey]:
        return iter(self._entries)

    def get(self, key: NsKey) -> Entry | None:
        return self._entries.get(key)

    def knows_id(self, ns_id: int) -> bool:
        """Whether the namespace with id `ns_id` has an entry (a lone dict look-up: any thread)."""
        return ns_id in self._ids

    def pin_of(self, key: NsKey) -> int | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.pin

    def relations(self, key: NsKey) -> set[Holder] | None:
        """The `owner-of` and `parent-of` holders of `key`: its children, which keep it alive."""
        return self._relations.get(key)

    def closure(self, keys: Iterable[NsKey]) -> set[NsKey]:
        """`keys` and every entry above them (owners and parents)."""
        return with_ancestors(self._entries, keys)

    def pin_first(self, key: NsKey, sightings: list[Sighting]) -> list[NsKey]:
        """Pin `key` (and its new owner and parent) through the first sighting that still leads
        to it: the keys pinned, none if no sighting did."""
        return self._add(self._pins.open(key, sightings, self._entries.__contains__))

    def pin_listed(self, handle: bytes) -> tuple[NsKey | None, list[NsKey]]:
        """Pin the namespace `handle` names (the kernel listed it) if it is new, with its new
        owner and parent: its key (None if it is gone), and the keys pinned."""
        key, opened = self._pins.open_listed(handle, self._entries.__contains__)
        return key, self._add(opened)

    def _add(self, opened: list[Opened]) -> list[NsKey]:
        for new in opened:
            self._serial += 1
            entry = Entry(serial=self._serial, first_seen_ns=time.time_ns(), **new._asdict())
            self._entries[new.key] = entry
            if new.ns_id is not None:
                self._ids[new.ns_id] = new.key
            self._changed(new.key, entries=True)
            if new.pin is None:
                self._pinless.add(new.key)
            for relative, holder in entry.relations():
                self._relations.setdefault(relative, set()).add(holder)
                self._changed(relative)
        return [new.key for new in opened]

    def pin_unpinned(self, suspended: Container[NsKey]) -> None:
        """Give entries listed without a pin one, by handle, as pins free up (not those
        `suspended`: their pins come back when they are probed)."""
        for key in list(self._pinless):
            if not self._pins.room:
                return
            entry = self._entries[key]
            if entry.handle is None or key in suspended:
                continue
            if (pin := self._pins.reopen(entry.handle)) is not None:
                self.set_pin(key, pin)

    def set_pin(self, key: NsKey, pin: int | None) -> None:
        self._entries[key] = dataclasses.replace(self._entries[key], pin=pin)
        self._changed(key, entries=True)
        if pin is None:
            self._pinless.add(key)
        else:
            self._pinless.discard(key)

    def forget(self, key: NsKey) -> tuple[Entry, list[NsKey]]:
        """Drop entry `key` (its pin is the caller's to close): the entry, and the relatives
        that lost their last child with it."""
        entry = self._entries.pop(key)
        self._pinless.discard(key)
        if entry.ns_id is not None:
            self._ids.pop(entry.ns_id, None)
        orphaned = []
        for relative, holder in entry.relations():
            relations = self._relations.get(relative, set())
            relations.discard(holder)
            if not relations:
                self._relations.pop(relative, None)
                orphaned.append(relative)
            self._changed(relative)
        self._changed(key, entries=True)
        log.debug("released %s", key.name)
        return entry, orphaned
