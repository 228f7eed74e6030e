"""Find namespaces by what holds them: processes, threads, fds, sockets, bind mounts.

Each `*_sightings` function looks at one kind of holder and yields a Sighting for
every namespace it names: the key, a way to open the namespace while the holder
lasts (`open_namespace`), and the holder itself; a holder that names a process
carries that process's credentials (`process_creds`), which decide who may see it.
Bind mounts come from mount tables (`table_sightings`), which mount_tables.py follows.
The scan is `readlink`, `listdir` and one read of each process's status over /proc;
the only namespaces it opens are those behind sockets it has not met before, to
learn which network namespace they belong to. Nothing here knows about the
registry or FUSE.

Processes come and go while we read: a part of a process that is gone or denied
is skipped, as errors.py decides (docs/design.md, "Errors"). Any other error while
reading a process makes that read a failed one (`ProcessRead.failed`): the registry
keeps what it had of the process rather than take a partial read for the truth.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from . import errors, kernel, mountinfo
from .daemons import FUSE_DEVICE, is_nsfs_daemon, is_nsfs_helper
from .model import NS_TYPES, Container, Creds, Holder, HolderKind, NsKey, ProcessRead, Sighting, parse_ns_name
from .procfs import (
    PROC,
    Status,
    listdir,
    process_creds,
    read_cgroup,
    read_cmdline,
    read_comm,
    read_status,
    readlink,
    root_uid,
)
from .workloads import Names, Placed, placed_by_cgroup_file, placed_by_monitor

log = logging.getLogger(__name__)

# What SIOCGSKNS says of an fd that is no longer a socket, or a socket with no namespace to tell.
NO_SOCKET_NS = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOTSOCK})
# What pidfd_open (Linux 5.3) and pidfd_getfd (5.6) say where the kernel lacks them (RHEL 8's
# 4.18) or a seccomp filter refuses them: a socket's namespace cannot be asked at all.
NO_PIDFD = frozenset({errno.ENOSYS})


def _ns_key(path: str) -> NsKey | None:
    """The namespace a /proc ns link names; None if it is gone."""
    target = readlink(path)
    return None if target is None else parse_ns_name(target)


def _ns_links(directory: str, links: Iterable[str] = NS_TYPES) -> Iterator[tuple[str, NsKey]]:
    """(link name, key) for each readable namespace link in a /proc .../ns directory."""
    for link in links:
        target = readlink(f"{directory}/{link}")
        if target is not None and (key := parse_ns_name(target)) is not None:
            yield link, key


def process_sightings(
    pid: int,
    comm: str = "",
    creds: Creds | None = None,
    links: dict[str, NsKey] | None = None,
    *,
    proc: str = PROC,
    container: Container | None = None,
) -> Iterator[Sighting]:
    """The namespaces a process is in (`links`, if its ns links were read already), and those
    its next children will get."""
    ns_dir = f"{proc}/{pid}/ns"
    # One holder for all its links: kept per process.
    holder = Holder(HolderKind.PROCESS, pid, text=comm, creds=creds, container=container)
    for link, key in (dict(_ns_links(ns_dir)) if links is None else links).items():
        yield Sighting(key, f"{ns_dir}/{link}", holder)
    for_children = Holder(HolderKind.FOR_CHILDREN, pid, creds=creds, container=container)
    for link, key in _ns_links(ns_dir, ("pid_for_children", "time_for_children")):
        yield Sighting(key, f"{ns_dir}/{link}", for_children)


def thread_sightings(
    pid: int,
    leader: dict[str, NsKey],
    creds: Callable[[str, NsKey | None], Creds | None],
    proc: str = PROC,
    container: Container | None = None,
) -> Iterator[Sighting]:
    """Namespaces of threads that differ from their leader's (a thread may unshare or setns alone).

    A thread has credentials of its own (`creds(its /proc path, its user namespace)`): reading
    its /proc/PID/task/TID/ns is up to them."""
    for name in listdir(f"{proc}/{pid}/task"):
        tid = int(name)
        if tid == pid:
            continue
        task = f"{proc}/{pid}/task/{tid}"
        links = dict(_ns_links(f"{task}/ns"))
        differing = [(link, key) for link, key in links.items() if leader.get(link) != key]
        if not differing:
            continue
        comm = read_comm(f"{task}/comm")
        task_creds = creds(task, links.get("user", leader.get("user")))
        holder = Holder(HolderKind.TASK, pid, tid, comm, creds=task_creds, container=container)
        for link, key in differing:
            yield Sighting(key, f"{task}/ns/{link}", holder)


@dataclass(frozen=True, slots=True)
class Fds:
    """What one readlink of each of a process's fds tells."""

    namespaces: list[Sighting]  # fds on namespace files
    sockets: list[tuple[int, int]]  # (fd, socket inode)
    fuse: bool  # whether it has /dev/fuse open: one mark of an nsfs daemon


