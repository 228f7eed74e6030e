"""The table of pinned namespaces, and the immutable snapshots served from it.

The registry owns one O_RDONLY|O_CLOEXEC fd per namespace it lists. A pin keeps
the `type:[inode]` name meaningful (inode numbers are reused once a namespace
dies) and backs the `ns` link; it also keeps the namespace alive, and the daemon
must never be what keeps a namespace alive.

What counts as held: a namespace some process, thread, fd, socket or bind mount
holds, and, up the hierarchy, the owner and parent of every held namespace (the
child keeps them alive in the kernel too). Relations never change for a
namespace, so they are read once, when it is first pinned.

What each process holds is kept per pid, as the latest `ProcessRead` of it
delivered: a process event or a sweep reads a process again, and that read
replaces the last one whole. Bind mounts are replaced by each completed sweep.

A namespace no scan finds held may still be alive through something no scan can
see (an fd in flight in a unix socket, a kernel reference). Where the kernel has
nsfs file handles, the registry closes its pin and re-opens the namespace by
handle: that only succeeds while something else holds it (design.md section 3).

All mutation happens under one lock, in a worker thread; FUSE handlers only read
`Registry.snapshot`, which is replaced whole.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import kernel
from .discovery import Holder, ProcessRead, Scan, Sighting, open_namespace
from .kernel import NsKey

log = logging.getLogger("nsfs")

# The order holders are listed in.
HOLDER_KINDS = ("process", "task", "for-children", "fd", "socket", "mount", "owner-of", "parent-of", "unseen")
_KIND_RANK = {kind: rank for rank, kind in enumerate(HOLDER_KINDS)}
UNSEEN = Holder("unseen")

# fds the daemon keeps free for FUSE, scans, helpers and the ioctls that read a new
# namespace; pins stop short of the limit by this much.
FD_RESERVE = 64


@dataclass(frozen=True, slots=True)
class Entry:
    """One pinned namespace. Immutable: a new namespace with a recycled inode gets a new Entry."""

    key: NsKey
    serial: int  # never reused while the daemon runs; FUSE inodes derive from it
    pin: int | None  # the daemon's fd on the namespace; None past the fd limit (no `ns` link then)
    handle: bytes | None  # its nsfs file handle, on kernels that have them
    ns_id: int | None  # NS_GET_ID, on kernels that have it
    owner: NsKey | None  # owning user namespace (None for the initial one)
    parent: NsKey | None  # pid and user namespaces only
    creator_uid: int | None  # user namespaces only: NS_GET_OWNER_UID, a uid of the initial userns
    first_seen_ns: int  # wall clock, for mtime

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def anchor(self) -> NsKey | None:
        """The user namespace that decides who may see this entry."""
        return self.key if self.key.type == "user" else self.owner


def _holder_order(holder: Holder) -> tuple[int, int, int, str, str]:
    return (_KIND_RANK[holder.kind], holder.pid, holder.num, holder.text, holder.ns)


class Holders:
    """What holds one namespace, as of one snapshot: put in order only when someone reads it.

    An initial namespace has a holder per process; sorting thousands of them
    every time a process comes or goes would cost more than following it.
    """

    __slots__ = ("_parts", "_sorted")

    def __init__(self, parts: tuple[tuple[Holder, ...], ...]) -> None:
        self._parts = parts
        self._sorted: tuple[Holder, ...] | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Holders) and self._parts == other._parts

    def __hash__(self) -> int:
        return hash(self._parts)

    def ordered(self) -> tuple[Holder, ...]:
        """Each holder once, in HOLDER_KINDS order, then by pid and number."""
        if self._sorted is None:
            self._sorted = tuple(sorted({h for part in self._parts for h in part}, key=_holder_order))
        return self._sorted


@dataclass(frozen=True)
class Snapshot:
    """What the filesystem shows, as of one moment. Never changes once published."""

    entries: Mapping[str, Entry]
    by_serial: Mapping[int, Entry]
    holders: Mapping[str, Holders]  # by entry name
    generation: int  # changes when entries do (not when only holders do): views depend on nothing else

    def get(self, key: NsKey | None) -> Entry | None:
        return None if key is None else self.entries.get(key.name)


EMPTY = Snapshot(entries={}, by_serial={}, holders={}, generation=0)


@dataclass(slots=True)
class _Process:
    read_at: float  # of the read this state came from
    keys: set[NsKey]  # what it holds (a tombstone, for a process that is gone, holds nothing)


MOUNTS = 0  # the pid bind-mount holders are kept under: no process has pid 0


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[NsKey, Entry] = {}
        # Direct holders of each namespace, by the pid that holds it (MOUNTS for bind mounts).
        self._held: dict[NsKey, dict[int, tuple[Holder, ...]]] = {}
        self._processes: dict[int, _Process] = {}
        self._daemons: dict[int, frozenset[NsKey]] = {}  # other nsfs daemons and what they pin
        self._relations: dict[NsKey, set[Holder]] = {}  # owner-of and parent-of, by the owner or parent
        self._unseen: set[NsKey] = set()  # kept only because the probe found them alive
        self._changed: set[NsKey] = set()  # whose holders may differ from the snapshot's
        self._serial = 0
        self._generation = 0
        self._dirty = False  # entries changed since the last snapshot
        self._nsfs_dev = kernel.nsfs_device()
        self._pins = 0
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._max_pins = max(0, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else 1 << 30
        self._warned_full = False
        self.snapshot: Snapshot = EMPTY

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
                keys = self._replace(read.pid, read.sightings, set() if state is None else state.keys)
                self._processes[read.pid] = _Process(read.read_at, keys)
            before = self._unseen
            self._settle(probe_unseen=False)
            return not self._unseen <= before

    def end_sweep(self, mounts: Scan, started: float) -> Snapshot:
        """A sweep that began at `started` has read every process: the bind mounts it found
        replace the last sweep's, and processes it did not find (nor events since) are gone."""
        with self._lock:
            for pid in [pid for pid, state in self._processes.items() if state.read_at < started]:
                self._replace(pid, (), self._processes.pop(pid).keys)
                self._daemons.pop(pid, None)
            found = [s for sightings in mounts.found.values() for s in sightings]
            self._replace(MOUNTS, found, {k for k, by_pid in self._held.items() if MOUNTS in by_pid})
            return self._settle(probe_unseen=True)

    def adopt(self, sightings: Iterable[Sighting]) -> Snapshot:
        """Pin namespaces found outside a sweep (a caller's own), keeping everything else."""
        with self._lock:
            now = time.monotonic()
            for sighting in sightings:
                key, pid = sighting.key, sighting.holder.pid
                if key in self._entries or not self._pin_first(key, [sighting]):
                    continue
                self._hold(key, pid, (sighting.holder,))
                state = self._processes.setdefault(pid, _Process(now, set()))
                state.read_at = now  # newer than any read of it still on its way
                state.keys.add(key)
            return self._publish()

    def has_unseen(self) -> bool:
        return bool(self._unseen)

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
            self._daemons.clear()
            self._unseen.clear()
            self._publish()

    def _replace(self, pid: int, sightings: Iterable[Sighting], before: set[NsKey]) -> set[NsKey]:
        """Make `sightings` all that `pid` holds; the keys it holds now."""
        by_key: dict[NsKey, list[Sighting]] = {}
        for sighting in sightings:
            by_key.setdefault(sighting.key, []).append(sighting)
        now: set[NsKey] = set()
        for key, found in by_key.items():
            if key in self._entries or self._pin_first(key, found):
                self._hold(key, pid, tuple(s.holder for s in found))
                now.add(key)
        for key in before - now:
            by_pid = self._held.get(key)
            if by_pid is not None and by_pid.pop(pid, None) is not None:
                self._changed.add(key)
                if not by_pid:
                    del self._held[key]  # the next settle probes it
        return now

    def _hold(self, key: NsKey, pid: int, holders: tuple[Holder, ...]) -> None:
        by_pid = self._held.setdefault(key, {})
        if by_pid.get(pid) != holders:
            by_pid[pid] = holders
            self._changed.add(key)

    def _settle(self, probe_unseen: bool) -> Snapshot:
        """Probe what nothing holds any more (and, if asked, what only the probe kept), then publish."""
        live = self._closure(self._held)
        kept = set() if probe_unseen else {k for k in self._unseen if k in self._entries and k not in live}
        candidates = [k for k in self._entries if k not in live and k not in kept]
        daemon_pins: set[NsKey] = set().union(*self._daemons.values())
        unseen = kept | self._probe(candidates, live | kept, daemon_pins)
        self._changed.update(unseen ^ self._unseen)
        self._unseen = unseen
        self._pin_unpinned()
        return self._publish()

    # -- pinning ------------------------------------------------------------

    def _pin_first(self, key: NsKey, sightings: list[Sighting]) -> bool:
        """Open the namespace through the first sighting that still leads to it."""
        for sighting in sightings:
            try:
                fd = open_namespace(sighting)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EBADF):
                    continue  # the holder went away since the scan read it
                raise
            try:
                found = kernel.key_of_fd(fd, self._nsfs_dev)
            except OSError:
                os.close(fd)
                continue
            if found != key:  # the process moved to another namespace meanwhile
                os.close(fd)
                continue
            self._pin(key, fd)
            return True
        return False

    def _pin(self, key: NsKey, fd: int) -> None:
        """Take ownership of `fd` as the pin for `key`, and pin its owner and parent too."""
        try:
            fd, handle = _detached(fd)
            owner = self._relative(fd, kernel.get_userns)
            if key.type == "user":
                parent = owner  # NS_GET_PARENT is NS_GET_USERNS for user namespaces
            elif key.type in kernel.HIERARCHICAL:
                parent = self._relative(fd, kernel.get_parent)
            else:
                parent = None
            ns_id = kernel.get_ns_id(fd)
            creator_uid = kernel.get_owner_uid(fd) if key.type == "user" else None
        except BaseException:
            os.close(fd)
            raise
        pin = self._keep(fd)
        self._serial += 1
        self._entries[key] = Entry(
            key=key,
            serial=self._serial,
            pin=pin,
            handle=handle,
            ns_id=ns_id,
            owner=owner,
            parent=parent,
            creator_uid=creator_uid,
            first_seen_ns=time.time_ns(),
        )
        self._changed.add(key)
        for relative, holder in self._relations_of(self._entries[key]):
            self._relations.setdefault(relative, set()).add(holder)
            self._changed.add(relative)
        self._dirty = True

    @staticmethod
    def _relations_of(entry: Entry) -> list[tuple[NsKey, Holder]]:
        """What `entry` adds to the holders of its owner and parent."""
        relations = []
        if entry.owner is not None:
            kind = "parent-of" if entry.key.type == "user" else "owner-of"
            relations.append((entry.owner, Holder(kind, ns=entry.name)))
        if entry.key.type == "pid" and entry.parent is not None:
            relations.append((entry.parent, Holder("parent-of", ns=entry.name)))
        return relations

    def _relative(self, fd: int, ioctl: Callable[[int], int]) -> NsKey | None:
        """Key of the namespace an NS_GET_* ioctl returns, pinning it if it is new."""
        try:
            rel_fd = ioctl(fd)
        except OSError as exc:
            if exc.errno == errno.EPERM:  # above the daemon's own namespaces: the top
                return None
            raise
        try:
            key = kernel.key_of_fd(rel_fd, self._nsfs_dev)
        except OSError:
            os.close(rel_fd)
            raise
        if key in self._entries:
            os.close(rel_fd)
        else:
            self._pin(key, rel_fd)
        return key

    def _keep(self, fd: int) -> int | None:
        """`fd` as a pin, or None (and `fd` closed) once pins would crowd out everything else.

        Past the limit a namespace is still listed, from what was read while the fd
        was open; it has no `ns` link until a pin is free again.
        """
        if self._pins < self._max_pins:
            self._pins += 1
            return fd
        os.close(fd)
        if not self._warned_full:
            self._warned_full = True
            log.warning(
                "fd limit reached (%d pins): further namespaces are listed without an ns link",
                self._pins,
            )
        return None

    def _unpin(self, entry: Entry) -> None:
        if entry.pin is not None:
            os.close(entry.pin)
            self._pins -= 1

    def _pin_unpinned(self) -> None:
        """Give entries listed without a pin one, by handle, as pins free up."""
        for key, entry in list(self._entries.items()):
            if self._pins >= self._max_pins:
                return
            if entry.pin is None and entry.handle is not None:
                try:
                    fd = kernel.open_ns_handle(entry.handle)
                except OSError:
                    continue  # gone: the next scan drops it
                self._entries[key] = dataclasses.replace(entry, pin=self._keep(fd))
                self._dirty = True

    def _release(self, key: NsKey) -> None:
        self._unpin(self._forget(key))

    def _forget(self, key: NsKey) -> Entry:
        entry = self._entries.pop(key)
        for relative, holder in self._relations_of(entry):
            relations = self._relations.get(relative, set())
            relations.discard(holder)
            if not relations:
                self._relations.pop(relative, None)
            self._changed.add(relative)
        self._held.pop(key, None)
        self._changed.add(key)
        self._dirty = True
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
            self._unpin(entry)
            try:
                fd = kernel.open_ns_handle(entry.handle)
            except OSError as exc:
                self._forget(key)
                if exc.errno not in (errno.ESTALE, errno.ENOENT):
                    log.warning("probe of %s failed: %s; released", key.name, exc.strerror)
                continue
            pin = self._keep(fd)
            if pin != entry.pin:  # usually the number just closed comes back: nothing to publish
                self._entries[key] = dataclasses.replace(entry, pin=pin)
                self._dirty = True
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
        """A new snapshot if anything shown has changed; the current one otherwise.

        Only the holders of namespaces something happened to are gathered again.
        A snapshot whose entries did not change keeps its generation, and with it
        the per-user-namespace views worked out for it.
        """
        changed, self._changed = self._changed, set()
        holders = dict(self.snapshot.holders)
        holders_changed = False
        for key in changed:
            if key not in self._entries:
                holders_changed |= holders.pop(key.name, None) is not None
            elif holders.get(key.name) != (now := self._holders_of(key)):
                holders[key.name] = now
                holders_changed = True
        if self._dirty:
            self._dirty = False
            self._generation += 1
            entries = {e.name: e for e in self._entries.values()}
            self.snapshot = Snapshot(entries, {e.serial: e for e in entries.values()}, holders, self._generation)
        elif holders_changed:
            self.snapshot = dataclasses.replace(self.snapshot, holders=holders)
        return self.snapshot


def _detached(fd: int) -> tuple[int, bytes | None]:
    """Re-open `fd` through its file handle, so that it holds the namespace and nothing else.

    An fd opened through a bind mount, or through /proc/PID/fd/N of a process that
    opened one, holds that mount too: `umount` would fail with EBUSY for as long as
    the daemon pinned it, and the namespace could never be released. Opened by
    handle, the fd refers to the kernel's own nsfs mount. Without handles (before
    Linux 6.18), the path's fd is kept and such a mount stays busy while pinned.
    """
    handle = kernel.ns_handle(fd)
    if handle is None:
        return fd, None
    try:
        clean = kernel.open_ns_handle(handle)
    except OSError as exc:
        if exc.errno in kernel.NO_HANDLES:
            return fd, handle
        raise
    os.close(fd)
    return clean, handle
