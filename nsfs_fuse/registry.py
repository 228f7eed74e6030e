"""The table of pinned namespaces, and the immutable snapshots served from it.

What counts as held: a namespace some process, thread, fd, socket or bind mount
holds, and, up the hierarchy, the owner and parent of every held namespace (the
child keeps them alive in the kernel too). Relations never change for a
namespace, so they are read once, when it is first pinned (pins.py).

What each process holds is kept per pid, as the latest `ProcessRead` of it
delivered: a process event or a sweep reads a process again, and that read
replaces the last one whole. Bind mounts are kept per mount namespace, as the
latest read of its mount table: the table of every mount namespace something
holds is followed (mount_tables.py), and each change of it replaces them.

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
from collections.abc import Callable, Iterable

from .entries import Entries, PinStore
from .errors import Skip
from .followed_tables import Following, TableStore
from .holdings import Holdings
from .model import (
    UNSEEN,
    Entry,
    Holder,
    Holders,
    Listing,
    NsKey,
    ProcessRead,
    Sighting,
    Snapshot,
)
from .publisher import Publisher
from .suspended import Probed, Suspended, shared_probe_time

log = logging.getLogger(__name__)


class Registry:
    def __init__(
        self,
        pins: PinStore,
        tables: TableStore | None = None,
        shared_due: Callable[[], float] = shared_probe_time,
        on_suspend: Callable[[], None] = lambda: None,
        on_listing: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_suspend` is told when there is something to probe, `on_listing` when a snapshot's
        entries changed (from any thread: each rings an alarm of the trio loop)."""
        self._lock = threading.Lock()
        self._pins = pins
        self._publisher = Publisher(on_listing)
        self._entries = Entries(pins, self._publisher.changed)
        self._holdings = Holdings(self._pinned, self._publisher.changed, self._unheld)
        self._following = Following(tables, self._holdings, self._entries.pin_of)
        self._loose: set[NsKey] = set()  # lost their last direct holder or child: see _settle
        # Pins dropped, to be probed; and what the probe keeps.
        self._suspended = Suspended(
            Probed(pins, self._entries, self._publisher.changed, self._release, self._forget, self._stop_following),
            shared_due,
            on_suspend,
        )

    @property
    def snapshot(self) -> Snapshot:
        return self._publisher.snapshot

    def listed_since(self, generation: int, upto: int) -> set[str] | None:
        """The names whose entries changed after snapshot generation `generation`, up to `upto`;
        None if that is further back than is kept (any thread, no registry lock)."""
        return self._publisher.changes.since(generation, upto)

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

    def knows_id(self, ns_id: int) -> bool:
        """Whether the namespace with id `ns_id` has an entry (a lone dict look-up: no lock needed)."""
        return self._entries.knows_id(ns_id)

    def listed(self, listed: Iterable[tuple[int, bytes]]) -> Listing:
        """Namespaces the kernel lists as in use (listns), each an (id, handle): those the index
        lacks are pinned and listed at once (one it has is never opened: a reference taken
        while it waits for its probe could make the probe find it alive). One that nothing
        read holds, nor is it the owner or parent of such a one, is kept as the probe keeps
        what it finds alive, `unseen`, until a read names a holder (an fd in flight is never
        named); the probe goes on judging it, as it judges every such namespace. Returns
        those `unseen` (the caller looks for a process in them), and the ids whose pinning met
        a fault: nothing else names them, so they are tried again."""
        with self._lock:
            alive, again = set(), []
            for ns_id, handle in listed:
                if self._entries.knows_id(ns_id):
                    continue
                try:
                    key, pinned = self._entries.pin_listed(handle)
                    if key is not None and not pinned and key in self._suspended:
                        # A new namespace with a suspended one's inode number: that one is
                        # probed now (as a read's sighting does), then this one pinned.
                        self._suspended.resume(key)
                        key, pinned = self._entries.pin_listed(handle)
                except Skip:
                    again.append(ns_id)
                    continue
                for new in pinned:
                    self._following.pinned(new)
                if key in pinned:
                    alive.add(key)
            self._found_alive(alive)
            return Listing(unseen=sorted(alive & self._suspended.unseen), again=again)

    def end_sweep(self, started: float) -> Snapshot:
        """A sweep that began at `started` has read every process: those it did not find
        (nor events since) are gone."""
        with self._lock:
            self._holdings.end_sweep(started)
            return self._settle(probe_unseen=True, whole=True)

    def has_unseen(self) -> bool:
        return bool(self._suspended.unseen)

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
            return self._settle(probe_unseen=True) if self._suspended.unseen else self.snapshot

    @property
    def suspensions(self) -> int:
        """How many namespaces have been suspended so far: `confirm` takes it as a bound."""
        return self._suspended.count

    def has_suspended(self) -> bool:
        return bool(self._suspended)

    def probe_due(self) -> float | None:
        """When (time.monotonic) the soonest suspended namespace may be probed; None if none is
        suspended. Those other daemons pin wait for a shared moment (`shared_probe_time`).
        Asked from the loop, without the lock (a sweep's chunk may hold it)."""
        return self._suspended.soonest()

    def confirm(self, upto: int, began: float = math.inf) -> Snapshot:
        """Probe the namespaces suspended up to suspension number `upto` whose time had come
        when the prober's wait `began`, now that the kernel has finished what dropping the
        daemon's references on them started (see `_suspend`).

        Each is opened again by its handle: if that fails nothing else held it, and it is
        released; if it succeeds something no scan sees holds it, and it stays, `unseen`,
        unless it is only the owner or parent of one that does.
        """
        with self._lock:
            due = self._suspended.due(upto, began)
            return self._found_alive({k for k in due if self._suspended.resume(k)})

    def _found_alive(self, alive: set[NsKey]) -> Snapshot:
        """The kernel says `alive` is in use (a probe opened it, or listns listed it): what no
        read holds is kept `unseen`, unless it is only the owner or parent of such a one (its
        child keeps it, and an earlier `unseen` owner or parent stops being one); then settle."""
        above = self._closure(r for k in alive for r in (self._entries[k].owner, self._entries[k].parent) if r)
        before = self._suspended.unseen
        unseen = (before - above) | (alive - self._closure(self._holdings.keys()) - above)
        self._publisher.changed(*(unseen ^ before))
        self._suspended.unseen = unseen
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
            self._suspended.resume(key)
        if key in self._entries:
            return True
        pinned = self._entries.pin_first(key, sightings)
        for new in pinned:
            self._following.pinned(new)
        return bool(pinned)

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
        unseen = self._suspended.unseen
        if regained := {k for k in unseen if k in held}:  # held by something a scan found
            self._publisher.changed(*regained)
            unseen -= regained
        if probe_unseen:
            self._loose |= unseen
        if whole:
            live = self._closure(held) | (set() if probe_unseen else self._closure(unseen))
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
                and (whole or not self._entries.relations(k))  # a child keeps it; its end will tell
                and (probe_unseen or k not in unseen)
            ]
            whole = False
            self._suspended.suspend(candidates, self._closure(daemon_pins))
        self._entries.pin_unpinned(self._suspended)
        self._following.follow(self._suspended.keys())
        return self._publish()

    # -- what is alive --------------------------------------------------------

    def _closure(self, keys: Iterable[NsKey]) -> set[NsKey]:
        return self._entries.closure(keys)

    def _release(self, key: NsKey) -> None:
        self._following.stop(key)
        self._pins.close(self._forget(key).pin)

    def _stop_following(self, key: NsKey) -> None:
        """`key` is about to be probed: its mount table's reader would hold it, and its mounts
        are not known meanwhile (those namespaces are looked at themselves, in another round)."""
        self._following.stop(key)
        self._holdings.forget_mounts(key)

    def _forget(self, key: NsKey) -> Entry:
        entry, orphaned = self._entries.forget(key)
        self._following.forget(key)
        self._suspended.forget(key)
        self._holdings.forget(key)  # a dead mount namespace has no mounts left
        self._loose.update(orphaned)  # their last child went
        return entry

    # -- publishing -----------------------------------------------------------

    def _holders_of(self, key: NsKey) -> Holders:
        parts: tuple[tuple[Holder, ...], ...] = ()
        if relations := self._entries.relations(key):
            parts += (tuple(relations),)
        if key in self._suspended.unseen:
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