def fd_sightings(pid: int, creds: Creds | None = None, proc: str = PROC, container: Container | None = None) -> Fds:
    """Open fds on namespace files, the (fd, socket inode) of every socket, and whether
    /dev/fuse is among them.

    A namespace fd reads back as `type:[inode]`, a socket as `socket:[inode]`, a
    file as an absolute path: one readlink tells them apart.
    """
    fd_dir = f"{proc}/{pid}/fd"
    namespaces, sockets, fuse = [], [], False
    for name in listdir(fd_dir):
        path = f"{fd_dir}/{name}"
        target = readlink(path)
        if target is None:
            continue
        if target.startswith("/"):
            fuse = fuse or target == FUSE_DEVICE
        elif target.startswith("socket:["):
            sockets.append((int(name), int(target[8:-1])))
        elif (key := parse_ns_name(target)) is not None:
            holder = Holder(HolderKind.FD, pid, int(name), creds=creds, container=container)
            namespaces.append(Sighting(key, path, holder))
    return Fds(namespaces, sockets, fuse)


def socket_netns(pid: int, fd: int) -> int:
    """A new fd on the network namespace of socket `fd` of process `pid`; errors.Skip if
    there is none to be had (answered: the socket or its process is gone, or it is no
    socket with a namespace now, or the kernel cannot lend a process's fd: `NO_PIDFD`)."""
    item = f"socket {fd} of {pid}"
    with errors.step("pidfd_open", item, NO_PIDFD):
        pidfd = kernel.pidfd_open(pid)
    try:
        with errors.step("pidfd_getfd", item, NO_PIDFD):
            sock = kernel.pidfd_getfd(pidfd, fd)
    finally:
        os.close(pidfd)
    try:
        with errors.step("socket_netns", item, NO_SOCKET_NS):
            return kernel.socket_netns(sock)
    finally:
        os.close(sock)


def open_namespace(sighting: Sighting) -> int:
    """Open the namespace a sighting names, through its holder: errors.Skip if it cannot."""
    if sighting.holder.kind is HolderKind.SOCKET:
        return socket_netns(sighting.holder.pid, sighting.holder.num)
    with errors.step("open_ns", sighting.path):
        return kernel.open_ns(sighting.path)


def table_sightings(mnt: NsKey, lines: Iterable[str], root: str) -> list[Sighting]:
    """The nsfs bind mounts of mount namespace `mnt`, from its mountinfo `lines`.

    `root` is a path to that namespace's root (/proc/PID/root of a process in it), so
    that each mount is opened where it is rather than in the daemon's namespace.
    """
    return [
        Sighting(key, f"{root}{mount.mountpoint}", Holder(HolderKind.MOUNT, text=mount.mountpoint, ns=mnt.name))
        for mount in mountinfo.parse(lines)
        if mount.fstype == "nsfs" and (key := parse_ns_name(mount.root)) is not None
    ]


# How far up a process's ancestors its container's monitor is looked for: a container's
# processes are rarely deeper than this below its first process.
MONITOR_HOPS = 8

# Processes read between two calls of a sweep's `each`: small enough that a paced
# sweep is smooth and that the registry sees a sweep's findings as it goes.
CHUNK = 64


