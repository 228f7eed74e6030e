"""The daemon never keeps a dead namespace alive, whatever held it: each holder's end is
noticed without a sweep. These daemons sweep once a minute at the slowest pace, so
whatever happens sooner comes from events and checks of single holders. Death is
judged by the kernel: a veth end in the host vanishes with its namespace, and a
namespace's file handle stops opening."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsfs_fuse import kernel
from nsfs_fuse.detaching import Detacher
from nsfs_fuse.model import NsKey
from tests.support.daemon import Daemon, running_daemon
from tests.support.oracles import link_exists, ns_alive, ns_handle, ns_of, veth_into
from tests.support.procs import Procs
from tests.support.programs import THREAD
from tests.support.waiting import run, wait_until

RARE = 60.0


@pytest.fixture
def rare(public_dir: Path, procs: Procs) -> Iterator[Daemon]:
    with running_daemon(public_dir / "rare", "debug", interval=RARE, sweep_cpu=0.1) as daemon:
        yield daemon


def lines(proc: subprocess.Popen[bytes]) -> Iterator[list[str]]:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        yield line.decode().split()


# Goes into a new network namespace, opens it and goes home, so that only the fd holds
# it; looks it up through the mount (so the daemon reads this process); on SIGUSR1
# closes the fd. Prints "net:[N] FD", then "closed".
FD_THEN_CLOSE = """
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
home = os.open("/proc/self/ns/net", os.O_RDONLY)
assert libc.unshare(0x40000000) == 0
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
name = os.readlink("/proc/self/ns/net")
assert libc.setns(home, 0x40000000) == 0
os.stat(f"{sys.argv[1]}/{name}")
print(name, fd, flush=True)
signal.sigwait({signal.SIGUSR1})
os.close(fd)
print("closed", flush=True)
time.sleep(600)
"""


def test_closing_the_last_fd_ends_the_namespace(rare: Daemon, procs: Procs) -> None:
    proc = procs.start(sys.executable, "-c", FD_THEN_CLOSE, str(rare.mountpoint), stdout=subprocess.PIPE)
    said = lines(proc)
    name, fd = next(said)
    assert rare.read(name, "holders") == f"fd {proc.pid} {fd}\n"
    with veth_into(f"/proc/{proc.pid}/fd/{fd}", "nsbfd") as host_end:
        os.kill(proc.pid, signal.SIGUSR1)
        assert next(said) == ["closed"]
        wait_until(lambda: not link_exists(host_end), "the namespace to die with its last fd")
    wait_until(lambda: name not in rare.names(), "the namespace to leave the listing")
    assert proc.poll() is None  # the holder lives on: only its fd went


# A thread goes into a new network namespace alone and looks it up; on SIGUSR1 it ends,
# while the process lives on. Prints "TID net:[N]".
THREAD_THEN_EXIT = """
import ctypes, os, signal, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
def worker():
    assert libc.unshare(0x40000000) == 0
    tid = threading.get_native_id()
    name = os.readlink(f"/proc/self/task/{tid}/ns/net")
    os.stat(f"{sys.argv[1]}/{name}")
    print(tid, name, flush=True)
    signal.sigwait({signal.SIGUSR1})
thread = threading.Thread(target=worker)
thread.start()
thread.join()
print("joined", flush=True)
time.sleep(600)
"""


def test_the_end_of_a_thread_that_held_a_namespace_alone_ends_it(rare: Daemon, procs: Procs) -> None:
    proc = procs.start(sys.executable, "-c", THREAD_THEN_EXIT, str(rare.mountpoint), stdout=subprocess.PIPE)
    said = lines(proc)
    tid, name = next(said)
    comm = Path(f"/proc/{proc.pid}/task/{tid}/comm").read_text().strip()
    assert rare.read(name, "holders") == f"task {proc.pid} {tid} {comm}\n"
    with veth_into(f"/proc/{proc.pid}/task/{tid}/ns/net", "nsbthr") as host_end:
        os.kill(proc.pid, signal.SIGUSR1)
        assert next(said) == ["joined"]
        wait_until(lambda: not link_exists(host_end), "the namespace to die with its thread")
    wait_until(lambda: name not in rare.names(), "the namespace to leave the listing")


# A child goes into a new user namespace, looks it up and, on SIGUSR1, exits; the parent
# reaps it only on SIGUSR2. Prints the child's pid and "user:[N]", then "reaped".
ZOMBIE = """
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
child = os.fork()
if child == 0:
    assert libc.unshare(0x10000000) == 0
    name = os.readlink("/proc/self/ns/user")
    os.stat(f"{sys.argv[1]}/{name}")
    print(os.getpid(), name, flush=True)
    signal.sigwait({signal.SIGUSR1})
    os._exit(0)
