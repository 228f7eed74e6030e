"""The harness tests/ and bench/ share: run the real daemon, make real namespaces, ask the kernel directly.

The kernel oracles here use raw ioctl numbers, not nsfs_fuse.kernel, so a bug in
the package's wrappers cannot hide itself.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

INTERVAL = 0.2  # refresh period of test daemons: entries must go within it
# Test daemons may sweep faster than the default 1% of a core: what only a sweep
# finds (fds, mounts, sockets) is then found within seconds on a test machine.
SWEEP_CPU = 25
PATIENCE = 10.0  # how long a test waits for what should take one interval
# Every wait above is multiplied by this: a guest kernel under emulation
# (`make test-kernel`) runs Python 20-40x slower, and sets it, rather than each test.
SLOWDOWN = float(os.environ.get("NSFS_TEST_SLOWDOWN", "1"))

_T = TypeVar("_T")


def wait_until(predicate: Callable[[], _T], what: str, timeout: float = PATIENCE) -> _T:
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def mounts() -> dict[str, str]:
    """mountpoint -> fstype, from this process's mountinfo.

    The table is the machine's: a path in it need not be UTF-8 (another test run's mount,
    say), and its bytes are kept as they are (surrogateescape) rather than failing the read.
    """
    result = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            result[fields[4]] = fields[fields.index("-") + 1]
    return result


def is_mounted(path: Path | str) -> bool:
    return str(path) in mounts()


# -- the kernel, asked directly ----------------------------------------------

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
    daemons = {pid for pid in _pids() if _comm(pid) == "nsfs" and _status(pid)[1]}
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


# -- what the running kernel can do ----------------------------------------------
# Each feature some tests need, probed on the running kernel (never guessed from its
# version), with what it is: tests/conftest.py leaves out the tests marked
# `needs(FEATURE)` where the probe says no, and says so.

FEATURES = {
    "ns_id": "NS_GET_ID, a namespace's 64-bit id (Linux 6.18): the `id` file",
    "ns_handles": "nsfs file handles (Linux 6.18): a namespace re-opened, or known dead, by handle",
    "fd_count": "the number of open fds in stat /proc/PID/fd (Linux 6.2)",
    "pid_in_pidns": "NS_GET_PID_IN_PIDNS (Linux 6.11): pids and `ns` links for callers in other pid namespaces",
}


def kernel_features() -> dict[str, bool]:
    """Which of FEATURES the running kernel has."""

    def works(probe: Callable[[], object]) -> bool:
        try:
            return bool(probe())
        except OSError:
            return False

    return {
        "ns_id": works(lambda: ns_id("/proc/self/ns/net") > 0),
        "ns_handles": works(lambda: ns_alive(ns_handle("/proc/self/ns/net"))),
        "fd_count": works(lambda: os.stat("/proc/self/fd").st_size > 0),
        "pid_in_pidns": works(lambda: _pid_in_own_pidns() == os.getpid()),
    }


def _pid_in_own_pidns() -> int:
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
    try:
        return fcntl.ioctl(fd, NS_GET_PID_IN_PIDNS, os.getpid())
    finally:
        os.close(fd)


HAS = kernel_features()  # probed once, when the tests or benchmarks start


def files(*names: str) -> list[str]:
    """An entry directory's listing, sorted: `names`, and `id` where the kernel has NS_GET_ID."""
    return sorted((*names, "id") if HAS["ns_id"] else names)


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


# -- programs that hold a namespace one particular way --------------------------

# A thread unshares its network namespace alone; prints "TID net:[N]".
THREAD = """
import ctypes, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def worker():
    assert libc.unshare(0x40000000) == 0
    print(threading.get_native_id(), os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net"), flush=True)
    time.sleep(600)
threading.Thread(target=worker, name="worker", daemon=True).start()
time.sleep(600)
"""

# A socket made in a new network namespace, after which the process goes home:
# only the socket holds the namespace. Prints "net:[N] FD".
SOCKET_ONLY = """
import ctypes, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/net", os.O_RDONLY)
assert libc.unshare(0x40000000) == 0
net = os.readlink("/proc/self/ns/net")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
assert libc.setns(home, 0x40000000) == 0
os.close(home)
print(net, sock.fileno(), flush=True)
time.sleep(600)
"""

# unshare(CLONE_NEWTIME) without exec: the namespace is only the children's. Prints "time:[N]".
UNSHARE_TIME_NO_EXEC = """
import ctypes, os, time
assert ctypes.CDLL(None, use_errno=True).unshare(0x80) == 0
print(os.readlink("/proc/self/ns/time_for_children"), flush=True)
time.sleep(600)
"""


