"""The table of pinned namespaces, and the immutable snapshots served from it.

The registry owns one O_RDONLY|O_CLOEXEC fd per namespace it lists. A pin keeps
the `type:[inode]` name meaningful (inode numbers are reused once a namespace
dies) and backs the `ns` link; it also keeps the namespace alive, so a pin is
released as soon as a scan finds no holder other than the daemon itself.

What counts as held: a namespace some process, thread, fd or bind mount holds,
and, up the hierarchy, the owner and parent of every held namespace (the child
keeps them alive in the kernel too). Relations never change for a namespace, so
they are read once, when it is first pinned.

All mutation happens under one lock, in a worker thread; FUSE handlers only read
`Registry.snapshot`, which is replaced whole.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import kernel
from .discovery import Scan, Sighting
from .kernel import NsKey

log = logging.getLogger("nsfs")


@dataclass(frozen=True, slots=True)
class Entry:
    """One pinned namespace. Immutable: a new namespace with a recycled inode gets a new Entry."""

    key: NsKey
    serial: int  # never reused while the daemon runs; FUSE inodes derive from it
    pin: int  # the daemon's fd on the namespace
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
    taken_ns: int
    generation: int

    def get(self, key: NsKey | None) -> Entry | None:
        return None if key is None else self.entries.get(key.name)


EMPTY = Snapshot(entries={}, by_serial={}, taken_ns=0, generation=0)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[NsKey, Entry] = {}
        self._pinned_at: dict[NsKey, float] = {}  # monotonic time of pinning
        self._serial = 0
        self._generation = 0
        self._nsfs_dev = kernel.nsfs_device()
        self.snapshot: Snapshot = EMPTY

    # -- merging what discovery found --------------------------------------

    def merge(self, scan: Scan, started: float) -> Snapshot:
        """Pin what `scan` found, release what it no longer finds, publish a snapshot.

        `started` is the monotonic time the scan began: a namespace pinned after
        that (by `adopt`, for a caller) was not there to be seen, so this scan
        cannot release it.
        """
        with self._lock:
            before = self._serial, len(self._entries)
            held: set[NsKey] = set()
            for key, sightings in scan.found.items():
                if key in self._entries or self._pin_first(key, sightings):
                    held.add(key)
            held.update(k for k, at in self._pinned_at.items() if at > started)
            self._release_all_but(self._closure(held))
            # Nothing pinned and nothing released: the published snapshot (and the
            # views worked out from it) stay valid.
            if (self._serial, len(self._entries)) == before:
                return self.snapshot
            return self._publish()

    def adopt(self, sightings: Iterable[Sighting]) -> Snapshot:
        """Pin namespaces found outside a scan (a caller's own), keeping everything else."""
        with self._lock:
            changed = False
            for sighting in sightings:
                if sighting.key not in self._entries:
                    changed |= self._pin_first(sighting.key, [sighting])
            return self._publish() if changed else self.snapshot

    def close(self) -> None:
        """Release every pin."""
        with self._lock:
            self._release_all_but(set())
            self._publish()

    # -- internals ----------------------------------------------------------

    def _pin_first(self, key: NsKey, sightings: list[Sighting]) -> bool:
        """Open the namespace through the first sighting that still leads to it."""
        for sighting in sightings:
            try:
                fd = kernel.open_ns(sighting.path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM, errno.ENOTDIR):
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
        self._serial += 1
        self._entries[key] = Entry(
            key=key,
            serial=self._serial,
            pin=fd,
            handle=handle,
            ns_id=ns_id,
            owner=owner,
            parent=parent,
            creator_uid=creator_uid,
            first_seen_ns=time.time_ns(),
        )
        self._pinned_at[key] = time.monotonic()

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

    def _closure(self, held: set[NsKey]) -> set[NsKey]:
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

    def _release_all_but(self, live: set[NsKey]) -> None:
        for key in [k for k in self._entries if k not in live]:
            entry = self._entries.pop(key)
            del self._pinned_at[key]
            os.close(entry.pin)
            log.debug("released %s", key.name)

    def _publish(self) -> Snapshot:
        self._generation += 1
        entries = {e.name: e for e in self._entries.values()}
        self.snapshot = Snapshot(
            entries=entries,
            by_serial={e.serial: e for e in entries.values()},
            taken_ns=time.time_ns(),
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
