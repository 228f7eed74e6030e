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

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import psutil

from . import errors, kernel, mountinfo
from .model import NS_TYPES, Creds, Holder, HolderKind, NsKey, ProcessRead, Sighting, parse_ns_name

# What an nsfs daemon calls itself, and the prefix its helper processes' names begin with
# (nsfs-sweep, nsfs-mnt). A name is only where recognition starts: see `is_nsfs_daemon`.
DAEMON_COMM = "nsfs"
HELPER_PREFIX = "nsfs-"
# A daemon keeps /dev/fuse open from before its first scan to its exit (cli.py).
FUSE_DEVICE = "/dev/fuse"

# What SIOCGSKNS says of an fd that is no longer a socket, or a socket with no namespace to tell.
NO_SOCKET_NS = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOTSOCK})


# The reads below are parts of a process's read: a fault raises errors.Skip, for the
# whole read to fail (Scanner.read), while a gone or denied part is just missing.


@errors.or_skip("readlink", None)
def _readlink(path: str) -> str | None:
    return os.readlink(path)


@errors.or_skip("listdir", ())
def _listdir(path: str) -> Iterable[str]:
    return os.listdir(path)


@errors.or_skip("comm_read", "")
def _read_comm(path: str) -> str:
    """A process's or thread's command name (raw os calls: a text file object costs 50 us)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 64).decode("utf-8", "replace").rstrip("\n")
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Status:
    """What a process's or thread's /proc/.../status says of its credentials, and who owns it."""

    tgid: int
    ppid: int  # the parent's pid (its thread group's)
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    gids: tuple[int, int, int, int]
    permitted: int  # permitted capabilities (CapPrm)
    caps: int  # effective capabilities (CapEff)
    # The file's owner: the effective uid and gid while the process is dumpable; the root of
    # the user namespace it last exec'd in (or the initial one's) while it is not.
    owner: tuple[int, int]

    @property
    def root(self) -> bool:
        """Whether every uid is 0: what no unprivileged process can give itself."""
        return not any(self.uids)


_STATUS_FIELDS = (b"Tgid", b"PPid", b"Uid", b"Gid", b"CapPrm", b"CapEff")


@errors.or_skip("status_read", None)
def read_status(path: str) -> Status | None:
    """One read of a /proc/.../status file (raw os calls, as `_read_comm`: it is read once per
    process read); None if the process is gone."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.fstat(fd)
        text = os.read(fd, 16384)
    finally:
        os.close(fd)
    fields: dict[bytes, bytes] = {}
    for line in text.split(b"\n"):
        name, _, value = line.partition(b":")
        if name in _STATUS_FIELDS:
            fields[name] = value
            if name == b"CapEff":
                break  # the last of them
    uids, gids = _ids(fields.get(b"Uid")), _ids(fields.get(b"Gid"))
    if uids is None or gids is None:
        return None  # not a status file as the kernel writes it: treat it as gone
    # Missing (a read cut short): taken as none effective and all permitted, which shows less.
    permitted, caps = int(fields.get(b"CapPrm", b"ffffffffffffffff"), 16), int(fields.get(b"CapEff", b"0"), 16)
    tgid, ppid = int(fields.get(b"Tgid", b"0")), int(fields.get(b"PPid", b"0"))
    return Status(tgid, ppid, uids, gids, permitted, caps, (stat.st_uid, stat.st_gid))


def _ids(value: bytes | None) -> tuple[int, int, int, int] | None:
    words = (value or b"").split()
    if len(words) != 4:
        return None
    real, effective, saved, fs = (int(word) for word in words)
    return real, effective, saved, fs


@errors.or_skip("uid_map_read", 0)
def root_uid(path: str) -> int:
    """The uid the root of a user namespace has outside it, as the daemon numbers uids, from
    the `uid_map` of a process in it. 0 where its root is not mapped: the kernel then makes
    the initial namespace's root the owner of a non-dumpable process's /proc files."""
    with open(path, encoding="ascii") as f:
        for line in f:
            inside, outside, _count = line.split()
            if inside == "0":
                return int(outside)
    return 0


