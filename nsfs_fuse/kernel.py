"""Thin, typed wrappers over the kernel's namespace interfaces.

Every function here is one system call (or a fixed handful) and raises OSError
exactly as the kernel reports it. Policy (what to skip, what an errno means to
the scan) belongs to the callers.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import socket
import struct
import time
from typing import Final

from .model import NsKey

# The CLONE_NEW* flag of each namespace type: what NS_GET_NSTYPE returns.
CLONE_FLAGS: Final[dict[str, int]] = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "mnt": 0x00020000,
    "net": 0x40000000,
    "pid": 0x20000000,
    "time": 0x00000080,
    "user": 0x10000000,
    "uts": 0x04000000,
}
TYPE_OF_FLAG: Final[dict[int, str]] = {flag: name for name, flag in CLONE_FLAGS.items()}


# <linux/nsfs.h>, generic _IOC layout (x86_64, arm64, riscv).
NS_GET_USERNS: Final = 0xB701
NS_GET_PARENT: Final = 0xB702
NS_GET_NSTYPE: Final = 0xB703
NS_GET_OWNER_UID: Final = 0xB704
NS_GET_PID_IN_PIDNS: Final = 0x8004B708  # _IOR(0xb7, 8, int), Linux 6.11; the pid goes by value
NS_GET_ID: Final = 0x8008B70D  # _IOR(0xb7, 13, __u64), Linux 6.18
SIOCGSKNS: Final = 0x894C  # a socket's network namespace, Linux 4.9
SYS_PIDFD_OPEN: Final = 434  # x86_64 and the generic table
SYS_PIDFD_GETFD: Final = 438

OVERFLOW_UID: Final = 65534

# nsfs file handles (Linux 6.18): a handle names a namespace without holding it,
# and opens relative to the kernel's own nsfs mount, never a user's bind mount.
FD_NSFS_ROOT: Final = -10003
AT_EMPTY_PATH: Final = 0x1000
MAX_HANDLE_SZ: Final = 128
# What name_to_handle_at / open_by_handle_at say on kernels without nsfs handles.
NO_HANDLES: Final = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ENOSYS, errno.EPERM})
# What open_by_handle_at says to a caller outside the initial pid namespace for a live
# namespace the caller is not in: the kernel refuses it (the "tighten nstree visibility
# checks" series, in 7.0 and backported to 6.18.y, allows that only to a caller in the
# initial pid namespace with CAP_SYS_ADMIN there), and every refusal while decoding a handle
# comes back as ESTALE, as for a namespace that is gone. Measured on 6.18.44: in a child pid
# namespace its own namespaces open by handle and a live `unshare --net`'s does not; from
# the initial pid namespace both do. Only a caller that holds the namespace can tell
# refused from gone.
HANDLE_REFUSED: Final = errno.ESTALE
FILEID_NSFS: Final = 0xF1  # an nsfs handle's type: struct nsfs_file_handle {u64 ns_id; u32 ns_type; u32 ns_inum}

# listns(2), Linux 6.19: the ids of the namespaces in use (those something other than a
# passive reference holds: a task, an open nsfs file, a bind mount, a child) that the
# caller may see, in increasing order. Ids are never reused, so the ids above the last one
# seen are exactly the namespaces made since. The number is the same on every architecture.
SYS_LISTNS: Final = 470
_NS_ID_REQ: Final = struct.Struct("IIQIIQ")  # size, spare, ns_id (list after it), ns_type, spare2, user_ns_id

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def namespace_limits(sysctl: str = "/proc/sys/user") -> dict[str, int]:
    """The kernel's limit on namespaces of each type one user may own, in the reader's user
    namespace (/proc/sys/user/max_TYPE_namespaces: creating one more fails with ENOSPC). A
    type whose file cannot be read is left out."""
    limits = {}
    for nstype in CLONE_FLAGS:
        try:
            with open(f"{sysctl}/max_{nstype}_namespaces", encoding="ascii") as f:
                limits[nstype] = int(f.read())
        except (OSError, ValueError):
            continue
    return limits


def nsfs_device() -> int:
    """st_dev of the kernel's nsfs: taken from a live ns file, never hard-coded."""
    return os.stat("/proc/self/ns/user").st_dev