class Scanner:
    """Reads of /proc, remembering what does not change between them.

    `read` may run in several threads at once (process events and a sweep).
    """

    def __init__(self, own_pid: int, nsfs_dev: int, proc: str = PROC, names: Names | None = None) -> None:
        self._own_pid = own_pid
        self._proc = proc  # where /proc is: unit tests give a tree of their own
        self._names = Names() if names is None else names  # containers' names, from the engines' state
        own = read_status(f"{proc}/self/status")
        self._depth = 1 if own is None else own.depth  # how many pid namespaces number the daemon
        # Since the sweep began: what each process walked through on the way up to a
        # container's monitor led to (a container's processes share one), by pid.
        self._monitors: dict[int, Placed | None] = {}
        self.helpers: set[int] = set()  # the daemon's own helper processes: never holders
        self._nsfs_dev = nsfs_dev
        # The daemon's user namespace: whose root is uid 0 as /proc numbers uids for it.
        self._userns = _ns_key(f"{proc}/self/ns/user")
        # A socket's network namespace never changes: ask the kernel once per socket.
        self._socket_ns: dict[int, NsKey] = {}
        self._sockets_met: set[int] = set()  # socket inodes read since the sweep began
        self._no_pidfd = False  # the kernel cannot lend a process's fd: sockets are not asked

    def read(self, pid: int) -> ProcessRead:
        """One process: its namespaces, its threads' where they differ, its fds and sockets.

        The daemon's own fds are its pins and never count as holders, nor do other
        nsfs daemons' fds or their threads (one may enter a namespace for a moment to
        open it again); the daemon's (and their) membership in namespaces does. A helper
        process of any nsfs daemon holds nothing. A fault in any part of it (not an answer:
        errors.py) makes it a failed read.
        """
        read_at = time.monotonic()
        if pid in self.helpers:
            return ProcessRead(pid, read_at)
        try:
            return self._read(pid, read_at)
        except errors.Skip:
            # Judged already. Whatever this read found is not all the process holds: dropping
            # the rest would release namespaces it still holds, so the registry keeps its last read.
            return ProcessRead(pid, read_at, failed=True)

    def _read(self, pid: int, read_at: float) -> ProcessRead:
        at = f"{self._proc}/{pid}"
        comm = read_comm(f"{at}/comm")
        status = read_status(f"{at}/status")
        if is_nsfs_helper(comm, status, self._proc):
            return ProcessRead(pid, read_at)
        leader = dict(_ns_links(f"{at}/ns"))  # read once: its user namespace decides its credentials
        creds = self._creds(at, status, leader.get("user"))
        container = None if status is None else self.container(pid, status)
        sightings = list(process_sightings(pid, comm, creds, leader, proc=self._proc, container=container))
        mnt = leader.get("mnt")
        # An exiting process has let go of the namespaces its nsproxy held (mnt among
        # them) but, until reaped, still holds its pid and user namespaces.
        exiting = mnt is None and "pid" in leader
        if pid == self._own_pid:
            return ProcessRead(pid, read_at, tuple(sightings), mnt=mnt)
        if exiting:
            sightings.extend(thread_sightings(pid, leader, self.creds, self._proc, container))
            return ProcessRead(pid, read_at, tuple(sightings), mnt=mnt, exiting=True)
        fds = fd_sightings(pid, creds, self._proc, container)
        if is_nsfs_daemon(comm, fds.fuse, status):
            return ProcessRead(pid, read_at, tuple(sightings), frozenset(s.key for s in fds.namespaces), mnt)
        sightings.extend(thread_sightings(pid, leader, self.creds, self._proc, container))
        sightings.extend(fds.namespaces)
        sightings.extend(self._socket_sightings(pid, fds.sockets, creds, container))
        return ProcessRead(pid, read_at, tuple(sightings), mnt=mnt)

    def creds(self, path: str, userns: NsKey | None) -> Creds | None:
        """The credentials of the process or thread at `path` (/proc/PID, /proc/PID/task/TID),
        in user namespace `userns`; None if it is gone."""
        return self._creds(path, read_status(f"{path}/status"), userns)

    def _creds(self, path: str, status: Status | None, userns: NsKey | None) -> Creds | None:
        if status is None:
            return None
        root = 0 if userns == self._userns else root_uid(f"{path}/uid_map")
        return process_creds(status, userns, root, self._userns)

    def container(self, pid: int, status: Status) -> Container | None:
        """The container (or service) process `pid` belongs to: its cgroup says, or, for a
        process below the daemon's pid namespace that no cgroup places, the monitor that
        started its container (the first ancestor outside its pid namespace). None if neither
        does. Never fails the process's read: what cannot be read places nothing."""
        placed = placed_by_cgroup_file(read_cgroup(f"{self._proc}/{pid}/cgroup"))
        if placed is None and status.depth > self._depth:
            placed = self._monitor(status.ppid, status.depth)
        return None if placed is None else self._names.container(placed)

    def _monitor(self, ppid: int, depth: int) -> Placed | None:
        """What the first of a process's ancestors that a shallower pid namespace numbers (its
        container's monitor: conmon, a containerd shim, runc) says of the container, from its
        arguments. None if no ancestor up to MONITOR_HOPS is one."""
        walked: list[int] = []
        placed: Placed | None = None
        for _hop in range(MONITOR_HOPS):
            if ppid <= 0:
                break
            if ppid in self._monitors:
                placed = self._monitors[ppid]
                break
            walked.append(ppid)
            try:
                status = read_status(f"{self._proc}/{ppid}/status")
            except errors.Skip:  # judged: this process's container is not known this time
                return None
            if status is None:
                break
            if status.depth < depth:
                placed = placed_by_monitor(read_cmdline(f"{self._proc}/{ppid}/cmdline"))
                if placed is not None and status.uids[1] != 0:
                    # Anyone may run a process named conmon: a user's monitor names only what
                    # that user's own storage holds.
                    placed = replace(placed, uid=status.uids[1])
                break
            ppid = status.ppid
        for pid in walked:  # its descendants met on the way share its answer
            self._monitors[pid] = placed
        return placed

    def pids(self) -> list[int]:
        """Every process /proc lists, in order."""
        return sorted(int(name) for name in listdir(self._proc) if name.isdigit())

    def sweep(self, each: Callable[[list[ProcessRead]], bool], pids: list[int] | None = None) -> bool:
        """Read every process, CHUNK at a time, handing each chunk to `each`.

        `each` returns False to abandon the sweep; the result says whether it ran to the end.
        Bind mounts are not swept: every mount table is followed (mount_tables.py).
        """
        self._sockets_met = set()
        self._monitors = {}  # a pid read last sweep may be another process now
        if pids is None:
            pids = self.pids()
        for start in range(0, len(pids), CHUNK):
            if not each([self.read(pid) for pid in pids[start : start + CHUNK]]):
                return False
        met = self._sockets_met
        self._socket_ns = {inode: key for inode, key in self._socket_ns.items() if inode in met}
        return True

    def _socket_sightings(
        self, pid: int, sockets: list[tuple[int, int]], creds: Creds | None, container: Container | None
    ) -> list[Sighting]:
        if self._no_pidfd:
            return []
        sightings = []
        for fd, inode in sockets:
            self._sockets_met.add(inode)
            key = self._socket_ns.get(inode)
            if key is None:
                key = self._ask_socket_netns(pid, fd)
                if key is None:
                    continue
                self._socket_ns[inode] = key
            holder = Holder(HolderKind.SOCKET, pid, fd, f"socket:[{inode}]", creds=creds, container=container)
            sightings.append(Sighting(key, f"{self._proc}/{pid}/fd/{fd}", holder))
        return sightings

    def _ask_socket_netns(self, pid: int, fd: int) -> NsKey | None:
        """The network namespace of a socket; None if the socket is not there to ask, or this
        kernel cannot lend the daemon a process's fd (then no socket is asked again). A fault
        raises errors.Skip: the process's read fails whole."""
        try:
            netns = socket_netns(pid, fd)
        except errors.Skip as skip:
            if skip.errno in NO_PIDFD and not self._no_pidfd:
                self._no_pidfd = True
                log.warning("no pidfd_getfd (Linux 5.6+) here: sockets are not found as holders")
            if skip.answered:
                return None
            raise
        try:
            with errors.step("ns_key", f"socket {fd} of {pid}"):
                return kernel.key_of_fd(netns, self._nsfs_dev)
        finally:
            os.close(netns)