def process_creds(status: Status, userns: NsKey | None, root: int, top: NsKey | None) -> Creds:
    """What the kernel's ptrace read check asks of a process (docs/design.md, "Who sees what").

    `root` is the uid the root of `userns` has, `top` the daemon's own user namespace. A
    process that is not dumpable is told by the owner of its /proc files, which is then the
    root of the user namespace it last exec'd in rather than its effective uid and gid. Where
    its effective uid is that root's, /proc cannot tell: it is taken to be not dumpable (so
    that a doubt shows less).
    """
    real, effective, saved, _fs = status.uids
    undumpable: NsKey | None = None
    if status.owner != (effective, status.gids[1]) or effective == root:
        # The kernel then asks for CAP_SYS_PTRACE in the namespace it last exec'd in: its own,
        # if its /proc files belong to its own root; otherwise one above it, unknown: the top.
        undumpable = userns if status.owner[0] == root else top
    return Creds((real, effective, saved), status.gids[:3], status.permitted, status.owner[0], userns, undumpable)


def _ns_key(path: str) -> NsKey | None:
    """The namespace a /proc ns link names; None if it is gone."""
    target = _readlink(path)
    return None if target is None else parse_ns_name(target)


def _ns_links(directory: str, links: Iterable[str] = NS_TYPES) -> Iterator[tuple[str, NsKey]]:
    """(link name, key) for each readable namespace link in a /proc .../ns directory."""
    for link in links:
        target = _readlink(f"{directory}/{link}")
        if target is not None and (key := parse_ns_name(target)) is not None:
            yield link, key


def process_sightings(
    pid: int, comm: str = "", creds: Creds | None = None, links: dict[str, NsKey] | None = None
) -> Iterator[Sighting]:
    """The namespaces a process is in (`links`, if its ns links were read already), and those
    its next children will get."""
    ns_dir = f"/proc/{pid}/ns"
    holder = Holder(HolderKind.PROCESS, pid, text=comm, creds=creds)  # one for all its links: kept per process
    for link, key in (dict(_ns_links(ns_dir)) if links is None else links).items():
        yield Sighting(key, f"{ns_dir}/{link}", holder)
    for_children = Holder(HolderKind.FOR_CHILDREN, pid, creds=creds)
    for link, key in _ns_links(ns_dir, ("pid_for_children", "time_for_children")):
        yield Sighting(key, f"{ns_dir}/{link}", for_children)


def thread_sightings(
    pid: int, leader: dict[str, NsKey], creds: Callable[[str, NsKey | None], Creds | None]
) -> Iterator[Sighting]:
    """Namespaces of threads that differ from their leader's (a thread may unshare or setns alone).

    A thread has credentials of its own (`creds(its /proc path, its user namespace)`): reading
    its /proc/PID/task/TID/ns is up to them."""
    for name in _listdir(f"/proc/{pid}/task"):
        tid = int(name)
        if tid == pid:
            continue
        task = f"/proc/{pid}/task/{tid}"
        links = dict(_ns_links(f"{task}/ns"))
        differing = [(link, key) for link, key in links.items() if leader.get(link) != key]
        if not differing:
            continue
        comm = _read_comm(f"{task}/comm")
        holder = Holder(HolderKind.TASK, pid, tid, comm, creds=creds(task, links.get("user", leader.get("user"))))
        for link, key in differing:
            yield Sighting(key, f"{task}/ns/{link}", holder)


@dataclass(frozen=True, slots=True)
class Fds:
    """What one readlink of each of a process's fds tells."""

    namespaces: list[Sighting]  # fds on namespace files
    sockets: list[tuple[int, int]]  # (fd, socket inode)
    fuse: bool  # whether it has /dev/fuse open: one mark of an nsfs daemon


def fd_sightings(pid: int, creds: Creds | None = None) -> Fds:
    """Open fds on namespace files, the (fd, socket inode) of every socket, and whether
    /dev/fuse is among them.

    A namespace fd reads back as `type:[inode]`, a socket as `socket:[inode]`, a
    file as an absolute path: one readlink tells them apart.
    """
    fd_dir = f"/proc/{pid}/fd"
    namespaces, sockets, fuse = [], [], False
    for name in _listdir(fd_dir):
        path = f"{fd_dir}/{name}"
        target = _readlink(path)
        if target is None:
            continue
        if target.startswith("/"):
            fuse = fuse or target == FUSE_DEVICE
        elif target.startswith("socket:["):
            sockets.append((int(name), int(target[8:-1])))
        elif (key := parse_ns_name(target)) is not None:
            namespaces.append(Sighting(key, path, Holder(HolderKind.FD, pid, int(name), creds=creds)))
    return Fds(namespaces, sockets, fuse)