def open_ns(path: str) -> int:
    """Open a namespace file (or anything that resolves to one) as a pin."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def get_userns(fd: int) -> int:
    """A new fd for the user namespace owning the namespace behind `fd`."""
    return fcntl.ioctl(fd, NS_GET_USERNS)


def get_parent(fd: int) -> int:
    """A new fd for the parent of a pid or user namespace."""
    return fcntl.ioctl(fd, NS_GET_PARENT)


def get_nstype(fd: int) -> str:
    """The type name of the namespace behind `fd`."""
    flag = fcntl.ioctl(fd, NS_GET_NSTYPE)
    try:
        return TYPE_OF_FLAG[flag]
    except KeyError:
        raise OSError(errno.EINVAL, f"unknown namespace type {flag:#x}") from None


def get_owner_uid(fd: int) -> int:
    """The creator's uid of a user namespace, as seen from the caller's user namespace."""
    buf = bytearray(4)
    fcntl.ioctl(fd, NS_GET_OWNER_UID, buf, True)
    return int(struct.unpack("I", buf)[0])


def get_ns_id(fd: int) -> int | None:
    """The kernel's 64-bit, never-reused namespace id, or None on kernels without it."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, NS_GET_ID, buf, True)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            return None
        raise
    return int(struct.unpack("Q", buf)[0])


def pid_in_pidns(fd: int, pid: int) -> int:
    """`pid` (of the caller's pid namespace) as the pid namespace behind `fd` numbers it; ESRCH if it is not in it."""
    return fcntl.ioctl(fd, NS_GET_PID_IN_PIDNS, pid)


def socket_netns(sock: int) -> int:
    """A new fd on the network namespace a socket belongs to."""
    return fcntl.ioctl(sock, SIOCGSKNS)


def setns(fd: int, flag: int) -> None:
    """Move the calling thread into the namespace open at `fd` (setns(2)); `flag` is its CLONE_NEW*."""
    _check(_libc.setns(fd, flag))


def mount_id(fd: int) -> int:
    """The id of the mount an open file is reached through (its fdinfo's mnt_id)."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
        for line in info:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOENT, f"no mnt_id in /proc/self/fdinfo/{fd}")


def pidfd_open(pid: int) -> int:
    """A pidfd of process `pid` (Linux 5.3); through syscall(2), as Pythons built against older
    headers have no os.pidfd_open: ENOSYS where the kernel lacks it."""
    return _check(_libc.syscall(SYS_PIDFD_OPEN, pid, 0))


def pidfd_getfd(pidfd: int, fd: int) -> int:
    """A duplicate of another process's fd (needs ptrace access to it), close-on-exec."""
    return _check(_libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0))


def key_of_fd(fd: int, nsfs_dev: int) -> NsKey:
    """Type and inode of an open namespace fd; ENOTTY if it is not an nsfs file."""
    st = os.fstat(fd)
    if st.st_dev != nsfs_dev:
        raise OSError(errno.ENOTTY, "not a namespace file")
    return NsKey(get_nstype(fd), st.st_ino)


class _FileHandle(ctypes.Structure):
    _fields_ = (
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ),
    )


def ns_handle(fd: int) -> bytes | None:
    """The nsfs file handle of the namespace behind `fd`, or None if this kernel has none."""
    handle = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    result = _libc.name_to_handle_at(fd, b"", ctypes.byref(handle), ctypes.byref(mount_id), AT_EMPTY_PATH)
    if result == -1:
        err = ctypes.get_errno()
        if err in NO_HANDLES:
            return None
        raise OSError(err, os.strerror(err))
    return bytes(handle)[: 8 + handle.handle_bytes]