def still_holds(key: NsKey, holder: Holder, proc: str = PROC) -> bool | None:
    """Whether an fd or socket holder still holds `key` (one readlink); None for other kinds."""
    if holder.kind is HolderKind.FD:
        expected = key.name
    elif holder.kind is HolderKind.SOCKET:
        expected = holder.text  # a socket's namespace never changes: the same socket still holds it
    else:
        return None
    try:
        return readlink(f"{proc}/{holder.pid}/fd/{holder.num}") == expected
    except errors.Skip:
        return None  # judged: not known now, looked at again at the next check


@errors.or_default("fd_count", 0)
def _fd_dir_size(path: str) -> int:
    return os.stat(path).st_size


def fd_count(pid: int, proc: str = PROC) -> int:
    """How many fds process `pid` has open (Linux 6.2+; 0 before, or if it is gone)."""
    return _fd_dir_size(f"{proc}/{pid}/fd")


def ns_link(pid: int, nstype: str, proc: str = PROC) -> str | None:
    """What /proc/PID/ns/TYPE reads as; None if the process is gone (or it cannot be read)."""
    try:
        return readlink(f"{proc}/{pid}/ns/{nstype}")
    except errors.Skip:
        return None


def process_of(tid: int, proc: str = PROC) -> int | None:
    """The process (thread group) a thread belongs to; None if it is gone."""
    try:
        status = read_status(f"{proc}/{tid}/status")
    except errors.Skip:  # judged: a fault reading it, which costs this look alone
        return None
    return None if status is None else status.tgid


def caller_sightings(tid: int, proc: str = PROC) -> list[Sighting]:
    """The namespaces of one calling thread: a handful of readlinks, cheap enough for a handler.
    [] where one of them faults (judged): the caller sees what its user namespace sees, less its own."""
    try:
        return list(process_sightings(tid, read_comm(f"{proc}/{tid}/comm"), proc=proc))
    except errors.Skip:
        return []
