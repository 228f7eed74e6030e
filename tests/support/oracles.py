"""The kernel asked directly, with raw ioctl numbers rather than nsfs_fuse.kernel, so that a bug
in the package's wrappers cannot hide itself: namespaces of a process, relatives, ids, handles."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from .waiting import run

NS_GET_USERNS, NS_GET_PARENT, NS_GET_ID = 0xB701, 0xB702, 0x8008B70D


NS_GET_PID_IN_PIDNS = 0x8004B708  # the pid goes by value


def ns_of(pid: int, link: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{link}")


def own_namespaces(pid: int, *but: str) -> set[str]:
    """Every namespace `pid` is in (the links of /proc/PID/ns), but those of the types `but`."""
    return {ns_of(pid, link) for link in os.listdir(f"/proc/{pid}/ns") if link.split("_")[0] not in but}


def fd_name(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def related_fd(fd: int, request: int) -> str | None:
    """Name of the owner (NS_GET_USERNS) or parent (NS_GET_PARENT) of an open namespace; None on EPERM."""
    try:
        rel = fcntl.ioctl(fd, request)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            return None
        raise
    try:
        return fd_name(rel)
    finally:
        os.close(rel)


def related(path: str, request: int) -> str | None:
    """As related_fd, for a namespace file's path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return related_fd(fd, request)
    finally:
        os.close(fd)


def ns_id(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, NS_GET_ID, buf, True)
        return int(struct.unpack("Q", buf)[0])
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def all_process_namespaces() -> set[str]:
    """What `ls /proc/*/ns/*` names, but for nsfs daemons' helpers: the floor of what the
    filesystem must list.

    A helper holds nothing (docs/design.md, "Pins and the probe"), and beside another daemon
    one of its mount-table helpers may sit on, for a moment, in a mount namespace whose last
    holder just went: that namespace is rightly not listed.
    """
    helpers = nsfs_helpers()
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) not in helpers:
            for link in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"):
                with contextlib.suppress(OSError):
                    found.add(ns_of(int(pid), link))
    return found


def nsfs_helpers() -> set[int]:
    """The helper processes of every nsfs daemon running: root processes whose parent is a
    root process named nsfs (a sweep's reader, a mount-table reader)."""
    daemons = {pid for pid in _pids() if comm(pid) == "nsfs" and _status(pid)[1]}
    helpers = set()
    for pid in _pids():
        parent, root = _status(pid)
        if parent in daemons and root:
            helpers.add(pid)
    return helpers


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _status(pid: int) -> tuple[int, bool]:
    """The parent of `pid` and whether every uid of it is 0; (0, False) if it is gone."""
    parent = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    parent = int(line.split()[1])
                elif line.startswith("Uid:"):
                    return parent, all(uid == "0" for uid in line.split()[1:])
    except OSError:
        pass
    return 0, False


# A namespace's file handle (Linux 6.18): opening it succeeds exactly while the
# namespace lives, whoever holds it. The kernel's own word on whether it is dead.
_libc = ctypes.CDLL(None, use_errno=True)


_FD_NSFS_ROOT, _AT_EMPTY_PATH, _MAX_HANDLE = -10003, 0x1000, 128


def ns_handle(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = ctypes.create_string_buffer(8 + _MAX_HANDLE)
        struct.pack_into("I", buf, 0, _MAX_HANDLE)
        mount_id = ctypes.c_int()
        if _libc.name_to_handle_at(fd, b"", buf, ctypes.byref(mount_id), _AT_EMPTY_PATH) != 0:
            raise OSError(ctypes.get_errno(), "name_to_handle_at")
        return buf.raw
    finally:
        os.close(fd)


def ns_alive(handle: bytes) -> bool:
    fd = _libc.open_by_handle_at(_FD_NSFS_ROOT, ctypes.create_string_buffer(handle, len(handle)), os.O_RDONLY)
    if fd < 0:
        assert ctypes.get_errno() in (errno.ESTALE, errno.ENOENT), os.strerror(ctypes.get_errno())
        return False
    os.close(fd)
    return True


def listns_ids() -> set[int]:
    """The ids of every namespace in use that listns(2) (Linux 6.19, system call 470 on x86_64)
    gives the caller: the kernel's own list. A request of its first size (32 bytes: size,
    spare, last id, types, spare, owner), a page of ids at a time."""
    found: set[int] = set()
    last, page = 0, (ctypes.c_uint64 * 512)()
    while True:
        request = struct.pack("IIQIIQ", 32, 0, last, 0, 0, 0)
        count = _libc.syscall(470, ctypes.create_string_buffer(request, 32), page, ctypes.c_size_t(512), 0)
        if count < 0:
            raise OSError(ctypes.get_errno(), "listns")
        found.update(page[:count])
        if count < 512:
            return found
        last = page[count - 1]


@contextlib.contextmanager
def veth_into(netns: str, name: str) -> Iterator[str]:
    """A veth pair with one end in the host and the other in the network namespace file
    `netns` (/proc/PID/ns/net, /proc/PID/task/TID/ns/net, /proc/PID/fd/N): the host end
    `name` vanishes when that namespace dies."""
    host = f"/proc/{os.getpid()}/ns/net"
    added = run(
        ["nsenter", f"--net={netns}", "ip", "link", "add", f"{name}p", "type", "veth", "peer", name, "netns", host]
    )
    assert added.returncode == 0, added.stderr
    try:
        yield name
    finally:
        if link_exists(name):
            run(["ip", "link", "del", name])


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def comm(pid: int) -> str:
    """A process's name; "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
