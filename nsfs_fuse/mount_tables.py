"""Mount tables, followed: one reader of /proc/PID/mountinfo per mount namespace.

The kernel flags every change of a mount namespace's table to each open reader of
it (POLLPRI), so bind mounts are followed as they come and go, in any mount
namespace, without sweeping. A mount namespace nobody is in any more (held by an
fd or a bind mount) still needs its reader: a helper process enters it and the
table is read through the helper (docs/design.md, "Freshness").

An open mountinfo holds its mount namespace, as a pin does: the registry closes
the reader before it probes or releases that namespace, and follows again only
mount namespaces something else holds. The registry calls it under its lock;
`wait` runs in a thread of its own, beside it.

One table is one item (docs/design.md, "Errors"): a read of it that fails keeps the
bind mounts it had (and is tried again at the next refresh); a table that cannot be
read at all is not followed for now. Neither costs the other tables anything.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import daemons, discovery, errors, procfs
from .model import NsKey, Sighting
from .pins import Budget

# The fds a helper costs the daemon: its stdin and stdout pipes.
HELPER_FDS = 2

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Table:
    fd: int  # the reader
    via: int  # a process in the namespace: its /proc/PID/root opens the mounts
    helper: subprocess.Popen[bytes] | None  # ours, if no other process is in it


class Tables:
    def __init__(self, helpers: set[int], budget: Budget) -> None:
        self._budget = budget
        self._epoll = select.epoll()
        self._tables: dict[NsKey, _Table] = {}
        self._by_fd: dict[int, NsKey] = {}
        self._helpers = helpers  # shared with the scanner, which must not count them as holders
        self._warned = False
        self._lock = threading.Lock()
        self._pending: set[int] = set()  # readers whose table changed, as `wait` found them
        self.started: list[int] = []  # helpers started since the registry last looked: see Registry

    def wait(self, timeout: float) -> bool:
        """Block until a followed table changes, or `timeout`; true if one did (see `changed`).

        Its own thread, not an event loop's epoll: mountinfo reports a change once, to
        whoever polls it first, so an epoll nested in another would see it vanish.
        """
        events = self._epoll.poll(timeout)
        with self._lock:
            self._pending.update(fd for fd, _events in events)
        return bool(events)

    def __contains__(self, mnt: NsKey) -> bool:
        return mnt in self._tables

    def __len__(self) -> int:
        return len(self._tables)

    def watch(self, mnt: NsKey, members: Iterable[int], pin: int | None) -> list[Sighting] | None:
        """Follow `mnt`'s table, read through one of `members`, else a helper entering `pin`.

        Its bind mounts now; None if it cannot be read, or if the fds it would take
        would crowd out everything else.
        """
        if not self._budget.take():
            return None
        table = self._reader(mnt, members, pin)
        if table is None:
            self._budget.give()
            return None
        try:
            return self._add(mnt, table)
        except errors.Skip:  # judged: followed again at the registry's next look
            self._discard(table)
            return None

    def _reader(self, mnt: NsKey, members: Iterable[int], pin: int | None) -> _Table | None:
        """A reader of `mnt`'s table: through one of `members`, else through a helper."""
        for pid in members:
            if (fd := self._open(pid, mnt)) is not None:
                return _Table(fd, pid, None)
        helper = self._helper(mnt, pin)
        fd = None
        try:
            fd = None if helper is None else self._open(helper.pid, mnt)
        finally:
            if fd is None and helper is not None:  # no way in, or a fault: nothing may be left behind
                self._end(helper)
        if fd is None or helper is None:
            return None
        return _Table(fd, helper.pid, helper)

    def changed(
        self, members: Callable[[NsKey], Iterable[int]], pin: Callable[[NsKey], int | None]
    ) -> list[tuple[NsKey, list[Sighting]]]:
        """The bind mounts of every followed table that changed since the last call (what `wait`
        found, and what has changed since without its thread having seen it yet)."""
        self.wait(0)
        with self._lock:
            pending, self._pending = self._pending, set()
        found = []
        todo = list(pending)
        failed = []  # read next time: the kernel flags a change once, and this one is not read yet
        try:
            while todo:
                mnt = self._by_fd.get(todo[-1])
                if mnt is not None:
                    table = self._tables[mnt]
                    if not _in(table.via, mnt):
                        # The process read through has left (or the helper died): find another way in.
                        self._reroute(mnt, table, members(mnt), pin(mnt))
                    try:
                        found.append((mnt, self._read(mnt, table)))
                    except errors.Skip:  # judged: its bind mounts stay as they were
                        failed.append(todo[-1])
                todo.pop()
        finally:
            with self._lock:
                self._pending.update(todo, failed)  # a bug: what was not read yet is read next time
        return found

    def _reroute(self, mnt: NsKey, table: _Table, members: Iterable[int], pin: int | None) -> None:
        if table.helper is not None:
            self._end(table.helper)
            table.helper = None
        via = next((p for p in members if _in(p, mnt) and not procfs.is_kernel_thread(f"/proc/{p}")), None)
        if via is None and (helper := self._helper(mnt, pin)) is not None:
            table.helper, via = helper, helper.pid
        table.via = table.via if via is None else via

    def close(self, mnt: NsKey) -> None:
        """Stop following `mnt`: its namespace is about to be probed or released."""
        table = self._tables.pop(mnt, None)
        if table is None:
            return
        del self._by_fd[table.fd]
        self._epoll.unregister(table.fd)
        self._discard(table)

    def _discard(self, table: _Table) -> None:
        """Close a reader that is not (or no longer) followed, and end its helper."""
        os.close(table.fd)
        self._budget.give()
        if table.helper is not None:
            self._end(table.helper)

    def close_all(self) -> None:
        for mnt in list(self._tables):
            self.close(mnt)
        self._epoll.close()

    # -- inside ---------------------------------------------------------------

    def _add(self, mnt: NsKey, table: _Table) -> list[Sighting]:
        """Follow `table` (registered before its first read: a change in between is not missed)."""
        with errors.step("epoll_add", mnt.name):
            self._epoll.register(table.fd, select.EPOLLPRI)
        try:
            mounts = self._read(mnt, table)
        except errors.Skip:
            self._epoll.unregister(table.fd)
            raise
        self._tables[mnt] = table
        self._by_fd[table.fd] = mnt
        return mounts

    @staticmethod
    def _read(mnt: NsKey, table: _Table) -> list[Sighting]:
        """Its bind mounts; errors.Skip (judged) if the table cannot be read whole."""
        chunks = []
        with errors.step("mountinfo_read", mnt.name):
            os.lseek(table.fd, 0, os.SEEK_SET)
            while chunk := os.read(table.fd, 1 << 16):
                chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "surrogateescape")
        # Lines end at newlines only: mountinfo escapes those in a path, but not \x0c, \x1c or
        # \x85, at which str.splitlines() would cut a line in two and lose its mount.
        return discovery.table_sightings(mnt, text.split("\n"), f"/proc/{table.via}/root")

    @staticmethod
    def _open(pid: int, mnt: NsKey) -> int | None:
        """A reader of `mnt`'s table through process `pid`, if `pid` is (still) in it and is not
        a kernel thread (whose table may be another: procfs.is_kernel_thread)."""
        if procfs.is_kernel_thread(f"/proc/{pid}"):
            return None
        fd = _open_table(f"/proc/{pid}/mountinfo")
        if fd is not None and not _in(pid, mnt):  # it moved, or the pid was reused
            os.close(fd)
            return None
        return fd

    def _helper(self, mnt: NsKey, pin: int | None) -> subprocess.Popen[bytes] | None:
        if not self._budget.take(HELPER_FDS):
            return None
        helper = None
        try:
            helper = None if pin is None else daemons.enter_mount_namespace(pin)
        except OSError as exc:  # no process to be had just now (EAGAIN, ENOMEM, EMFILE)
            errors.judge(exc, "helper_start", mnt.name)
        if helper is None:
            self._budget.give(HELPER_FDS)
            if not self._warned:
                self._warned = True
                log.warning("cannot follow the mount table of %s: its bind mounts are not listed", mnt.name)
            return None
        self._helpers.add(helper.pid)
        self.started.append(helper.pid)
        return helper

    def _end(self, helper: subprocess.Popen[bytes]) -> None:
        daemons.end_helper(helper)
        self._budget.give(HELPER_FDS)
        self._helpers.discard(helper.pid)


@errors.or_default("mountinfo_open", None)
def _open_table(path: str) -> int | None:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _in(pid: int, mnt: NsKey) -> bool:
    return discovery.ns_link(pid, "mnt") == mnt.name