signal.sigwait({signal.SIGUSR2})
os.waitpid(child, 0)
print("reaped", flush=True)
time.sleep(600)
"""


@pytest.mark.needs("ns_handles")  # the kernel's word on the user namespace's life
def test_a_zombie_holds_its_namespaces_until_it_is_reaped_and_no_longer(rare: Daemon, procs: Procs) -> None:
    """While a zombie is there the kernel keeps its user and pid namespaces, and so does
    the listing; once it is reaped no `holders` names it. (On Linux 6.18 a namespace
    whose last process was a zombie for a moment may stay alive in the kernel for many
    seconds after the reap, with no daemon running: then it is listed as `unseen`.)"""
    proc = procs.start(sys.executable, "-c", ZOMBIE, str(rare.mountpoint), stdout=subprocess.PIPE)
    said = lines(proc)
    child, name = next(said)
    handle = ns_handle(f"/proc/{child}/ns/user")
    host_pid = ns_of(os.getpid(), "pid")
    comm = Path(f"/proc/{child}/comm").read_text().strip()
    assert rare.read(name, "holders") == f"process {child} {comm}\n"
    os.kill(int(child), signal.SIGUSR1)
    wait_until(lambda: Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z", "the child to be a zombie")
    time.sleep(0.5)  # long enough for the daemon to have read the zombie a few times
    assert ns_alive(handle)  # the zombie's credentials still hold it
    assert rare.read(name, "holders") == f"process {child} {comm}\n"
    os.kill(proc.pid, signal.SIGUSR2)
    assert next(said) == ["reaped"]

    def forgotten() -> bool:
        try:
            held = rare.read(name, "holders")
        except FileNotFoundError:
            held = ""  # released
        return held in ("", "unseen\n") and f"process {child} " not in rare.read(host_pid, "holders")

    wait_until(forgotten, "the reaped process to leave every holders file")


def test_lookups_of_names_that_do_not_exist_read_only_the_caller(rare: Daemon, procs: Procs) -> None:
    """A stream of made-up names from an unprivileged caller never makes the daemon sweep."""
    sweeps_before = rare.log.read_text().count("sweep done")
    script = f"""
import errno, os, random
for _ in range(60):
    try:
        os.stat("{rare.mountpoint}/net:[%d]" % random.randrange(1, 1 << 32))
    except FileNotFoundError:
        pass
    else:
        raise SystemExit("a made-up name exists")
print("ok")
"""
    looked = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script])
    assert (looked.returncode, looked.stdout, looked.stderr) == (0, "ok\n", "")
    assert rare.log.read_text().count("sweep done") == sweeps_before


# unshare() without exec, an fd on the new namespace, and home again: no event names it.
# Prints "net:[N] FD".
FD_NO_EXEC = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/net", os.O_RDONLY)
time.sleep(4)  # past the daemon's follow-up reads of a new process (0.5 s, 3 s): only the fd count can tell
assert libc.unshare(0x40000000) == 0
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
name = os.readlink("/proc/self/ns/net")
assert libc.setns(home, 0x40000000) == 0
print(name, fd, flush=True)
time.sleep(600)
"""


@pytest.mark.needs("fd_count")
def test_a_namespace_held_by_an_fd_opened_without_exec_is_listed(rare: Daemon, procs: Procs) -> None:
    proc, (name, fd) = procs.reporting(sys.executable, "-c", FD_NO_EXEC)
    # Where the kernel lists namespaces itself (listns) it is listed at once, and a round of fd
    # counts begins then, which names its holder; elsewhere it is listed when a round does.
    expected = f"fd {proc.pid} {fd}\n"

    def named() -> bool:
        try:
            return rare.read(name, "holders") == expected
        except FileNotFoundError:
            return False

    wait_until(named, "the fd count to change and the process to be read")
    procs.stop(proc)
    wait_until(lambda: name not in rare.names(), "the namespace to leave the listing")


