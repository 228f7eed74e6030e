"""Publishing: changes of the registry turned into snapshots, each the last one with what
changed changed (docs/design.md, "Data flow", step 6), and which names each generation
changed, for followers of the listing (events_socket.py).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeVar

from immutables import Map

from .model import EMPTY, Entry, Holders, NsKey, Snapshot

_K = TypeVar("_K")
_V = TypeVar("_V")


class Publisher:
    """Turns changes into snapshots: a new one only if anything shown has changed.

    Each snapshot is the last one with what changed changed: the entries and the holders
    of the namespaces something happened to, nothing else (the snapshot's maps are
    immutable and share the rest). A snapshot whose entries did not change keeps its
    generation, and with it the per-user-namespace views worked out for it.
    """

    def __init__(self, on_entries: Callable[[], None]) -> None:
        self.snapshot = EMPTY
        self.changes = Changes()
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


class Changes:
    """Which entries each of the last KEPT generations changed: what lets a follower of the
    listing (events_socket.py) work out what is new from what changed, not from the whole table."""

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