def open_ns_handle(handle: bytes) -> int:
    """Open a namespace by its handle: ESTALE or ENOENT once it is gone."""
    buf = ctypes.create_string_buffer(handle, ctypes.sizeof(_FileHandle))
    return _check(_libc.open_by_handle_at(FD_NSFS_ROOT, buf, os.O_RDONLY | os.O_CLOEXEC))


def handle_of_id(ns_id: int) -> bytes:
    """The nsfs file handle that names the namespace with id `ns_id`: its type and inode left
    0, which the kernel then does not check (Linux 6.19+: the id alone finds it)."""
    return struct.pack("IiQII", 16, FILEID_NSFS, ns_id, 0, 0)


def listns(after: int, count: int) -> list[int]:
    """The ids above `after` of the namespaces in use the caller may see, in increasing order,
    at most `count`; [] if there are none (the kernel says ENOENT then). ENOSYS before 6.19."""
    request = ctypes.create_string_buffer(_NS_ID_REQ.pack(_NS_ID_REQ.size, 0, after, 0, 0, 0), _NS_ID_REQ.size)
    ids = (ctypes.c_uint64 * count)()
    found = _libc.syscall(SYS_LISTNS, request, ids, ctypes.c_size_t(count), ctypes.c_uint(0))
    if found == -1:
        err = ctypes.get_errno()
        if err == errno.ENOENT:
            return []
        raise OSError(err, os.strerror(err))
    return list(ids[:found])


# membarrier(2): MEMBARRIER_CMD_GLOBAL returns after an RCU grace period on every CPU.
_SYS_MEMBARRIER: Final = {"x86_64": 324, "aarch64": 283, "riscv64": 283}
_MEMBARRIER_CMD_GLOBAL: Final = 1


def grace_periods(count: int) -> None:
    """Wait out `count` RCU grace periods: what the kernel defers when a reference to a
    namespace is dropped is done by then. Sleeps 20 ms a period where membarrier is missing,
    and on a single CPU, where it returns at once without waiting for one."""
    number = _SYS_MEMBARRIER.get(os.uname().machine)
    for _ in range(count):
        if number is None or os.cpu_count() == 1 or _libc.syscall(number, _MEMBARRIER_CMD_GLOBAL, 0, 0) != 0:
            time.sleep(0.02)


def set_process_name(name: str) -> None:
    """prctl(PR_SET_NAME): what /proc/PID/comm shows for this thread."""
    pr_set_name = 15
    _check(_libc.prctl(pr_set_name, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0))


def raise_fd_limit() -> int:
    """Raise the soft fd limit to the hard one (one pin per namespace); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def limit_malloc_arenas(arenas: int) -> None:
    """mallopt(M_ARENA_MAX): glibc gives each thread that allocates an arena of its own.

    The daemon's worker threads (sweeps, process events, probes) run Python, so
    only one of them allocates at a time anyway; an arena each only raises the
    high-water mark of its memory. Call before any thread starts. A libc without
    mallopt is left alone.
    """
    m_arena_max = -8
    mallopt = getattr(_libc, "mallopt", None)
    if mallopt is not None:
        mallopt(ctypes.c_int(m_arena_max), ctypes.c_int(arenas))


# The proc connector (<linux/cn_proc.h>): fork, exec and exit of every process, over netlink.
NETLINK_CONNECTOR: Final = 11
CN_IDX_PROC: Final = 1
CN_VAL_PROC: Final = 1
PROC_CN_MCAST_LISTEN: Final = 1
PROC_EVENT_FORK: Final = 0x00000001
PROC_EVENT_EXEC: Final = 0x00000002
PROC_EVENT_EXIT: Final = 0x80000000
# A process's uids or gids changed (setuid, setresgid, ...): what it lets others read may have.
PROC_EVENT_UID: Final = 0x00000004
PROC_EVENT_GID: Final = 0x00000040
CREDENTIAL_EVENTS: Final = frozenset({PROC_EVENT_UID, PROC_EVENT_GID})
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_PROC_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp
_PIDS = struct.Struct("=iiii")  # fork: parent pid, parent tgid, child pid, child tgid; others start pid, tgid
_NLMSG_DONE = 3
_SO_RCVBUFFORCE = 33
EVENT_BUFFER = 16 << 20  # room for a burst of tens of thousands of events while a batch is applied


def proc_events() -> socket.socket:
    """A non-blocking socket that receives every process's fork, exec and exit (and changes of
    uids and gids)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK, NETLINK_CONNECTOR)
    try:
        try:  # past net.core.rmem_max: needs CAP_NET_ADMIN, which the daemon usually has
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, EVENT_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)
        sock.bind((0, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(cn), _NLMSG_DONE, 0, 0, 0) + cn)
    except BaseException:
        sock.close()
        raise
    return sock