# -- lsns, the reference lsnsfs is held to ----------------------------------------


def _json_bytes(error: UnicodeError) -> tuple[str, int]:
    """In a JSON string, each byte that is not UTF-8 as the text \\xHH (a JSON "\\\\xHH")."""
    assert isinstance(error, UnicodeDecodeError)
    return "".join(f"\\\\x{b:02x}" for b in error.object[error.start : error.end]), error.end


codecs.register_error("lsns-bytes", _json_bytes)


def lsns_json(raw: bytes) -> Any:
    """lsns -J's output, parsed. lsns writes the bytes of a command line that are not UTF-8 as
    they are, which JSON does not allow: each is read as the text \\xHH, as lsns's table shows
    it (and lsnsfs -J gives it)."""
    return json.loads(raw.decode("utf-8", "lsns-bytes"))


# -- processes the tests start -----------------------------------------------


class Procs:
    """Processes started by one test; each in a process group of its own, killed whole.

    Killing only the process a test started is not enough: `unshare --fork`
    leaves a child behind (--kill-child relies on the parent-death signal, which
    the kernel clears when --map-root-user changes credentials), and nested
    unshares leave grandchildren. A process group follows its members into new
    pid namespaces, so killing the group reaches them all.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._by_pid: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def reporting(self, *argv: str) -> tuple[subprocess.Popen[bytes], list[str]]:
        """Start a program that prints one line about what it holds; return it and that line's words."""
        proc = self.start(*argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().decode().split()

    def sleeper(self, *unshare_flags: str, uid: int | None = None, prefix: Sequence[str] = ()) -> int:
        """A `sleep` in new namespaces, run by `uid` if given, under `prefix` (an nsenter, say);
        returns its pid.

        With --fork that is unshare's child, which is in the new pid and time namespaces.
        """
        as_user = () if uid is None else ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups")
        proc = self.start(*prefix, *as_user, "unshare", *unshare_flags, "sleep", "600")
        pid = self.wait_for_sleep(proc)
        self._by_pid[pid] = proc
        return pid

    def wait_for_sleep(self, proc: subprocess.Popen[bytes]) -> int:
        """The pid of the `sleep` that `proc` runs or starts, however deep."""

        def find() -> int:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")
            pid = proc.pid
            while _comm(pid) != "sleep":
                kids = children(pid)
                if not kids:
                    return 0
                pid = kids[0]
            return pid

        return wait_until(find, f"{proc.args!r} to start sleep")

    def end(self, pid: int) -> None:
        """End a sleeper (and the unshare around it) and wait until it is gone."""
        self.stop(self._by_pid.pop(pid))
        kill(pid)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill everything in `proc`'s process group and wait until none of it is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=PATIENCE * SLOWDOWN)
        wait_until(lambda: not _group_members(proc.pid), f"every process of {proc.args!r} to die")

    def close(self) -> None:
        """Kill every process group started, then wait for them all: one walk of /proc for all
        the groups, not one per group (a benchmark's world has thousands)."""
        live = [proc for proc in self._procs if proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in live:
            proc.wait(timeout=PATIENCE * SLOWDOWN)
        groups = {proc.pid for proc in live}
        wait_until(lambda: not _group_members(*groups), f"every process of {len(groups)} groups to die", timeout=60)


def kill(pid: int) -> None:
    """Kill a process by pid and wait until it is gone (reaped by whoever its parent is)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), f"pid {pid} to die")


def daemon_serving(mountpoint: Path) -> int:
    """The pid of the nsfs daemon whose command line names `mountpoint`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() != "nsfs":
                continue
            if str(mountpoint) in Path(f"/proc/{pid}/cmdline").read_text().split("\0"):
                return int(pid)
    return 0


def gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie has: only its parent's wait is missing)."""
    return _state(pid) in ("", "Z")


def children_of(parent: int) -> list[int]:
    """The processes `parent` started, from any of its threads (`children` sees one thread's)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(name))
    return found


def watchdog_of(daemon: int) -> int:
    """The pid of the fusermount3 that watches `daemon`'s mount (libfuse's auto_unmount): it
    unmounts the mount if the daemon dies without unmounting it."""

    def find() -> int:
        return next((pid for pid in children_of(daemon) if _comm(pid) == "fusermount3"), 0)

    return wait_until(find, f"the watchdog of daemon {daemon}'s mount")


def kill_with_watchdog(daemon: subprocess.Popen[bytes]) -> None:
    """SIGKILL a daemon and its mount's watchdog, as systemd kills a whole service whose stop
    timed out: what still leaves a dead mount. The watchdog first, or it would unmount."""
    kill(watchdog_of(daemon.pid))
    daemon.kill()
    daemon.wait(timeout=PATIENCE * SLOWDOWN)


def _group_members(*pgids: int) -> list[int]:
    """Live (not zombie) processes in process groups `pgids`."""
    members = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids and fields[0] != "Z":
                members.append(int(name))
    return members


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def run(argv: Sequence[str], timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        argv,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout * SLOWDOWN,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


# -- the daemon --------------------------------------------------------------

NSFS = [sys.executable, "-m", "nsfs_fuse"]
LSNSFS = str(Path(sys.executable).with_name("lsnsfs"))  # the command `make setup` installs


@contextlib.contextmanager
def netns_added(name: str) -> Iterator[str]:
    """`ip netns add NAME`, deleted on the way out: a namespace held by a bind mount alone."""
    added = run(["ip", "netns", "add", name])
    assert added.returncode == 0, added.stderr
    try:
        yield f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"  # the bind mount's inode is the namespace's
    finally:
        run(["ip", "netns", "del", name])


class Daemon:
    """A foreground nsfs daemon serving `mountpoint`."""

    def __init__(self, mountpoint: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.mountpoint = mountpoint
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def path(self, *parts: str) -> Path:
        return self.mountpoint.joinpath(*parts)

    def names(self) -> set[str]:
        return set(os.listdir(self.mountpoint))

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def pinned(self) -> set[str]:
        """Namespace names the daemon holds fds on."""
        names = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                if ":[" in target and not target.startswith(("socket", "pipe", "anon_inode")):
                    names.add(target)
        return names

    def read(self, name: str, file: str) -> str:
        return self.path(name, file).read_text()


@contextlib.contextmanager
def running_daemon(
    mountpoint: Path,
    *options: str,
    interval: float = INTERVAL,
    sweep_cpu: float | None = SWEEP_CPU,
    prefix: Sequence[str] = (),
    startup: float = PATIENCE,
) -> Iterator[Daemon]:
    """A foreground daemon on `mountpoint` (run under `prefix`, e.g. prlimit), stopped with SIGTERM.

    sweep_cpu=None leaves the daemon's default. `startup`: how long its first sweep may take
    before it mounts (a benchmark's world of 20,000 processes takes longer than a test's).
    """
    mountpoint.mkdir(exist_ok=True)
    log = mountpoint.with_name(mountpoint.name + ".log")
    budget = [] if sweep_cpu is None else [f"sweep_cpu={sweep_cpu:g}"]
    opts = ",".join([f"interval={interval}", *budget, *options])
    with open(log, "wb") as out:
        argv = [*prefix, *NSFS, str(mountpoint), "-f", "-o", opts]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=out)
    daemon = Daemon(mountpoint, proc, log)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode}: {log.read_text()}")
            return is_mounted(mountpoint) and bool(os.listdir(mountpoint))

        wait_until(up, f"{mountpoint} to be mounted", timeout=startup)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=PATIENCE * SLOWDOWN)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if is_mounted(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
            raise AssertionError(f"{mountpoint} was left mounted after the daemon stopped")
    assert proc.returncode == 0, f"daemon exited with {proc.returncode}: {log.read_text()}"


def leaving(nsfs: Daemon, name: str) -> None:
    """`name` was caught on its way out (its `ns` gone, or opening /dev/null while the daemon
    probes it): it must leave the listing, or stay as held by nothing a scan finds (`unseen`)."""

    def left() -> bool:
        try:
            return name not in nsfs.names() or nsfs.read(name, "holders") == "unseen\n"
        except FileNotFoundError:
            return True

    wait_until(left, f"{name} to leave the listing")


def assert_released(nsfs: Daemon, baseline: int, *names: str) -> None:
    """The names leave the listing, and the daemon closes its pins on them."""
    wait_until(lambda: not set(names) & nsfs.names(), f"{names} to leave the listing")
    wait_until(lambda: not set(names) & nsfs.pinned(), f"the daemon to close its pins on {names}")
    wait_until(lambda: nsfs.fd_count() <= baseline, f"the daemon's fd count to return to {baseline}")