def test_a_namespace_a_new_thread_unshares_alone_is_listed(rare: Daemon, procs: Procs) -> None:
    proc, (tid, name) = procs.reporting(sys.executable, "-c", THREAD)
    wait_until(lambda: name in rare.names(), "a read of the process that started a thread")
    comm = Path(f"/proc/{proc.pid}/task/{tid}/comm").read_text().strip()
    assert rare.read(name, "holders") == f"task {proc.pid} {tid} {comm}\n"


def test_ip_netns_add_and_del_are_followed_as_they_happen(rare: Daemon, procs: Procs) -> None:
    """A bind mount shows as it is made, with its `mount` line (never `unseen`), and its
    namespace dies with the umount: the mount table's change says so, not a sweep."""
    netns = "nsbfollow"
    assert run(["ip", "netns", "add", netns]).returncode == 0
    try:
        name = f"net:[{os.stat(f'/run/netns/{netns}').st_ino}]"
        host_mnt = ns_of(os.getpid(), "mnt")
        expected = f"mount /run/netns/{netns} {host_mnt}\n"
        wait_until(lambda: name in rare.names() and rare.read(name, "holders") == expected, "the bind mount")
        with veth_into(f"/run/netns/{netns}", "nsbnetns") as host_end:
            wait_until(lambda: rare.read(name, "holders") == expected, "the ip that made the veth to be gone")
            assert run(["ip", "netns", "del", netns]).returncode == 0
            wait_until(lambda: not link_exists(host_end), "the namespace to die with its bind mount")
        wait_until(lambda: name not in rare.names(), "the namespace to leave the listing")
    finally:
        if os.path.exists(f"/run/netns/{netns}"):
            run(["ip", "netns", "del", netns])


def test_a_bind_mount_the_daemon_found_first_can_still_be_unmounted(rare: Daemon, procs: Procs) -> None:
    """The daemon's pin of a namespace it found through its bind mount must not hold the mount:
    plain `umount` (not -l) succeeds while it is listed, and the namespace dies with it. On
    every kernel: by file handle where there are handles, else through a thread that enters it."""
    netns = "nsbumount"
    assert run(["ip", "netns", "add", netns]).returncode == 0
    path = f"/run/netns/{netns}"
    try:
        name = f"net:[{os.stat(path).st_ino}]"
        wait_until(lambda: name in rare.names(), "the bind-mounted namespace")
        with veth_into(path, "nsbumount") as host_end:
            done = run(["umount", path])
            assert (done.returncode, done.stderr) == (0, "")
            wait_until(lambda: not link_exists(host_end), "the namespace to die with its bind mount")
        wait_until(lambda: name not in rare.names(), "the namespace to leave the listing")
    finally:
        run(["ip", "netns", "del", netns])


@pytest.mark.parametrize("nstype", ["net", "uts", "ipc", "cgroup", "pid"])
def test_a_pin_through_a_bind_mount_is_opened_again_on_the_kernels_own_mount(nstype: str, procs: Procs) -> None:
    """What the daemon does without file handles (before Linux 6.18), tried on any kernel: the
    namespace entered by a thread of its own and opened again through /proc/thread-self."""
    pid = procs.sleeper("--fork", "--pid") if nstype == "pid" else procs.sleeper(f"--{nstype}")
    link = f"/proc/{pid}/ns/{nstype}"
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "ns"
        target.touch()
        assert run(["mount", "--bind", link, str(target)]).returncode == 0
        try:
            through_mount = os.open(target, os.O_RDONLY)
            own = os.open(f"/proc/self/ns/{nstype}", os.O_RDONLY)
            kernels_mount = kernel.mount_id(own)
            os.close(own)
            assert kernel.mount_id(through_mount) != kernels_mount  # it holds the bind mount
            again = Detacher().entered_again(through_mount, NsKey(nstype, os.stat(link).st_ino))
            try:
                assert again != through_mount and os.fstat(again).st_ino == os.stat(link).st_ino
                assert kernel.mount_id(again) == kernels_mount
                assert os.readlink(f"/proc/self/ns/{nstype}") != os.readlink(link)  # nothing of ours moved
            finally:
                os.close(again)
        finally:
            assert run(["umount", str(target)]).returncode == 0
