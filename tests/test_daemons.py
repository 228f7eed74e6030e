"""Several nsfs daemons at once: none counts another's pins or helpers as holders, and
together they keep nothing alive that each alone would let go.

Each test runs three daemons (the test's own and two more), beside whatever production
daemon the machine has mounted. A namespace's end is judged by the kernel: a veth whose
host end vanishes with its network namespace, a file handle that no longer opens.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, assert_released, running_daemon
from tests.support.features import has
from tests.support.oracles import link_exists, ns_alive, ns_handle, ns_of, veth_into
from tests.support.procs import Procs
from tests.support.waiting import run, wait_until


@pytest.fixture
def three(nsfs: Daemon, public_dir: Path) -> Iterator[list[tuple[Daemon, int]]]:
    """The test's daemon and two more, each with the fd count it started with."""
    with running_daemon(public_dir / "second") as second, running_daemon(public_dir / "third") as third:
        yield [(daemon, daemon.fd_count()) for daemon in (nsfs, second, third)]


def holders(nsfs: Daemon, name: str) -> list[str] | None:
    try:
        return nsfs.read(name, "holders").splitlines()
    except FileNotFoundError:
        return None


def _holds(nsfs: Daemon, name: str, expected: list[str]) -> bool:
    return holders(nsfs, name) == expected


def _pins(nsfs: Daemon, names: set[str]) -> bool:
    return names <= nsfs.names() and names <= nsfs.pinned()


def members(mnt: str) -> dict[int, tuple[str, int]]:
    """The processes in mount namespace `mnt`: pid -> (comm, parent pid)."""
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{name}/ns/mnt") == mnt:
                status = Path(f"/proc/{name}/status").read_text()
                ppid = int(status.split("PPid:", 1)[1].split()[0])
                found[int(name)] = (Path(f"/proc/{name}/comm").read_text().strip(), ppid)
    return found


@pytest.fixture
def private_dir(public_dir: Path) -> Iterator[Path]:
    """A directory that is a private mount of its own, as `ip netns` makes /run/netns:
    a mount namespace bind-mounted in it is not propagated anywhere else."""
    path = public_dir / "private"
    path.mkdir()
    assert run(["mount", "--bind", str(path), str(path)]).returncode == 0
    try:
        assert run(["mount", "--make-private", str(path)]).returncode == 0
        yield path
    finally:
        run(["umount", "--recursive", "--lazy", str(path)])


def test_a_mount_namespace_only_daemons_follow_is_let_go_by_every_one(
    three: list[tuple[Daemon, int]], private_dir: Path
) -> None:
    target = private_dir / "mnt"
    target.touch()
    made = run(["unshare", f"--mount={target}", "--propagation", "private", "true"])
    assert made.returncode == 0, made.stderr
    mnt = f"mnt:[{target.stat().st_ino}]"
    # The kernel's word on its end: a handle that no longer opens; before Linux 6.18 (no nsfs
    # handles), that no process is left in it and no daemon keeps an fd on it (below).
    handle = ns_handle(str(target)) if has("ns_handles") else None
    try:
        host = ns_of(os.getpid(), "mnt")
        expected = [f"mount {target} {host}"]
        for daemon, _ in three:
            wait_until(functools.partial(_holds, daemon, mnt, expected), f"{mnt} held by its mount in {daemon.pid}")
        # No process is in it but the daemons' helpers, one each, which read its table:
        # each daemon names only the bind mount as its holder, never another's helper.
        pids = {daemon.pid for daemon, _ in three}
        wait_until(lambda: {ppid for _, ppid in members(mnt).values()} >= pids, "a helper of each daemon in it")
        assert all(comm == "nsfs-mnt" for comm, _ in members(mnt).values()), members(mnt)
    finally:
        # Without handles a pinned mount namespace's bind mount stays busy (README, Limits):
        # there, only a lazy umount can take it away.
        lazy = [] if handle is not None else ["--lazy"]
        assert run(["umount", *lazy, str(target)]).returncode == 0
    if handle is not None:
        wait_until(lambda: not ns_alive(handle), f"the kernel to free {mnt}")
    wait_until(lambda: members(mnt) == {}, f"every helper to leave {mnt}")
    for daemon, baseline in three:
        assert_released(daemon, baseline, mnt)


