"""Reads of one /proc file each, as a process's read needs them: a namespace link, a command
name, a status (a process's or thread's credentials, and who owns its files), a uid_map, a
cgroup file and a command line (what places a process in a container: workloads.py).
Each is a part of a process's read: a fault raises errors.Skip, for the whole read to fail
(discovery.Scanner.read), while a gone or denied part is just missing.

`PROC` is where /proc is: every reader of /proc takes its root as a parameter, so that unit
tests can give them a tree of their own (tests/unit/proc/).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from . import errors
from .model import Creds, NsKey

PROC: Final = "/proc"
# A /proc status file is a few kilobytes: read whole in one read.
STATUS_READ: Final = 16384
COMM_READ: Final = 64
# A cgroup file is a line per hierarchy; a command line is read as far as a container
# monitor's options go.
CGROUP_READ: Final = 8192
CMDLINE_READ: Final = 16384


@errors.or_skip("readlink", None)
def readlink(path: str) -> str | None:
    return os.readlink(path)


@errors.or_skip("listdir", ())
def listdir(path: str) -> Iterable[str]:
    return os.listdir(path)


@errors.or_skip("comm_read", "")
def read_comm(path: str) -> str:
    """A process's or thread's command name (raw os calls: a text file object costs 50 us)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, COMM_READ).decode("utf-8", "replace").rstrip("\n")
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
    # How many pid namespaces number it, from the daemon's down (NSpid's words): a process
    # below the daemon's pid namespace has more than the daemon has. 1 where NSpid is missing.
    depth: int = 1

    @property
    def root(self) -> bool:
        """Whether every uid is 0: what no unprivileged process can give itself."""
        return not any(self.uids)


_STATUS_FIELDS = (b"Tgid", b"PPid", b"Uid", b"Gid", b"NSpid", b"CapPrm", b"CapEff")


@errors.or_skip("status_read", None)
def read_status(path: str) -> Status | None:
    """One read of a /proc/.../status file (raw os calls, as `read_comm`: it is read once per
    process read); None if the process is gone."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.fstat(fd)
        text = os.read(fd, STATUS_READ)
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
    depth = max(1, len(fields.get(b"NSpid", b"").split()))
    return Status(tgid, ppid, uids, gids, permitted, caps, (stat.st_uid, stat.st_gid), depth)


def _ids(value: bytes | None) -> tuple[int, int, int, int] | None:
    words = (value or b"").split()
    if len(words) != 4:
        return None
    real, effective, saved, fs = (int(word) for word in words)
    return real, effective, saved, fs


def _read_small(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


@errors.or_default("cgroup_read", "")
def read_cgroup(path: str) -> str:
    """A process's /proc/PID/cgroup; "" if it is gone. Not a part of its read that can fail it:
    a fault costs only knowing its container (judged, as errors.py says)."""
    return _read_small(path, CGROUP_READ).decode("utf-8", "surrogateescape")


@errors.or_default("cmdline_read", ())
def read_cmdline(path: str) -> tuple[str, ...]:
    """A process's arguments from /proc/PID/cmdline (as far as CMDLINE_READ); () if it is gone."""
    data = _read_small(path, CMDLINE_READ)
    return tuple(arg.decode("utf-8", "surrogateescape") for arg in data.rstrip(b"\0").split(b"\0")) if data else ()


# PF_KTHREAD, in the flags of /proc/PID/stat.
_KERNEL_THREAD: Final = 0x00200000


@errors.or_default("stat_read", False)
def is_kernel_thread(path: str) -> bool:
    """Whether /proc/PID at `path` is a kernel thread (False if it is gone). A kernel thread's
    own mount table need not be its mount namespace's: on Linux 7.x kthreadd's shows the
    kernel's first root alone, none of the mounts made since."""
    stat = _read_small(f"{path}/stat", STATUS_READ)
    fields = stat[stat.rfind(b")") + 2 :].split()  # after the command name, which may hold anything
    return len(fields) > 6 and int(fields[6]) & _KERNEL_THREAD != 0


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
