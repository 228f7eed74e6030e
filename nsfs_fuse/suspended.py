"""The probe's state: which namespaces are suspended (the daemon's references dropped, to be
probed once the kernel has let go) and from when each may be, and which the probe keeps
(`unseen`: alive, though nothing a scan sees holds them). What a probe does is the
registry's (`Registry.confirm`); when it runs, probing.py's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, KeysView
from typing import Final, NamedTuple

from .entries import Changed, Entries, PinStore
from .model import Entry, NsKey

log = logging.getLogger(__name__)

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


class Probed(NamedTuple):
    """What suspending and probing act on (the registry's, passed in)."""

    pins: PinStore
    entries: Entries
    changed: Changed  # told whose entries (entries=True) or holders changed
    release: Callable[[NsKey], None]  # the entry and its pin, at once
    forget: Callable[[NsKey], Entry]  # the entry; its pin is closed already
    stop_following: Callable[[NsKey], None]  # its mount table, while it is probed


class Suspended:
    """The suspended namespaces, each with its suspension number and the time (time.monotonic)
    before which it is not probed; and the `unseen` ones the probe keeps. Suspending and
    probing one (under the registry's lock)."""

    def __init__(
        self,
        probed: Probed,
        shared_due: Callable[[], float] = shared_probe_time,
        on_suspend: Callable[[], None] = lambda: None,
    ) -> None:
        self._of = probed
        self._shared_due = shared_due
        self._on_suspend = on_suspend  # told when there is something to probe (any thread)
        self._due: dict[NsKey, tuple[int, float]] = {}
        self.count = 0  # how many have been suspended so far: `Registry.confirm` takes it as a bound
        self.unseen: set[NsKey] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __bool__(self) -> bool:
        return bool(self._due)

    def keys(self) -> KeysView[NsKey]:
        return self._due.keys()

    def suspend(self, candidates: list[NsKey], pinned_elsewhere: set[NsKey]) -> None:
        """Drop the daemon's references on namespaces nothing is known to hold, keeping their entries.

        Without file handles the scan's word is final: released at once. The others are
        suspended (pins.py): their pins point at a placeholder until `Registry.confirm`, after
        the kernel has had time to release them. A probe that re-opened a namespace at once
        would find it still there, and keep it. One another nsfs daemon pins (or one
        above such a namespace: `pinned_elsewhere`) is probed at a moment every daemon shares
        (`shared_probe_time`), when they have all let go of it.

        One look is taken at once, though, and kept no longer than the look: a namespace
        the kernel frees as soon as its last reference goes (the usual end of one held by
        a bind mount or an fd) cannot be opened then, and is released without waiting.
        """
        of = self._of
        for key in candidates:
            entry = of.entries[key]
            if entry.handle is None:
                self.unseen.discard(key)
                of.release(key)
                continue
            of.stop_following(key)
            of.pins.suspend(entry.pin)
            if of.pins.gone(entry.handle):
                of.release(key)
                continue
            self.count += 1
            self._due[key] = (self.count, self._shared_due() if key in pinned_elsewhere else -math.inf)
            of.changed(key, entries=True)  # shown without its ns until probed
            self._on_suspend()

    def resume(self, key: NsKey) -> bool:
        """Probe suspended `key` (see `Registry.confirm`): whether it is alive; released if not."""
        of = self._of
        entry = of.entries[key]
        assert entry.handle is not None
        found, pin = of.pins.resume(key.name, entry.pin, entry.handle)
        del self._due[key]
        of.changed(key, entries=True)  # its ns back, or the entry gone
        log.debug("probed %s: %s", key.name, "alive" if found else "gone")
        if not found:
            of.forget(key)
        elif pin != entry.pin:
            of.entries.set_pin(key, pin)
        return found

    def forget(self, key: NsKey) -> None:
        """`key` is released: nothing of it is kept."""
        self._due.pop(key, None)
        self.unseen.discard(key)

    def due(self, upto: int, began: float) -> list[NsKey]:
        """Those suspended up to number `upto` whose time had come at `began`."""
        return [k for k, (number, when) in self._due.items() if number <= upto and when <= began]

    def soonest(self) -> float | None:
        """When the soonest may be probed; None if none is suspended. Safe from any thread
        without the registry's lock (the prober asks from the loop): the values are copied at
        once, never iterated while a worker thread may suspend or release one."""
        return min((when for _number, when in list(self._due.values())), default=None)

    def clear(self) -> None:
        self._due.clear()
        self.unseen.clear()