def socket_netns(pid: int, fd: int) -> int:
    """A new fd on the network namespace of socket `fd` of process `pid`; errors.Skip if
    there is none to be had (answered: the socket or its process is gone, or it is no
    socket with a namespace now)."""
    item = f"socket {fd} of {pid}"
    with errors.step("pidfd_open", item):
        pidfd = kernel.pidfd_open(pid)
    try:
        with errors.step("pidfd_getfd", item):
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


def is_nsfs_daemon(comm: str, fds: Fds, status: Status | None) -> bool:
    """A process that is an nsfs daemon: its pins are not holders.

    Two daemons that counted each other's pins would keep every namespace they ever
    saw alive. A daemon names itself "nsfs", runs with every uid 0 (real, effective,
    saved: what an unprivileged process cannot get by naming itself so, nor by making
    itself undumpable, which only changes who owns its /proc files) and keeps
    /dev/fuse open.
    """
    return comm == DAEMON_COMM and fds.fuse and status is not None and status.root


def is_nsfs_helper(comm: str, status: Status | None) -> bool:
    """A helper process of an nsfs daemon (its sweep reader, or one sitting in a mount
    namespace nobody else is in to read its table): it holds nothing.

    Its name begins with "nsfs-", it runs as root, and its parent is a root process named
    "nsfs": a process cannot choose its parent, and one that outlives its daemon is
    re-parented away from it.
    """
    if not comm.startswith(HELPER_PREFIX) or status is None or not status.root:
        return False
    parent = read_status(f"/proc/{status.ppid}/status")
    return parent is not None and parent.root and _read_comm(f"/proc/{status.ppid}/comm") == DAEMON_COMM


# Sits in a mount namespace no process is in, so that the daemon can read its
# mountinfo and open its bind mounts through /proc/PID/root. It execs nothing
# after setns: that namespace's files may not even have a Python. It names itself
# first (every daemon's scan knows it as a helper by that name and its parent), and
# keeps no fd on the namespace: being in it is all it needs.
_ENTER_MNTNS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, b"nsfs-mnt", 0, 0, 0)
fd = int(sys.argv[1])
if libc.setns(fd, 0x20000) != 0:
    sys.exit(1)
os.close(fd)
print("in", flush=True)
sys.stdin.read()
"""


def enter_mount_namespace(fd: int) -> subprocess.Popen[bytes] | None:
    """A helper process in the mount namespace behind `fd`, or None if it cannot get in.

    It stays there until killed (or its stdin closes); scans must not count it as a holder.
    """
    helper = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _ENTER_MNTNS, str(fd)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        pass_fds=(fd,),
    )
    assert helper.stdout is not None
    if helper.stdout.readline() == b"in\n":
        return helper
    end_helper(helper)
    return None


def end_helper(helper: subprocess.Popen[bytes]) -> None:
    """Kill one of the daemon's helper processes, reap it, and close its pipes."""
    with contextlib.suppress(ProcessLookupError):
        helper.kill()
    helper.wait()
    for pipe in (helper.stdin, helper.stdout):
        if pipe is not None:
            pipe.close()


# Processes read between two calls of a sweep's `each`: small enough that a paced
# sweep is smooth and that the registry sees a sweep's findings as it goes.
CHUNK = 64