def test_twenty_network_namespaces_die_with_their_holders(three: list[tuple[Daemon, int]], procs: Procs) -> None:
    pids = [procs.sleeper("--net") for _ in range(20)]
    nets = {ns_of(pid, "net") for pid in pids}
    with contextlib.ExitStack() as stack:
        veths = [stack.enter_context(veth_into(f"/proc/{pid}/ns/net", f"nsd{i}")) for i, pid in enumerate(pids)]
        for daemon, _ in three:
            wait_until(functools.partial(_pins, daemon, nets), f"{daemon.mountpoint} to list and pin all 20")
        for pid in pids:
            procs.end(pid)
        # The kernel's word: every host end goes with its namespace, though three daemons
        # each held an fd on every one of them.
        wait_until(lambda: not any(link_exists(veth) for veth in veths), "every veth's host end to vanish")
    for daemon, baseline in three:
        assert_released(daemon, baseline, *nets)


# Renames itself and makes itself undumpable (the files of its /proc directory are then root's), then
# holds the fds it was given, /dev/fuse among them (where it is mode 0666, anyone may open
# it): what a process that wanted its holdings hidden from nsfs could do without privilege.
# Prints "ready".
IMPOSTOR = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, sys.argv[1].encode(), 0, 0, 0)
libc.prctl(4, 0, 0, 0, 0)
print("ready", flush=True)
time.sleep(600)
"""


def test_an_unprivileged_process_named_nsfs_is_no_daemon(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--net")
    net = ns_of(pid, "net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    fuse = os.open("/dev/fuse", os.O_RDWR)
    try:
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # Debian's python: the suite's own lives under /root, where nobody may enter.
        argv = [*as_nobody, "/usr/bin/python3", "-c", IMPOSTOR, "nsfs"]
        impostor = procs.start(*argv, pass_fds=(fd, fuse), stdout=subprocess.PIPE)
    finally:
        os.close(fd)
        os.close(fuse)
    assert impostor.stdout is not None and impostor.stdout.readline() == b"ready\n"
    assert Path(f"/proc/{impostor.pid}/comm").read_text() == "nsfs\n"
    assert os.stat(f"/proc/{impostor.pid}/status").st_uid == 0  # undumpable: its /proc files are root's
    with veth_into(f"/proc/{pid}/ns/net", "nsdimp") as veth:
        procs.end(pid)
        # Its fd holds the namespace, and the listing says so.
        wait_until(lambda: holders(nsfs, net) == [f"fd {impostor.pid} {fd}"], "the impostor's fd as the holder")
        assert link_exists(veth)
        procs.stop(impostor)
        wait_until(lambda: not link_exists(veth), "the namespace to die with its last holder")
    assert_released(nsfs, baseline, net)


# Enters a new network namespace and names itself as a daemon's helper does. Prints "net:[N]".
HELPER_NAMED = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x40000000) == 0
libc.prctl(15, b"nsfs-mnt", 0, 0, 0)
print(os.readlink("/proc/self/ns/net"), flush=True)
time.sleep(600)
"""


def test_a_process_named_as_a_helper_is_no_helper_unless_a_daemon_started_it(
    nsfs: Daemon, procs: Procs, baseline: int
) -> None:
    proc, (net,) = procs.reporting(sys.executable, "-c", HELPER_NAMED)
    wait_until(lambda: holders(nsfs, net) == [f"process {proc.pid} nsfs-mnt"], "its membership as the holder")
    procs.stop(proc)
    assert_released(nsfs, baseline, net)