def parse_proc_events(data: bytes) -> list[tuple[int, int, int]]:
    """(what, pid, tgid) for each event in a datagram: the child for fork, the process otherwise."""
    events, offset = [], 0
    while offset + _NLMSGHDR.size <= len(data):
        length = _NLMSGHDR.unpack_from(data, offset)[0]
        body = offset + _NLMSGHDR.size + _CN_MSG.size
        if length < _NLMSGHDR.size or body + _PROC_EVENT.size + _PIDS.size > len(data):
            break
        what = _PROC_EVENT.unpack_from(data, body)[0]
        pids = _PIDS.unpack_from(data, body + _PROC_EVENT.size)
        if what == PROC_EVENT_FORK:
            events.append((what, pids[2], pids[3]))
        elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT) or what in CREDENTIAL_EVENTS:
            events.append((what, pids[0], pids[1]))
        offset += (length + 3) & ~3
    return events


# Network namespace ids (<linux/net_namespace.h>): the number a network namespace gives a peer,
# as `ip netns list-id` and lsns's NETNSID show it, asked over rtnetlink.
_RTM_NEWNSID: Final = 88
_RTM_GETNSID: Final = 90
_NLMSG_ERROR: Final = 2
_NLM_F_REQUEST: Final = 1
_NETNSA_NSID: Final = 1
_NETNSA_FD: Final = 3
NSID_NOT_ASSIGNED: Final = -1
_RTGENMSG = struct.Struct("=B3x")  # family, padded to 4
_RTATTR = struct.Struct("=HH")  # len, type
_GETNSID = _NLMSGHDR.size + _RTGENMSG.size + _RTATTR.size + 4


def rtnetlink() -> socket.socket:
    """A socket for `netnsid`, in the caller's network namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)


# RTM_GETNSID's reply is one small message: a page holds it whole.
_NETNSID_REPLY: Final = 4096


def netnsid(sock: socket.socket, ns_fd: int) -> int:
    """The id the caller's network namespace gives the network namespace open at `ns_fd`
    (RTM_GETNSID), or NSID_NOT_ASSIGNED if it gave it none."""
    sock.send(
        _NLMSGHDR.pack(_GETNSID, _RTM_GETNSID, _NLM_F_REQUEST, 0, 0)
        + _RTGENMSG.pack(socket.AF_UNSPEC)
        + _RTATTR.pack(_RTATTR.size + 4, _NETNSA_FD)
        + struct.pack("=i", ns_fd)
    )
    reply = sock.recv(_NETNSID_REPLY)
    _length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
        raise OSError(-error, os.strerror(-error))
    offset = _NLMSGHDR.size + _RTGENMSG.size
    while kind == _RTM_NEWNSID and offset + _RTATTR.size <= len(reply):
        size, attr = _RTATTR.unpack_from(reply, offset)
        if size < _RTATTR.size:
            break
        if attr == _NETNSA_NSID and size >= _RTATTR.size + 4:
            (nsid,) = struct.unpack_from("=i", reply, offset + _RTATTR.size)
            return int(nsid)
        offset += (size + 3) & ~3
    raise OSError(errno.EPROTO, "no network namespace id in the kernel's answer")
