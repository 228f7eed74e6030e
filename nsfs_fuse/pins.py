"""The daemon's fds on namespaces: opening them, their budget, closing them, the probe.

A pin keeps a `type:[inode]` name meaningful (inode numbers are reused once a
namespace dies) and backs the `ns` link; it also keeps the namespace alive, so
the registry decides when to let go (docs/design.md, "Pins and the probe").

What never changes about a namespace is read here, once, while its first pin is
open: its owner and parent (NS_GET_USERNS, NS_GET_PARENT), which are pinned too
when new, its id and its creator's uid.

Pinning a namespace is one item (docs/design.md, "Errors"): any step of it that
fails (errors.Skip) costs that namespace (and any new namespace that needs it as its
owner or parent) its pin for now, never the others; the next read of a holder tries
again.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from . import discovery, errors, kernel
from .detaching import Detacher
from .model import HIERARCHICAL, NsKey, Opened, Sighting

log = logging.getLogger(__name__)

# No fd to be had just now: the process or the system is at its limit, or memory is short.
_NO_FD: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})

# fds the daemon keeps free for FUSE, scans, helpers and the ioctls that read a new
# namespace; pins stop short of the soft fd limit by this much.
FD_RESERVE: Final = 64

# How long a closed pin's fd number stays taken (pointing at a socket) before it is
# really closed. An `ns` link is /proc/PID/fd/N, which the kernel follows after the
# daemon answered the readlink: were N reused at once, a reader between the two would
# open whatever the daemon opened next, another namespace even.
RETIRE_SECONDS: Final = 2.0


def budget(soft_limit: int, unlimited: int) -> int:
    """How many fds pins and mount-table readers may take under a soft fd limit
    (`unlimited` is RLIM_INFINITY's value)."""
    return 1 << 30 if soft_limit == unlimited else max(0, soft_limit - FD_RESERVE)


class Budget:
    """The fds that may hold namespaces: pins, and the readers of mount tables (mount_tables.py)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.used = 0
        self._warned = False

    @property
    def room(self) -> bool:
        return self.used < self._size

    @property
    def size(self) -> int:
        return self._size

    def take(self, fds: int = 1) -> bool:
        """Whether `fds` more may be opened (then counted as used); the first refusal is logged."""
        if self.used + fds > self._size:
            if not self._warned:
                self._warned = True
                log.warning(
                    "fd limit reached (%d fds hold namespaces): further namespaces are listed without an ns link,"
                    " and further mount tables are not followed",
                    self.used,
                )
            return False
        self.used += fds
        return True

    def give(self, fds: int = 1) -> None:
        self.used -= fds


class Pins:
    """Opens, counts and closes pins. Not thread-safe: the registry calls it under its lock."""

    def __init__(
        self,
        nsfs_dev: int,
        budget: Budget,
        clock: Callable[[], float] = time.monotonic,
        on_retire: Callable[[], None] = lambda: None,
    ) -> None:
        self._nsfs_dev = nsfs_dev
        self._detacher = Detacher()
        self._budget = budget
        self._clock = clock
        # What suspended and retired pins point at: opening a socket through /proc/PID/fd
        # fails (ENXIO), so an `ns` link followed just then opens nothing at all.
        self._placeholder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._retired: deque[tuple[float, int]] = deque()  # (when, fd number), oldest first
        self.on_retire = on_retire  # told when a number is retired (any thread)

    def open(self, key: NsKey, sightings: list[Sighting], known: Callable[[NsKey], bool]) -> list[Opened]:
        """Pin `key` through the first sighting that still leads to it, with its owner and
        parent where `known` says they are new: those first, `key` last. [] if no sighting
        leads to `key` any more, or if a step of pinning it failed (judged: errors.py)."""
        fd = next((fd for s in sightings if (fd := self._open_sighting(s, key)) is not None), None)
        return [] if fd is None else self._pinned(key, fd, known)

    def open_listed(self, handle: bytes, known: Callable[[NsKey], bool]) -> tuple[NsKey | None, list[Opened]]:
        """Pin the namespace `handle` names (one the kernel listed) if `known` says it is new,
        with its owner and parent where they are new: its key, and what was pinned (those
        first). (None, []) if it is gone. errors.Skip (judged) if a step failed with a fault:
        nothing but the kernel's list names it, so the caller tries again."""
        name = _handle_name(handle)
        try:
            with errors.step("open_by_handle", name):
                fd = kernel.open_ns_handle(handle)
        except errors.Skip as skip:
            if skip.answered:
                return None, []
            raise
        key = self._key_of(fd, name)
        if known(key):
            os.close(fd)
            return key, []
        if opened := self._pinned(key, fd, known):
            return key, opened
        raise errors.Skip("pin", name, 0, answered=False)  # judged where the step failed

    def _pinned(self, key: NsKey, fd: int, known: Callable[[NsKey], bool]) -> list[Opened]:
        """`fd` as the pin of `key`, with its owner and parent where `known` says they are new:
        what was pinned, those first; [] if a step failed (judged: this namespace is not
        pinned now, the others are)."""
        opened: list[Opened] = []
        try:
            self._describe(key, fd, lambda k: known(k) or any(o.key == k for o in opened), opened)
        except errors.Skip:
            self._close_all(opened)
            return []
        except BaseException:
            self._close_all(opened)
            raise
        return opened

    def _close_all(self, opened: list[Opened]) -> None:
        for done in opened:
            self.close(done.pin)

    def reopen(self, handle: bytes) -> int | None:
        """A pin for an entry listed without one, now that there may be room; None if there
        is none, or the namespace is gone, or no fd can be had just now."""
        if not self._budget.room:
            return None
        try:
            return self._keep(kernel.open_ns_handle(handle))
        except OSError as exc:
            if exc.errno not in _NO_FD:  # out of fds: tried again later, no need to say so
                errors.judge(exc, "open_by_handle", _handle_name(handle))
            return None  # gone: the next scan drops it; a fault: tried again later

    def suspend(self, pin: int | None) -> None:
        """Drop the daemon's reference on a namespace but keep the fd number `pin`, pointing
        at the placeholder, so that an `ns` link can never lead to another namespace's pin."""
        if pin is not None:
            self._point_at_placeholder(pin)

    def gone(self, handle: bytes) -> bool:
        """Whether the kernel says the namespace of `handle` no longer exists. A look, not a
        pin: the fd it opens is closed at once. A fault (out of fds, say) says nothing."""
        try:
            os.close(kernel.open_ns_handle(handle))
        except OSError as exc:
            return errors.judge(exc, "open_by_handle", _handle_name(handle)) is errors.Verdict.GONE
        return False

    def resume(self, name: str, pin: int | None, handle: bytes) -> tuple[bool, int | None]:
        """Open a suspended namespace again by `handle`, which only succeeds while something
        other than the daemon holds it. Returns whether it is alive, and its pin (the same
        number where it had one). Not alive: `pin` is closed.

        A fault says nothing of the namespace: it is kept as if alive, without a pin (its
        number is retired, `reopen` tries again), and its next probe decides (a false
        "alive" costs a reprobe; a false "gone" would release a namespace in use)."""
        try:
            fd = kernel.open_ns_handle(handle)
        except OSError as exc:
            self.close(pin)
            return errors.judge(exc, "open_by_handle", name) is None, None
        if pin is None:
            return True, self._keep(fd)
        os.dup2(fd, pin, inheritable=False)
        os.close(fd)
        return True, pin

    def close(self, pin: int | None) -> None:
        """Let go of `pin` at once; its number is retired, not free, for RETIRE_SECONDS
        (`close_retired` frees it then)."""
        if pin is not None:
            self._point_at_placeholder(pin)
            self._retired.append((self._clock(), pin))
            self.on_retire()

    def close_retired(self) -> None:
        """Really close the fd numbers retired at least RETIRE_SECONDS ago."""
        until = self._clock() - RETIRE_SECONDS
        while self._retired and self._retired[0][0] <= until:
            os.close(self._retired.popleft()[1])
            self._budget.give()

    def retired_due(self) -> float | None:
        """When (on the clock given) the oldest retired number may be closed; None if none is
        retired. Safe from any thread."""
        try:
            when = self._retired[0][0]
        except IndexError:
            return None
        return when + RETIRE_SECONDS

    def _point_at_placeholder(self, pin: int) -> None:
        os.dup2(self._placeholder.fileno(), pin, inheritable=False)

    @property
    def room(self) -> bool:
        return self._budget.room

    # -- inside ---------------------------------------------------------------

    def _open_sighting(self, sighting: Sighting, key: NsKey) -> int | None:
        """An fd on `key` through `sighting`, or None if it is gone or leads elsewhere now
        (or a fault, judged: another sighting may do)."""
        try:
            fd = discovery.open_namespace(sighting)
        except errors.Skip:
            return None  # the holder went away since the scan read it (or its fd is no socket now)
        try:
            with errors.step("ns_key", sighting.path, {errno.ENOTTY}):  # ENOTTY: the fd number holds another file now
                found = kernel.key_of_fd(fd, self._nsfs_dev)
        except errors.Skip:
            os.close(fd)
            return None
        if found != key:  # the process moved to another namespace meanwhile
            os.close(fd)
            return None
        return fd

    def _describe(self, key: NsKey, fd: int, known: Callable[[NsKey], bool], opened: list[Opened]) -> None:
        """Take `fd` as the pin for `key`: read what never changes, pinning new relatives first."""
        try:
            fd, handle = self._detacher.detached(fd, key)
            owner = self._relative(fd, key, "ns_get_userns", kernel.get_userns, known=known, opened=opened)
            if key.type == "user":
                parent = owner  # NS_GET_PARENT is NS_GET_USERNS for user namespaces
            elif key.type in HIERARCHICAL:
                parent = self._relative(fd, key, "ns_get_parent", kernel.get_parent, known=known, opened=opened)
            else:
                parent = None
            with errors.step("ns_get_id", key.name):
                ns_id = kernel.get_ns_id(fd)
            creator_uid = None
            if key.type == "user":
                with errors.step("ns_get_owner_uid", key.name):
                    creator_uid = kernel.get_owner_uid(fd)
        except BaseException:
            os.close(fd)
            raise
        opened.append(Opened(key, self._keep(fd), handle, ns_id, owner, parent, creator_uid))

    def _relative(
        self,
        fd: int,
        of: NsKey,
        op: str,
        ioctl: Callable[[int], int],
        *,
        known: Callable[[NsKey], bool],
        opened: list[Opened],
    ) -> NsKey | None:
        """Key of the namespace an NS_GET_* ioctl (`op`) returns for `of`, pinning it if it is new."""
        try:
            with errors.step(op, of.name, {errno.EPERM}):
                rel_fd = ioctl(fd)
        except errors.Skip as skip:
            if skip.errno == errno.EPERM:  # the ioctl's answer above the daemon's own namespaces: the top
                return None
            raise
        key = self._key_of(rel_fd, f"{op} of {of.name}")
        if known(key):
            os.close(rel_fd)
        else:
            self._describe(key, rel_fd, known, opened)
        return key

    def _key_of(self, fd: int, item: str) -> NsKey:
        """The key of namespace fd `fd`; errors.Skip (judged), and `fd` closed, if it cannot be had."""
        try:
            with errors.step("ns_key", item):
                return kernel.key_of_fd(fd, self._nsfs_dev)
        except BaseException:
            os.close(fd)
            raise

    def _keep(self, fd: int) -> int | None:
        """`fd` as a pin, or None (and `fd` closed) once pins would crowd out everything else.

        Past the limit a namespace is still listed, from what was read while the fd
        was open; it has no `ns` link until a pin is free again.
        """
        if self._budget.take():
            return fd
        os.close(fd)
        return None


def _handle_name(handle: bytes) -> str:
    """What names a namespace known only by its handle in a log line."""
    return f"handle {handle.hex()}"
