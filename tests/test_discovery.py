"""Namespaces held each way discovery knows, and released when the holder goes.

Each test makes a namespace whose only holder is of one kind, checks that it is
listed, removes the holder, and checks that the entry goes and the daemon closes
its pin: the daemon must never be what keeps a namespace alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .nsutil import Daemon, Procs, assert_released, children, ns_of, run, running_daemon, wait_until


def test_held_by_a_process(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--net", "--ipc")
    names = ns_of(pid, "net"), ns_of(pid, "ipc")
    wait_until(lambda: set(names) <= nsfs.names(), "the namespaces of a new process")
    assert set(names) <= nsfs.pinned()
    procs.end(pid)
    assert_released(nsfs, baseline, *names)


THREAD_UNSHARES_NET = """
import ctypes, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def worker():
    assert libc.unshare(0x40000000) == 0, ctypes.get_errno()
    print(os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net"), flush=True)
    time.sleep(600)
threading.Thread(target=worker, daemon=True).start()
time.sleep(600)
"""


def test_held_by_a_thread_only(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    proc = procs.start(sys.executable, "-c", THREAD_UNSHARES_NET, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    name = proc.stdout.readline().decode().strip()
    assert name.startswith("net:[") and name != ns_of(proc.pid, "net"), "only the thread is in it"
    wait_until(lambda: name in nsfs.names(), "a thread's own namespace")
    procs.stop(proc)
    assert_released(nsfs, baseline, name)


def test_held_by_an_open_fd_only(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--net")
    name = ns_of(pid, "net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        procs.end(pid)
        wait_until(lambda: name in nsfs.names(), "a namespace held by an fd")
        # It stays while the fd is open: no process is in it any more.
        assert name in nsfs.names()
    finally:
        os.close(fd)
    assert_released(nsfs, baseline, name)


def test_held_by_a_bind_mount_only(nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path) -> None:
    pid = procs.sleeper("--net")
    name = ns_of(pid, "net")
    target = public_dir / "netns"
    target.touch()
    assert run(["mount", "--bind", f"/proc/{pid}/ns/net", str(target)]).returncode == 0
    try:
        procs.end(pid)
        wait_until(lambda: name in nsfs.names(), "a namespace held by a bind mount")
        assert nsfs.read(name, "nstype") == "net\n"
    finally:
        assert run(["umount", str(target)]).returncode == 0
    assert_released(nsfs, baseline, name)


def test_user_namespace_held_only_as_an_owner(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--net")
    user, net = ns_of(pid, "user"), ns_of(pid, "net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        procs.end(pid)
        # No process, fd or mount names the user namespace: only the net namespace it owns.
        wait_until(lambda: {user, net} <= nsfs.names(), "the owner of an fd-held namespace")
        assert os.readlink(nsfs.path(net, "owner")) == f"../{user}"
        assert nsfs.read(user, "nstype") == "user\n"
    finally:
        os.close(fd)
    assert_released(nsfs, baseline, user, net)


def test_pid_namespace_held_only_as_a_parent(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    nested = ("unshare", "--pid", "--fork") * 2
    proc = procs.start(*nested, "sleep", "600")
    inner = procs.wait_for_sleep(proc)
    outer = ns_of(children(proc.pid)[0], "pid")
    child = ns_of(inner, "pid")
    fd = os.open(f"/proc/{inner}/ns/pid", os.O_RDONLY)
    try:
        procs.stop(proc)  # the outer init dies, and every process of both namespaces with it
        wait_until(lambda: {outer, child} <= nsfs.names(), "a parent pid namespace with no process")
        assert os.readlink(nsfs.path(child, "parent")) == f"../{outer}"
    finally:
        os.close(fd)
    assert_released(nsfs, baseline, outer, child)


def test_pid_namespace_held_only_for_children(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    # Without --fork, unshare's own process stays in its pid namespace; the new one is
    # only its children's. The kernel refuses to open it until its first child (its
    # init) exists, so `(true)` forks one that exits at once: no process is left in it.
    proc = procs.start("unshare", "--pid", "sh", "-c", "(true); exec sleep 600")
    pid = procs.wait_for_sleep(proc)
    name = os.readlink(f"/proc/{pid}/ns/pid_for_children")
    assert name != ns_of(pid, "pid")
    wait_until(lambda: name in nsfs.names(), "a pid namespace held for children")
    procs.stop(proc)
    assert_released(nsfs, baseline, name)


UNSHARE_TIME_NO_EXEC = """
import ctypes, os, time
assert ctypes.CDLL(None, use_errno=True).unshare(0x80) == 0
print(os.readlink("/proc/self/ns/time_for_children"), flush=True)
time.sleep(600)
"""


def test_time_namespace_held_only_for_children(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    # After exec a process enters its time_for_children itself: this one never execs.
    proc = procs.start(sys.executable, "-c", UNSHARE_TIME_NO_EXEC, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    name = proc.stdout.readline().decode().strip()
    assert name.startswith("time:[") and name != ns_of(proc.pid, "time")
    wait_until(lambda: name in nsfs.names(), "a time namespace held for children")
    procs.stop(proc)
    assert_released(nsfs, baseline, name)


def test_two_daemons_do_not_keep_each_other_s_namespaces(
    nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path
) -> None:
    with running_daemon(public_dir / "second") as second:
        second_baseline = second.fd_count()
        pid = procs.sleeper("--net")
        name = ns_of(pid, "net")
        wait_until(lambda: name in nsfs.pinned() and name in second.pinned(), "both daemons to pin it")
        procs.end(pid)
        # Each daemon's pin is an open fd on the namespace: neither may count the other's.
        assert_released(nsfs, baseline, name)
        assert_released(second, second_baseline, name)
