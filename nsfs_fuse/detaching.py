"""A pin that holds its namespace and nothing else: an fd opened through a bind mount (or a
process's fd of one) holds that mount too, and `umount` would fail while it is pinned. Such an
fd is opened again by its file handle or, without handles, through a thread that enters the
namespace (docs/design.md, "Pins and the probe")."""

from __future__ import annotations

import logging
import os
import threading
from typing import Final

from . import errors, kernel
from .model import NsKey

log = logging.getLogger(__name__)

# Without file handles, a thread of the daemon's own that enters a namespace can open it again
# through /proc/thread-self on the kernel's own nsfs mount. A thread may enter these types
# alone (mnt, user and time want a process of one thread); for pid it is its children's.
_THREAD_LINKS: Final = {"net": "net", "uts": "uts", "ipc": "ipc", "cgroup": "cgroup", "pid": "pid_for_children"}


class Detacher:
    """Re-opens fds on namespaces so that they hold nothing else (not thread-safe: under the
    registry's lock, as Pins)."""

    def __init__(self) -> None:
        self._nsfs_mount_id: int | None = None  # read at the first bind mount met without handles
        self._told_refused = False  # whether the log said that some handles are refused

    def detached(self, fd: int, key: NsKey) -> tuple[int, bytes | None]:
        """Re-open `fd` so that it holds the namespace and nothing else: by its file handle,
        or, without handles (before Linux 6.18, or where the kernel refuses this daemon the
        handle: kernel.HANDLE_REFUSED), through a thread that enters it.

        An fd opened through a bind mount, or through /proc/PID/fd/N of a process that
        opened one, holds that mount too: `umount` would fail with EBUSY for as long as
        the daemon pinned it, and the namespace could never be released. Opened by
        handle, or through /proc/thread-self/ns, the fd refers to the kernel's own nsfs
        mount. Without handles, a mount, user or time namespace's bind mount stays busy
        while pinned (README, Limits).

        A handle the kernel will not open again for the daemon (6.18 answers ESTALE for a
        namespace made inside a child pid namespace the daemon runs in, though `fd` holds
        it) is of no use for probes either: the namespace is pinned as on a kernel without
        handles. A fault (out of fds, say) skips the namespace for now (errors.Skip).
        """
        with errors.step("name_to_handle", key.name):
            handle = kernel.ns_handle(fd)
        if handle is None:
            return self.entered_again(fd, key), None
        try:
            with errors.step("open_by_handle", key.name, kernel.NO_HANDLES):
                clean = kernel.open_ns_handle(handle)
        except errors.Skip as skip:
            if not skip.answered:
                raise
            self._refused(key, skip)
            return self.entered_again(fd, key), None
        os.close(fd)
        return clean, handle

    def _refused(self, key: NsKey, skip: errors.Skip) -> None:
        """Say once that the kernel refuses some handles: those namespaces are released as soon
        as no holder is found, without a probe, as on a kernel without handles."""
        if not self._told_refused:
            self._told_refused = True
            log.info(
                "the kernel will not open %s again by its handle (%s): such namespaces are pinned and"
                " released as on a kernel without handles",
                key.name,
                errors.errno_name(skip.errno),
            )

    def entered_again(self, fd: int, key: NsKey) -> int:
        """`fd`, or, if it is reached through a mount other than the kernel's own nsfs mount
        (a bind mount), the same namespace opened again by a thread that enters it and ends.
        Where the thread cannot, `fd` as it was opened (its mount stays busy)."""
        link = _THREAD_LINKS.get(key.type)
        if link is None:
            return fd
        with errors.step("mnt_id", key.name):
            if kernel.mount_id(fd) == self._nsfs_mount():
                return fd
        opened: list[int] = []

        def enter() -> None:
            try:
                kernel.setns(fd, kernel.CLONE_FLAGS[key.type])
            except OSError as exc:
                errors.judge(exc, "setns", key.name)
                return
            try:
                opened.append(os.open(f"/proc/thread-self/ns/{link}", os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                errors.judge(exc, "thread_ns_open", key.name)

        entering = threading.Thread(target=enter, name="nsfs-enter", daemon=True)
        entering.start()
        entering.join()  # the thread ends in the namespace it entered; nothing else moved
        if not opened:
            return fd
        os.close(fd)
        return opened[0]

    def _nsfs_mount(self) -> int:
        """The id of the kernel's own nsfs mount, where /proc/PID/ns links lead."""
        if self._nsfs_mount_id is None:
            own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._nsfs_mount_id = kernel.mount_id(own)
            finally:
                os.close(own)
        return self._nsfs_mount_id
