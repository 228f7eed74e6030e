"""The table of pinned namespaces, and the immutable snapshots served from it.

The registry owns one O_RDONLY|O_CLOEXEC fd per namespace it lists. A pin keeps
the `type:[inode]` name meaningful (inode numbers are reused once a namespace
dies) and backs the `ns` link; it also keeps the namespace alive, and the daemon
must never be what keeps a namespace alive.

What counts as held: a namespace some process, thread, fd, socket or bind mount
holds, and, up the hierarchy, the owner and parent of every held namespace (the
child keeps them alive in the kernel too). Relations never change for a
namespace, so they are read once, when it is first pinned.

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
from .discovery import Holder, Scan, Sighting, open_namespace
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


@dataclass(frozen=True)
class Snapshot:
    """What the filesystem shows, as of one moment. Never changes once published."""

    entries: Mapping[str, Entry]
    by_serial: Mapping[int, Entry]
    holders: Mapping[str, tuple[Holder, ...]]  # by entry name, in HOLDER_KINDS order
    generation: int

    def get(self, key: NsKey | None) -> Entry | None:
        return None if key is None else self.entries.get(key.name)


EMPTY = Snapshot(entries={}, by_serial={}, holders={}, generation=0)


def _holder_order(holder: Holder) -> tuple[int, int, int, str, str]:
    return (_KIND_RANK[holder.kind], holder.pid, holder.num, holder.text, holder.ns)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[NsKey, Entry] = {}
        self._pinned_at: dict[NsKey, float] = {}  # monotonic time of pinning
        self._seen: dict[NsKey, list[Holder]] = {}  # direct holders found by the last scan or adopt
        self._unseen: set[NsKey] = set()  # kept only because the probe found them alive
        self._serial = 0
        self._generation = 0
        self._dirty = False  # entries changed since the last snapshot
        self._nsfs_dev = kernel.nsfs_device()
        self._pins = 0
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._max_pins = max(0, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else 1 << 30
        self._warned_full = False
        self.snapshot: Snapshot = EMPTY

    # -- merging what discovery found --------------------------------------

    def merge(self, scan: Scan, started: float) -> Snapshot:
        """Pin what `scan` found, probe or release what it no longer finds, publish a snapshot.

        `started` is the monotonic time the scan began: a namespace pinned after
        that (by `adopt`, for a caller) was not there to be seen, so this scan
        cannot release it.
        """
        with self._lock:
            held: set[NsKey] = set()
            seen: dict[NsKey, list[Holder]] = {}
            for key, sightings in scan.found.items():
                if key in self._entries or self._pin_first(key, sightings):
                    held.add(key)
                    seen[key] = [s.holder for s in sightings]
            for key, at in self._pinned_at.items():
                if at > started and key not in held:
                    held.add(key)
                    seen[key] = self._seen.get(key, [])
            self._seen = seen
            live = self._closure(held)
            self._unseen = self._probe([k for k in self._entries if k not in live], live, scan.daemon_pins)
            self._pin_unpinned()
            return self._publish()

    def adopt(self, sightings: Iterable[Sighting]) -> Snapshot:
        """Pin namespaces found outside a scan (a caller's own), keeping everything else."""
        with self._lock:
            for sighting in sightings:
                if sighting.key not in self._entries and self._pin_first(sighting.key, [sighting]):
                    self._seen.setdefault(sighting.key, []).append(sighting.holder)
            return self._publish()

    def close(self) -> None:
        """Release every pin."""
        with self._lock:
            for key in list(self._entries):
                self._release(key)
            self._seen.clear()
            self._unseen.clear()
            self._publish()

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
        self._pinned_at[key] = time.monotonic()
        self._dirty = True

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
        del self._pinned_at[key]
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

    def _holders(self) -> dict[str, tuple[Holder, ...]]:
        by_name: dict[str, set[Holder]] = {e.name: set() for e in self._entries.values()}
        for key, holders in self._seen.items():
            if key.name in by_name:
                by_name[key.name].update(holders)
        for entry in self._entries.values():
            if entry.owner is not None and entry.owner.name in by_name:
                kind = "parent-of" if entry.key.type == "user" else "owner-of"
                by_name[entry.owner.name].add(Holder(kind, ns=entry.name))
            if entry.key.type == "pid" and entry.parent is not None and entry.parent.name in by_name:
                by_name[entry.parent.name].add(Holder("parent-of", ns=entry.name))
        for key in self._unseen:
            if key.name in by_name:
                by_name[key.name].add(UNSEEN)
        return {name: tuple(sorted(holders, key=_holder_order)) for name, holders in by_name.items()}

    def _publish(self) -> Snapshot:
        """A new snapshot if anything shown has changed; the current one otherwise.

        An unchanged snapshot keeps the per-user-namespace views worked out from it.
        """
        holders = self._holders()
        if not self._dirty and holders == self.snapshot.holders:
            return self.snapshot
        self._dirty = False
        self._generation += 1
        entries = {e.name: e for e in self._entries.values()}
        self.snapshot = Snapshot(
            entries=entries,
            by_serial={e.serial: e for e in entries.values()},
            holders=holders,
            generation=self._generation,
        )
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
