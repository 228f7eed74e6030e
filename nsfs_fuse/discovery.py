"""Find namespaces by what holds them: processes, threads, fds, bind mounts.

Each `*_sightings` function looks at one kind of holder and yields a Sighting for
every namespace it names: the key, a path through which the namespace can be
opened, and the holder itself. Nothing here opens a namespace or knows about the
registry or FUSE: the scan is `readlink` and `listdir` over /proc, nothing more.

Processes come and go while we read. An error that means "this process (or this
fd) is gone or not ours to see" skips that item only; see `_vanished`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import psutil

from .kernel import NS_TYPES, NsKey, parse_ns_name

# What the kernel says when a process exits under us, an fd is closed between
# listdir and readlink, or a link is not there on this kernel: skip that item.
_VANISHED = frozenset({errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EINVAL})

DAEMON_COMM = "nsfs"


def _vanished(exc: OSError) -> bool:
    return exc.errno in _VANISHED


class Holder(NamedTuple):
    """Something that keeps a namespace alive.

    kind is one of "process", "task", "for-children", "fd", "mount";
    pid is the process (0 for a mount), num the thread id or fd number,
    path the mountpoint of a bind mount.
    """

    kind: str
    pid: int = 0
    num: int = 0
    path: str = ""


class Sighting(NamedTuple):
    key: NsKey
    path: str  # opens the namespace, as long as the holder lasts
    holder: Holder


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError as exc:
        if _vanished(exc):
            return None
        raise


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        if _vanished(exc):
            return []
        raise


def _ns_links(directory: str, links: Iterable[str] = NS_TYPES) -> Iterator[tuple[str, NsKey]]:
    """(link name, key) for each readable namespace link in a /proc .../ns directory."""
    for link in links:
        target = _readlink(f"{directory}/{link}")
        if target is not None and (key := parse_ns_name(target)) is not None:
            yield link, key


def process_sightings(pid: int) -> Iterator[Sighting]:
    """The namespaces a process is in, and those its next children will get."""
    ns_dir = f"/proc/{pid}/ns"
    for link, key in _ns_links(ns_dir):
        yield Sighting(key, f"{ns_dir}/{link}", Holder("process", pid))
    for link, key in _ns_links(ns_dir, ("pid_for_children", "time_for_children")):
        yield Sighting(key, f"{ns_dir}/{link}", Holder("for-children", pid))


def thread_sightings(pid: int) -> Iterator[Sighting]:
    """Namespaces of threads other than the leader (a thread may unshare or setns alone)."""
    for name in _listdir(f"/proc/{pid}/task"):
        tid = int(name)
        if tid == pid:
            continue
        ns_dir = f"/proc/{pid}/task/{tid}/ns"
        for link, key in _ns_links(ns_dir):
            yield Sighting(key, f"{ns_dir}/{link}", Holder("task", pid, tid))


def fd_sightings(pid: int) -> Iterator[Sighting]:
    """Open fds on namespace files: their link reads `type:[inode]`."""
    fd_dir = f"/proc/{pid}/fd"
    for name in _listdir(fd_dir):
        path = f"{fd_dir}/{name}"
        target = _readlink(path)
        # Files read back as absolute paths, sockets and pipes as "socket:[...]":
        # only namespace fds parse.
        if target is not None and (key := parse_ns_name(target)) is not None:
            yield Sighting(key, path, Holder("fd", pid, int(name)))


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_sightings(pid: int) -> Iterator[Sighting]:
    """nsfs bind mounts in the mount namespace of `pid`, opened through its root."""
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError as exc:
        if _vanished(exc):
            return
        raise
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) <= sep + 1 or fields[sep + 1] != "nsfs":
            continue
        key = parse_ns_name(fields[3])
        if key is None:
            continue
        mountpoint = unescape(fields[4])
        yield Sighting(key, f"/proc/{pid}/root{mountpoint}", Holder("mount", path=mountpoint))


def is_nsfs_daemon(pid: int) -> bool:
    """A process that is another nsfs daemon: its pins are not holders.

    Two daemons that counted each other's pins would keep every namespace they
    ever saw alive. A daemon names itself "nsfs" and runs as root, which an
    unprivileged process cannot imitate.
    """
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            comm = f.read().rstrip("\n")
        return comm == DAEMON_COMM and os.stat(f"/proc/{pid}").st_uid == 0
    except OSError as exc:
        if _vanished(exc):
            return False
        raise


@dataclass
class Scan:
    """Everything one pass over /proc found, grouped by namespace."""

    found: dict[NsKey, list[Sighting]] = field(default_factory=dict)

    def add(self, sightings: Iterable[Sighting]) -> None:
        for sighting in sightings:
            self.found.setdefault(sighting.key, []).append(sighting)


def scan(own_pid: int) -> Scan:
    """One full pass: every process, thread and fd, and the daemon's own mounts.

    The daemon's own fds are its pins and never count as holders, nor do other
    nsfs daemons' fds; the daemon's (and their) membership in namespaces does.
    """
    result = Scan()
    for pid in psutil.pids():
        result.add(process_sightings(pid))
        result.add(thread_sightings(pid))
        if pid == own_pid:
            continue
        fds = list(fd_sightings(pid))
        if fds and not is_nsfs_daemon(pid):
            result.add(fds)
    result.add(mount_sightings(own_pid))
    return result


def caller_sightings(tid: int) -> list[Sighting]:
    """The namespaces of one calling thread: a handful of readlinks, cheap enough for a handler."""
    return list(process_sightings(tid))
