"""What lsnsfs shows of one entry: its Row (lsns's columns and what holds it), worked out from
the mount and the reader's own /proc, as lsns and ps read them; NETNSID and NSFS with -t net.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from .. import errors, kernel
from ..model import Container
from .mounted import Listed, comm_of, summary
from .shown import cell, json_text


@dataclass(frozen=True, slots=True)
class Row:
    """One namespace as lsns shows it, plus what holds it."""

    ns: int
    type: str
    nprocs: int
    pid: int | None  # the lowest pid in it, as the reader's pid namespace numbers it
    user: str | None  # that process's user
    command: str | None  # that process's command line
    holders: tuple[str, ...]
    # With -t net (NetIds), for a network namespace: the id the reader's network namespace
    # gives it ("unassigned" if none), and where it is bind-mounted in the reader's mount
    # namespace: lsns's NETNSID and NSFS (-J: one path a line).
    netnsid: str | None = None
    nsfs: tuple[str, ...] = ()
    containers: tuple[Container, ...] = ()  # its `containers` file

    def cells(self) -> dict[str, str]:
        """The table's cells, each escaped as lsns escapes it (shown.cell): one line whatever
        a process put in its command line or name, or a path."""
        blank = "-"
        return {
            "NS": str(self.ns),
            "TYPE": self.type,
            "NPROCS": str(self.nprocs),
            "PID": blank if self.pid is None else str(self.pid),
            "USER": cell(self.user or blank),
            "NETNSID": self.netnsid or blank,
            "NSFS": ",".join(cell(path) for path in self.nsfs) or blank,
            "HOLDERS": cell(summary(self.holders) or blank),
            "CONTAINER": ",".join(cell(c.label) for c in self.containers) or blank,
            "COMMAND": cell(self.command or blank),
        }

    def as_json(self, net: bool = False) -> dict[str, Any]:
        """lsns -J's fields, with its names and types (`netnsid` and `nsfs` too if `net`, as
        lsns -J -t net), then `holders`: the file's lines, and `container`: its containers (engine,
        id, name, pod: null where not known), null if none. Text as it is, but for bytes that
        are not UTF-8 (shown.json_text): the output is valid JSON whatever they hold."""
        fields: dict[str, Any] = {
            "ns": self.ns,
            "type": self.type,
            "nprocs": self.nprocs,
            "pid": self.pid,
            "user": _json_or_none(self.user),
        }
        if net:
            fields |= {"netnsid": self.netnsid, "nsfs": json_text("\n".join(self.nsfs)) or None}
        holders = [json_text(line) for line in self.holders]
        containers = [
            {
                "engine": json_text(c.engine),
                "id": json_text(c.id),
                "name": _json_or_none(c.name or None),
                "pod": _json_or_none(c.pod or None),
            }
            for c in self.containers
        ]
        return fields | {"command": _json_or_none(self.command), "holders": holders, "container": containers or None}


def _json_or_none(text: str | None) -> str | None:
    return None if text is None else json_text(text)


# What USER and COMMAND need of a process: its uid and command line (None if it is gone).
ProcessFacts = Callable[[int], tuple[int, str] | None]


def row_of(entry: Listed, facts: ProcessFacts) -> Row:
    pids = entry.process_pids()
    pid = min(pids) if pids else None
    user = command = None
    if pid is not None:
        found = facts(pid)
        if found is not None:
            uid, command = found
            user = user_name(uid)
        command = command or comm_of(entry.holders, pid)
    return Row(
        entry.key.inode, entry.key.type, len(pids), pid, user, command, entry.holders, containers=entry.containers
    )


def proc_facts(pid: int) -> tuple[int, str] | None:
    """A process's uid and command line (empty if it has none: a kernel thread), read from
    the reader's /proc as ps and lsns do."""
    return _proc_facts(f"/proc/{pid}")


@errors.or_default("proc_read", None)
def _proc_facts(path: str) -> tuple[int, str] | None:
    uid = os.stat(path).st_uid
    with open(f"{path}/cmdline", "rb") as f:
        return uid, command_line(f.read(CMDLINE_READ))


# lsns reads this much of /proc/PID/cmdline (BUFSIZ) and drops the last byte read.
CMDLINE_READ = 8192


def command_line(raw: bytes) -> str:
    """The command line lsns shows for /proc/PID/cmdline's `raw` bytes: the NULs between the
    arguments as spaces, the last byte read dropped (the final NUL; of a longer command line,
    its 8,192nd byte), and bytes that are not UTF-8 kept as lone surrogates, for each output
    to escape its way (shown.py)."""
    return raw[:CMDLINE_READ][:-1].replace(b"\0", b" ").decode("utf-8", "surrogateescape")


class NetIds:
    """lsns's NETNSID and NSFS, as the reader would see them: the id its own network namespace
    gives each network namespace, asked of the kernel through an fd on it (the shown process's
    ns link, or one of its bind mounts, which anyone may open), and where it is bind-mounted
    in the reader's mount namespace. No id where the reader can open neither, or where the
    kernel will not say (no rtnetlink in a sandbox, say), as lsns leaves it blank."""

    def __init__(self) -> None:
        try:
            self._sock: socket.socket | None = kernel.rtnetlink()
        except OSError:
            self._sock = None
        self._mntns = _readlink("/proc/self/ns/mnt")

    def __enter__(self) -> NetIds:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._sock is not None:
            self._sock.close()

    def fill(self, row: Row, entry: Listed) -> Row:
        if row.type != "net":
            return row
        paths = entry.mount_paths(self._mntns)
        return replace(row, netnsid=self._id(row, paths), nsfs=tuple(paths))

    def _id(self, row: Row, paths: list[str]) -> str | None:
        if self._sock is None:
            return None
        through = ([f"/proc/{row.pid}/ns/net"] if row.pid is not None else []) + paths
        for path in through:
            fd = _open(path)
            if fd is None:
                continue
            try:
                if os.fstat(fd).st_ino != row.ns:
                    continue  # the pid is another process's by now
                nsid = kernel.netnsid(self._sock, fd)
            except OSError:
                return None  # the kernel will not say: blank, as lsns
            finally:
                os.close(fd)
            return "unassigned" if nsid == kernel.NSID_NOT_ASSIGNED else str(nsid)
        return None


@errors.or_default("readlink", "")
def _readlink(path: str) -> str:
    return os.readlink(path)


@errors.or_default("open", None)
def _open(path: str) -> int | None:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def rows_of(entries: Sequence[Listed], net: bool) -> list[Row]:
    """A row per entry; with NETNSID and NSFS if `net` (-t net)."""
    rows = [row_of(e, proc_facts) for e in entries]
    if not net:
        return rows
    with NetIds() as ids:
        return [ids.fill(row, entry) for row, entry in zip(rows, entries, strict=True)]


_users: dict[int, str] = {}


def user_name(uid: int) -> str:
    if uid not in _users:
        try:
            _users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _users[uid] = str(uid)
    return _users[uid]


# -- output -------------------------------------------------------------------
