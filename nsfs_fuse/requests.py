"""One request's caller and what it may see, against one snapshot: what the files of an
entry (files.py) are worked out for. Who the caller is is read from its own /proc, once a
request, and only when a file needs it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from . import discovery, errors, kernel
from .model import Creds, Entry, NsKey, Reader, Snapshot
from .procfs import read_status
from .visibility import Caller, Ptrace, View, caller_confined, caller_pidns, map_uid

_T = TypeVar("_T")

# A kind of reader: what a per-reader file's content depends on (Request.kind).
Kind = tuple[NsKey | None, NsKey | None, frozenset[str], Caller | None]
# What a Request works out of the caller alone, the same against any snapshot (Request.renewed).
_OF_THE_CALLER: Final = ("own", "pidns", "caller")


@dataclass(frozen=True, slots=True)
class Request:
    """One request's caller and what it may see, against one snapshot: the `Reading` files use.

    A caller sees its view (visibility.py) and, whatever its user namespace owns, the
    namespaces it is in itself: its own /proc/self/ns links (read only when a name is
    not in the view).
    """

    pid: int
    snapshot: Snapshot
    view: View
    daemon_pid: int  # the `ns` links point into this process's fds
    daemon_pidns: NsKey | None  # the pid namespace holder pids are numbered in
    _memo: dict[str, Any] = field(default_factory=dict)  # what this request worked out once

    def sees(self, key: NsKey | None) -> bool:
        return key is not None and self.sees_name(key.name)

    def sees_name(self, name: str) -> bool:
        return self.view.sees_name(name) or name in self.own()

    def own(self) -> frozenset[str]:
        """The names of the namespaces the caller is in."""
        return self._once("own", lambda: frozenset(s.key.name for s in discovery.caller_sightings(self.pid)))

    def pidns(self) -> NsKey | None:
        """The caller's pid namespace: whose pids it understands."""
        return self._once("pidns", lambda: caller_pidns(self.pid))

    def renewed(self, snapshot: Snapshot, view: View) -> Request:
        """The same caller against a newer snapshot, keeping what was read of the caller itself."""
        kept: dict[str, Any] = {name: self._memo[name] for name in _OF_THE_CALLER if name in self._memo}
        return Request(self.pid, snapshot, view, self.daemon_pid, self.daemon_pidns, kept)

    def _once(self, name: str, work_out: Callable[[], _T]) -> _T:
        """`work_out()`, worked out once per request: each is a few reads of the caller's /proc."""
        if name not in self._memo:
            self._memo[name] = work_out()
        value: _T = self._memo[name]
        return value

    def listing(self) -> list[Entry]:
        """The root directory for this caller: its view, and its own namespaces."""
        extra = [e for name in self.own() if not self.view.sees_name(name) and (e := self.snapshot.entries.get(name))]
        if not extra:
            return list(self.view.listing)
        return sorted((*self.view.listing, *extra), key=lambda e: (e.key.inode, e.key.type))

    def uid(self, kuid: int) -> int | None:
        return map_uid(self.pid, kuid)

    def caller(self) -> Caller | None:
        """What the kernel asks of the calling thread before it lets it read another process
        (visibility.Ptrace); None if it is gone or cannot be identified."""
        return self._once("caller", self._read_caller)

    def _read_caller(self) -> Caller | None:
        try:
            status = read_status(f"/proc/{self.pid}/status") if self.pid > 0 else None
        except errors.Skip:  # judged: a caller that cannot be read is one that cannot be identified
            return None
        if status is None or self.view.userns is None:
            return None
        fsuid, fsgid, euid = status.uids[3], status.gids[3], status.uids[1]
        return Caller(status.tgid, fsuid, fsgid, euid, status.caps, self.view.userns, caller_confined(self.pid))

    def reads(self, pid: int, creds: Creds | None) -> bool:
        """Whether the kernel would let the caller read process `pid`'s /proc/PID/ns and fd."""
        ptrace: Ptrace = self._once("ptrace", lambda: Ptrace(self.caller(), self.snapshot))
        return ptrace.reads(pid, creds)

    def kind(self) -> Kind:
        """What a per-reader file's content depends on: the caller's user and pid namespaces,
        the namespaces it is in, and what decides which processes it may read (its process
        among them: a process may always read itself). See files.EntryFile.per_reader."""
        return self.view.userns, self.pidns(), self.own(), self.caller()

    def pin_path(self, pin: int) -> str | None:
        """The daemon's fd `pin` as the caller's /proc shows it: through the daemon's pid in
        the caller's pid namespace. None where the daemon has none (the caller's /proc
        cannot show it, and another process's fd of that number is not this namespace)."""
        daemon = self._pid_translator()(self.daemon_pid)
        return None if daemon is None else f"/proc/{daemon}/fd/{pin}"

    def holders(self, entry: Entry) -> str:
        holders = self.snapshot.holders.get(entry.name)
        return "" if holders is None else holders.render(self.holder_reader())

    def containers(self, entry: Entry) -> str:
        holders = self.snapshot.holders.get(entry.name)
        return "" if holders is None else "".join(f"{c.line()}\n" for c in holders.containers(self.holder_reader()))

    def holder_reader(self) -> Reader:
        """The caller as model.Holders sees a reader of holders."""
        return _HolderReader(self, self._pid_translator())

    def _pid_translator(self) -> Callable[[int], int | None]:
        return self._once("pids", self._translator)

    def _translator(self) -> Callable[[int], int | None]:
        """Host pid -> the caller's pid for it, or None if the caller's pid namespace lacks it."""
        pidns = self.pidns()
        if pidns is None:
            return lambda pid: None
        if pidns == self.daemon_pidns:
            return lambda pid: pid
        entry = self.snapshot.get(pidns)
        if entry is None or entry.pin is None:
            return lambda pid: None
        pin = entry.pin

        def translate(pid: int) -> int | None:
            try:
                translated = kernel.pid_in_pidns(pin, pid)
            except OSError as exc:
                # ESRCH: not in the caller's pid namespace; ENOTTY: a kernel before 6.11; EBADF:
                # the pin was closed since this request took its snapshot (the namespace went).
                # Anything else is judged: that holder's line is left out, not the whole file.
                if exc.errno != errno.ENOTTY:
                    errors.judge(exc, "pid_in_pidns", pid)
                return None
            return translated if translated > 0 else None

        return translate


@dataclass(frozen=True, slots=True)
class _HolderReader:
    """The caller of one `holders` read, as model.Holders.render sees it."""

    request: Request
    pid: Callable[[int], int | None]

    def sees_name(self, name: str) -> bool:
        return self.request.sees_name(name)

    def reads(self, pid: int, creds: Creds | None) -> bool:
        return self.request.reads(pid, creds)
