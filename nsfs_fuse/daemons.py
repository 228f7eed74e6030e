"""nsfs daemons and their helper processes, as a scan meets them: an nsfs daemon's pins are
not holders, and a helper (the sweep's reader, one sitting in a mount namespace nobody else
is in) holds nothing. Starting and ending a helper in a mount namespace.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

from .procfs import PROC, Status, read_comm, read_status

# What an nsfs daemon calls itself, and the prefix its helper processes' names begin with
# (nsfs-sweep, nsfs-mnt). A name is only where recognition starts: see `is_nsfs_daemon`.
DAEMON_COMM = "nsfs"
HELPER_PREFIX = "nsfs-"
# A daemon keeps /dev/fuse open from before its first scan to its exit (cli.py).
FUSE_DEVICE = "/dev/fuse"


def is_nsfs_daemon(comm: str, fuse: bool, status: Status | None) -> bool:
    """A process that is an nsfs daemon: its pins are not holders.

    Two daemons that counted each other's pins would keep every namespace they ever
    saw alive. A daemon names itself "nsfs", runs with every uid 0 (real, effective,
    saved: what an unprivileged process cannot get by naming itself so, nor by making
    itself undumpable, which only changes who owns its /proc files) and keeps
    /dev/fuse open.
    """
    return comm == DAEMON_COMM and fuse and status is not None and status.root


def is_nsfs_helper(comm: str, status: Status | None, proc: str = PROC) -> bool:
    """A helper process of an nsfs daemon (its sweep reader, or one sitting in a mount
    namespace nobody else is in to read its table): it holds nothing.

    Its name begins with "nsfs-", it runs as root, and its parent is a root process named
    "nsfs": a process cannot choose its parent, and one that outlives its daemon is
    re-parented away from it.
    """
    if not comm.startswith(HELPER_PREFIX) or status is None or not status.root:
        return False
    parent = read_status(f"{proc}/{status.ppid}/status")
    return parent is not None and parent.root and read_comm(f"{proc}/{status.ppid}/comm") == DAEMON_COMM


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