class Scanner:
    """Reads of /proc, remembering what does not change between them.

    `read` may run in several threads at once (process events and a sweep).
    """

    def __init__(self, own_pid: int, nsfs_dev: int) -> None:
        self._own_pid = own_pid
        self.helpers: set[int] = set()  # the daemon's own helper processes: never holders
        self._nsfs_dev = nsfs_dev
        # The daemon's user namespace: whose root is uid 0 as /proc numbers uids for it.
        self._userns = _ns_key("/proc/self/ns/user")
        # A socket's network namespace never changes: ask the kernel once per socket.
        self._socket_ns: dict[int, NsKey] = {}
        self._sockets_met: set[int] = set()  # socket inodes read since the sweep began

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
        comm = _read_comm(f"/proc/{pid}/comm")
        status = read_status(f"/proc/{pid}/status")
        if is_nsfs_helper(comm, status):
            return ProcessRead(pid, read_at)
        leader = dict(_ns_links(f"/proc/{pid}/ns"))  # read once: its user namespace decides its credentials
        creds = self._creds(f"/proc/{pid}", status, leader.get("user"))
        sightings = list(process_sightings(pid, comm, creds, leader))
        mnt = leader.get("mnt")
        # An exiting process has let go of the namespaces its nsproxy held (mnt among
        # them) but, until reaped, still holds its pid and user namespaces.
        exiting = mnt is None and "pid" in leader
        if pid == self._own_pid:
            return ProcessRead(pid, read_at, tuple(sightings), mnt=mnt)
        if exiting:
            sightings.extend(thread_sightings(pid, leader, self.creds))
            return ProcessRead(pid, read_at, tuple(sightings), mnt=mnt, exiting=True)
        fds = fd_sightings(pid, creds)
        if is_nsfs_daemon(comm, fds, status):
            return ProcessRead(pid, read_at, tuple(sightings), frozenset(s.key for s in fds.namespaces), mnt)
        sightings.extend(thread_sightings(pid, leader, self.creds))
        sightings.extend(fds.namespaces)
        sightings.extend(self._socket_sightings(pid, fds.sockets, creds))
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

    def sweep(self, each: Callable[[list[ProcessRead]], bool]) -> bool:
        """Read every process, CHUNK at a time, handing each chunk to `each`.

        `each` returns False to abandon the sweep; the result says whether it ran to the end.
        Bind mounts are not swept: every mount table is followed (mount_tables.py).
        """
        self._sockets_met = set()
        pids = psutil.pids()
        for start in range(0, len(pids), CHUNK):
            if not each([self.read(pid) for pid in pids[start : start + CHUNK]]):
                return False
        met = self._sockets_met
        self._socket_ns = {inode: key for inode, key in self._socket_ns.items() if inode in met}
        return True

    def _socket_sightings(self, pid: int, sockets: list[tuple[int, int]], creds: Creds | None) -> list[Sighting]:
        sightings = []
        for fd, inode in sockets:
            self._sockets_met.add(inode)
            key = self._socket_ns.get(inode)
            if key is None:
                key = self._ask_socket_netns(pid, fd)
                if key is None:
                    continue
                self._socket_ns[inode] = key
            holder = Holder(HolderKind.SOCKET, pid, fd, f"socket:[{inode}]", creds=creds)
            sightings.append(Sighting(key, f"/proc/{pid}/fd/{fd}", holder))
        return sightings

    def _ask_socket_netns(self, pid: int, fd: int) -> NsKey | None:
        """The network namespace of a socket; None if the socket is not there to ask. A fault
        raises errors.Skip: the process's read fails whole."""
        try:
            netns = socket_netns(pid, fd)
        except errors.Skip as skip:
            if skip.answered:
                return None
            raise
        try:
            with errors.step("ns_key", f"socket {fd} of {pid}"):
                return kernel.key_of_fd(netns, self._nsfs_dev)
        finally:
            os.close(netns)


def still_holds(key: NsKey, holder: Holder) -> bool | None:
    """Whether an fd or socket holder still holds `key` (one readlink); None for other kinds."""
    if holder.kind is HolderKind.FD:
        expected = key.name
    elif holder.kind is HolderKind.SOCKET:
        expected = holder.text  # a socket's namespace never changes: the same socket still holds it
    else:
        return None
    try:
        return _readlink(f"/proc/{holder.pid}/fd/{holder.num}") == expected
    except errors.Skip:
        return None  # judged: not known now, looked at again at the next check


@errors.or_default("fd_count", 0)
def _fd_dir_size(path: str) -> int:
    return os.stat(path).st_size


def fd_count(pid: int) -> int:
    """How many fds process `pid` has open (Linux 6.2+; 0 before, or if it is gone)."""
    return _fd_dir_size(f"/proc/{pid}/fd")


def ns_link(pid: int, nstype: str) -> str | None:
    """What /proc/PID/ns/TYPE reads as; None if the process is gone (or it cannot be read)."""
    try:
        return _readlink(f"/proc/{pid}/ns/{nstype}")
    except errors.Skip:
        return None


def process_of(tid: int) -> int | None:
    """The process (thread group) a thread belongs to; None if it is gone."""
    try:
        status = read_status(f"/proc/{tid}/status")
    except errors.Skip:  # judged: a fault reading it, which costs this look alone
        return None
    return None if status is None else status.tgid


def caller_sightings(tid: int) -> list[Sighting]:
    """The namespaces of one calling thread: a handful of readlinks, cheap enough for a handler.
    [] where one of them faults (judged): the caller sees what its user namespace sees, less its own."""
    try:
        return list(process_sightings(tid, _read_comm(f"/proc/{tid}/comm")))
    except errors.Skip:
        return []
