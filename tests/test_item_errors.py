"""One error stays with its item: an errno from one kernel-facing call, for one process or one
namespace, costs that item alone (docs/design.md, "Errors").

Each errno is injected in turn into each call into the kernel that discovery, pins and mount
tables make, for one chosen item; the real call is made for every other. The scan must go on,
and every other namespace must be listed exactly as in a scan without the error: the same
entries, the same facts, the same holders. A fault while reading a process keeps what the
registry had of it; a fault while pinning a namespace skips that namespace.

In-process, no FUSE: Scanner, Pins, Registry and Tables over the real /proc, with real
namespaces made by unshare. The scans read the test's own processes alone, and these live in a
mount namespace of the test's (no other test's mounts in it), so what is listed is the same
from one scan to the next whatever else runs on the machine.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import pytest

from nsfs_fuse import discovery, errors, kernel, mount_tables, mountinfo, procfs
from nsfs_fuse.model import Holder, HolderKind, NsKey, ProcessRead, Snapshot, parse_ns_name
from nsfs_fuse.pins import RETIRE_SECONDS, Budget, Pins
from nsfs_fuse.registry import Registry
from tests.support.procs import Procs
from tests.support.programs import SOCKET_ONLY, THREAD
from tests.support.waiting import run, wait_until

ERRNOS = [
    errno.ENOENT,
    errno.ESRCH,
    errno.EACCES,
    errno.EPERM,
    errno.ESTALE,
    errno.EINVAL,
    errno.ENOTTY,
    errno.EMFILE,
    errno.ENOMEM,
    errno.EIO,
    errno.EBADF,
    errno.EOPNOTSUPP,
]
# The errnos the policy knows as answers (the item is gone, or not ours to see), whatever the call.
ANSWERS = frozenset({errno.ENOENT, errno.ESRCH, errno.ESTALE, errno.EINVAL, errno.EBADF, errno.EACCES, errno.EPERM})
# Faults for every call: never an answer, always counted.
FAULTS = frozenset({errno.EMFILE, errno.ENOMEM, errno.EIO})

# An fd on a new network namespace, after which the process goes home: only the fd holds it.
FD_ONLY = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/net", os.O_RDONLY)
assert libc.unshare(0x40000000) == 0
held = os.open("/proc/self/ns/net", os.O_RDONLY)
assert libc.setns(home, 0x40000000) == 0
os.close(home)
print(os.readlink(f"/proc/self/fd/{held}"), flush=True)
time.sleep(600)
"""

# Another nsfs daemon, as the scanner recognises one: named nsfs, run by root, /dev/fuse open,
# pinning a namespace.
OTHER_DAEMON = """
import ctypes, os, time
ctypes.CDLL(None).prctl(15, b"nsfs", 0, 0, 0)
fuse = os.open("/dev/fuse", os.O_RDWR)
pin = os.open("/proc/self/ns/uts", os.O_RDONLY)
print(pin, flush=True)
time.sleep(600)
"""

_real_readlink = os.readlink


# -- the world: the test's processes and namespaces ---------------------------


@dataclass(frozen=True)
class World:
    pids: list[int]  # every process the test started: what the scans read
    roles: dict[str, int]  # a process by what it holds
    names: dict[str, str]  # a namespace by what holds it
    scratch: Path


def _inode_name(nstype: str, path: str) -> str:
    return f"{nstype}:[{os.stat(path).st_ino}]"


def _clean_mounts(home: int) -> None:
    """Unmount, in the test's mount namespace, what it copied of other tests' FUSE and nsfs
    mounts: a copy would keep their namespaces alive and their daemons from exiting."""
    with open(f"/proc/{home}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        foreign = [m.mountpoint for m in mountinfo.parse(f) if m.fstype == "nsfs" or m.fstype.startswith("fuse")]
    if foreign:
        run(["nsenter", f"--target={home}", "--mount", "umount", "-l", *reversed(foreign)])

    def clean() -> bool:
        with open(f"/proc/{home}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return not [m for m in mountinfo.parse(f) if m.fstype == "nsfs" or m.fstype.startswith("fuse")]

    wait_until(clean, "the test's mount namespace to hold no other test's mounts")


def _group(pgids: set[int]) -> list[int]:
    """Every process in the process groups `pgids`, as /proc lists them now."""
    found = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getpgid(pid) in pgids:
                found.append(pid)
    return sorted(found)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    procs = Procs()
    scratch = tmp_path_factory.mktemp("item-errors")
    bound = scratch / "net"
    bound.touch()
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> int:
        proc = procs.start(*argv)
        started.append(proc)
        return procs.wait_for_sleep(proc)

    def reporting(*argv: str) -> tuple[int, list[str]]:
        proc, words = procs.reporting(*argv)
        started.append(proc)
        return proc.pid, words

    try:
        home = start("unshare", "--mount", "sleep", "600")
        _clean_mounts(home)
        inside = ["nsenter", f"--target={home}", "--mount"]
        roles = {"home": home}
        roles["net_uts"] = start(*inside, "unshare", "--net", "--uts", "sleep", "600")
        roles["user"] = start(*inside, "unshare", "--user", "--map-root-user", "--net", "sleep", "600")
        roles["pid"] = start(*inside, "unshare", "--pid", "--fork", "sleep", "600")
        roles["thread"], (_tid, thread_net) = reporting(*inside, sys.executable, "-c", THREAD)
        roles["socket"], (socket_net, _fd) = reporting(*inside, sys.executable, "-c", SOCKET_ONLY)
        roles["fd"], (fd_net,) = reporting(*inside, sys.executable, "-c", FD_ONLY)
        roles["other_daemon"], _ = reporting(*inside, sys.executable, "-c", OTHER_DAEMON)
        # A mount namespace of its own, with a network namespace that only a bind mount holds.
        script = f"unshare --net mount --bind /proc/self/ns/net {bound} && exec sleep 600"
        roles["mount"] = start(*inside, "unshare", "--mount", "sh", "-c", script)
        names = {
            "net_a": _inode_name("net", f"/proc/{roles['net_uts']}/ns/net"),
            "uts_a": _inode_name("uts", f"/proc/{roles['net_uts']}/ns/uts"),
            "user_b": _inode_name("user", f"/proc/{roles['user']}/ns/user"),
            "net_b": _inode_name("net", f"/proc/{roles['user']}/ns/net"),
            "pid_c": _inode_name("pid", f"/proc/{roles['pid']}/ns/pid"),
            "net_d": thread_net,
            "net_e": socket_net,
            "net_f": fd_net,
            "mnt_g": _inode_name("mnt", f"/proc/{roles['mount']}/ns/mnt"),
            "net_g": _inode_name("net", f"/proc/{roles['mount']}/root{bound}"),
        }
        yield World(_group({p.pid for p in started}), roles, names, scratch)
    finally:
        procs.close()


# -- a scan, in-process ------------------------------------------------------------


@dataclass
class Scan:
    scanner: discovery.Scanner
    registry: Registry
    tables: mount_tables.Tables


class Clock:
    """The pins' clock: moved on at the end, so that retired pins are really closed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def scanning() -> Iterator[Scan]:
    nsfs_dev = kernel.nsfs_device()
    scanner = discovery.Scanner(os.getpid(), nsfs_dev)
    budget = Budget(1 << 20)
    clock = Clock()
    pins = Pins(nsfs_dev, budget, clock)
    followed = mount_tables.Tables(scanner.helpers, budget)
    registry = Registry(pins, followed)
    try:
        yield Scan(scanner, registry, followed)
    finally:
        registry.close()
        followed.close_all()
        clock.now += RETIRE_SECONDS
        pins.close_retired()


def sweep(scan: Scan, world: World, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    """A sweep of the test's processes (Scanner.sweep, as the sweep's helper runs it), into the registry."""
    started = time.monotonic()

    def each(reads: list[ProcessRead]) -> bool:
        scan.registry.update(reads)
        return True

    assert scan.scanner.sweep(each, pids=list(world.pids))
    return scan.registry.end_sweep(started)


class Facts(NamedTuple):
    """What an entry says of its namespace, but for fd numbers and serials."""

    handle: bytes | None
    ns_id: int | None
    owner: NsKey | None
    parent: NsKey | None
    creator_uid: int | None
    pinned: bool


Listing = dict[str, tuple[Facts, tuple[Holder, ...]]]


def listing(snapshot: Snapshot) -> Listing:
    """Each entry's facts and holders: all a reader is shown, less fd numbers and serials."""
    return {
        name: (
            Facts(e.handle, e.ns_id, e.owner, e.parent, e.creator_uid, e.pin is not None),
            snapshot.holders[name].ordered(),
        )
        for name, e in snapshot.entries.items()
    }


def without_handles(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a kernel before 6.18: pins through a bind mount are opened again by a thread."""
    monkeypatch.setattr(kernel, "ns_handle", lambda fd: None)


_baselines: dict[bool, Listing] = {}


def baseline(world: World, handles: bool) -> Listing:
    """What a scan without any error lists (once per mode: with handles or without)."""
    if handles not in _baselines:
        with pytest.MonkeyPatch.context() as patch, scanning() as scan:
            if not handles:
                without_handles(patch)
            _baselines[handles] = listing(sweep(scan, world, patch))
    return _baselines[handles]


# -- injecting an errno into one call, for one item --------------------------------


class Injection:
    """Raises OSError(code) from one call where it concerns the chosen item; calls through otherwise."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.hits = 0

    def fail(self) -> OSError:
        self.hits += 1
        return OSError(self.code, os.strerror(self.code))


def _names_fd(fd: int, target: str) -> bool:
    try:
        return _real_readlink(f"/proc/self/fd/{fd}") == target
    except OSError:
        return False


def _is_ns(fd: int, name: str) -> bool:
    """Whether `fd` is open on namespace `name` (readlink would print a bind mount's path)."""
    key = parse_ns_name(name)
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return key is not None and st.st_dev == _NSFS_DEV and st.st_ino == key.inode


_NSFS_DEV = kernel.nsfs_device()


def _pid_of_pidfd(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii") as info:
        return next(int(line.split()[1]) for line in info if line.startswith("Pid:"))


class _Os:
    """The os module as one module of the package sees it, with one function wrapped."""

    def __init__(self, name: str, wrapper: Callable[..., Any]) -> None:
        self._name = name
        self._wrapper = wrapper

    def __getattr__(self, name: str) -> Any:
        return self._wrapper if name == self._name else getattr(os, name)


def _inject_os(module: Any, func: str, pid: int, injection: Injection, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.FUNC as `module` calls it fails for any path (or fd opened on a path) under /proc/PID/."""
    real = getattr(os, func)
    prefix = f"/proc/{pid}/"

    def concerns(target: object) -> bool:
        if isinstance(target, int):  # os.read: the file the fd was opened on
            with contextlib.suppress(OSError):
                target = _real_readlink(f"/proc/self/fd/{target}")
        return isinstance(target, str) and (target + "/").startswith(prefix)

    def wrapper(target: Any, *args: Any, **kwargs: Any) -> Any:
        if concerns(target):
            raise injection.fail()
        return real(target, *args, **kwargs)

    monkeypatch.setattr(module, "os", _Os(func, wrapper))


def _inject_kernel(func: str, target: str, injection: Injection, monkeypatch: pytest.MonkeyPatch) -> None:
    """kernel.FUNC fails where it concerns `target`: a namespace (its fd argument, or the fd it
    returns) or, for the pidfd calls, a pid."""
    real = getattr(kernel, func)

    def on_argument(fd: int, *args: Any) -> Any:
        if _is_ns(fd, target):
            raise injection.fail()
        return real(fd, *args)

    def on_result(*args: Any) -> Any:
        fd = real(*args)
        if _is_ns(fd, target):
            os.close(fd)
            raise injection.fail()
        return fd

    def on_pid(pid: int) -> Any:
        if str(pid) == target:
            raise injection.fail()
        return real(pid)

    def on_pidfd(pidfd: int, fd: int) -> Any:
        if str(_pid_of_pidfd(pidfd)) == target:
            raise injection.fail()
        return real(pidfd, fd)

    wrappers: dict[str, Callable[..., Any]] = {
        "open_ns": on_result,
        "open_ns_handle": on_result,
        "socket_netns": on_result,
        "pidfd_open": on_pid,
        "pidfd_getfd": on_pidfd,
    }
    monkeypatch.setattr(kernel, func, wrappers.get(func, on_argument))


@dataclass(frozen=True)
class Call:
    """A kernel-facing call, and the item it is made to fail for."""

    name: str  # "discovery.readlink": os.readlink as discovery.py calls it; "kernel.open_ns"
    item: str  # a role of World.roles (a process) or World.names (a namespace)
    target: str = ""  # what the injection looks for, where not the item itself (a role of World.names)
    handles: bool = True  # False: as on a kernel without nsfs file handles
    needs: str | None = None  # the kernel feature (tests/support/features.py) without which it is never made
    answers: frozenset[int] = frozenset()  # the call's own documented answers, besides ANSWERS

    @property
    def process(self) -> bool:
        return self.item not in _NAMESPACE_ROLES

    def inject(self, world: World, code: int, monkeypatch: pytest.MonkeyPatch) -> Injection:
        injection = Injection(code)
        where, func = self.name.split(".")
        if where == "kernel":
            role = self.target or self.item
            target = world.names[role] if role in _NAMESPACE_ROLES else str(world.roles[role])
            _inject_kernel(func, target, injection, monkeypatch)
        else:
            # /proc as discovery reads it: its own calls, and the file reads of procfs it makes.
            for module in (discovery, procfs) if where == "discovery" else (mount_tables,):
                _inject_os(module, func, world.roles[self.item], injection, monkeypatch)
        return injection


_NAMESPACE_ROLES = frozenset({"net_a", "uts_a", "user_b", "net_b", "pid_c", "net_e", "net_g"})

CALLS = [
    # /proc, as discovery.py reads a process: ns links, task and fd directories, comm, status
    Call("discovery.readlink", "fd"),
    Call("discovery.listdir", "thread"),
    Call("discovery.open", "fd"),
    Call("discovery.read", "fd"),
    Call("discovery.read", "other_daemon"),  # its comm and status: what says it is a daemon
    # /proc, as mount_tables.py reads a mount table (through a process in it)
    Call("tables.open", "mount"),
    Call("tables.read", "mount"),
    # a socket's network namespace: read by the scanner, opened by the pins
    Call("kernel.pidfd_open", "socket"),
    Call("kernel.pidfd_getfd", "socket"),
    Call("kernel.socket_netns", "socket", target="net_e", answers=discovery.NO_SOCKET_NS),
    # pinning one namespace
    Call("kernel.open_ns", "net_a"),
    Call("kernel.key_of_fd", "user_b"),  # met first as net_b's owner: NS_GET_USERNS's fd
    Call("kernel.get_nstype", "net_a"),
    Call("kernel.get_userns", "user_b"),
    Call("kernel.get_parent", "pid_c"),
    Call("kernel.get_ns_id", "net_b"),
    Call("kernel.get_owner_uid", "user_b"),
    Call("kernel.ns_handle", "uts_a"),
    Call("kernel.open_ns_handle", "net_b", needs="ns_handles"),
    # pinning one namespace without handles: the one found through a bind mount is entered again
    Call("kernel.mount_id", "net_g", handles=False),
    Call("kernel.setns", "net_g", handles=False),
]

# What the process reads of CALLS are: a fault there keeps the registry's last read of the process.
PROCESS_READS = [c for c in CALLS if c.name.startswith("discovery.") or c.item == "socket"]


def each(calls: list[Call]) -> list[Any]:
    """`calls` as parameters: each named, and left out where the kernel never makes it."""
    return [pytest.param(c, id=c.name, marks=[pytest.mark.needs(c.needs)] if c.needs else []) for c in calls]


# -- what the chosen item may change -------------------------------------------------


def _direct(holders: tuple[Holder, ...]) -> list[Holder]:
    return [h for h in holders if h.kind not in (HolderKind.OWNER_OF, HolderKind.PARENT_OF, HolderKind.UNSEEN)]


def reach(base: Listing, pid: int | None, name: str | None) -> tuple[set[str], set[str]]:
    """(may change, holders may change) for an error costing process `pid` or namespace `name`.

    A namespace may be missing (or its facts differ) if it is the item, if only the process
    holds it, if only bind mounts in a mount namespace that may be missing hold it, or if its
    owner or parent may be missing (it cannot be pinned without them). Other namespaces are
    listed with the same facts; only the holders of those whose lines name the process or a
    namespace that may be missing may differ.
    """
    changed = {name} if name else set()
    grown = True
    while grown:
        before = len(changed)
        for n, (facts, holders) in base.items():
            direct = _direct(holders)
            if n in changed:
                continue
            if (
                any(rel is not None and rel.name in changed for rel in (facts.owner, facts.parent))
                or (direct and all(h.pid == pid or (h.kind is HolderKind.MOUNT and h.ns in changed) for h in direct))
                or (not direct and holders and all(h.ns in changed for h in holders))
            ):
                changed.add(n)
        grown = len(changed) > before
    lines = {n for n, (_facts, holders) in base.items() if any(h.pid == pid or h.ns in changed for h in holders)}
    return changed, lines - changed


def assert_the_rest_exact(base: Listing, found: Listing, changed: set[str], lines: set[str]) -> None:
    assert set(found) - changed == set(base) - changed
    for name in set(base) - changed:
        assert found[name][0] == base[name][0], name
        if name not in lines:
            assert found[name][1] == base[name][1], name


def _faults() -> int:
    return sum(errors.TALLY.counts().values())


# -- the tests ---------------------------------------------------------------------


def test_the_world_is_what_the_tests_expect(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chosen item is listed and held as the test made it, and a scan without errors lists
    the same each time: else the tests below prove nothing."""
    base = baseline(world, handles=True)
    with scanning() as scan:
        assert listing(sweep(scan, world, monkeypatch)) == base
    assert set(world.names.values()) <= set(base)
    kinds = {role: {h.kind for h in _direct(base[name][1])} for role, name in world.names.items()}
    assert kinds["net_d"] == {HolderKind.TASK}
    assert kinds["net_e"] == {HolderKind.SOCKET}
    assert kinds["net_f"] == {HolderKind.FD}
    assert kinds["net_g"] == {HolderKind.MOUNT}
    assert base[world.names["net_b"]][0].owner == parse_ns_name(world.names["user_b"])
    assert base[world.names["pid_c"]][0].parent is not None
    # The other daemon is in namespaces (a holder) and pins one (not a holder).
    daemon = [h.kind for _facts, holders in base.values() for h in holders if h.pid == world.roles["other_daemon"]]
    assert HolderKind.PROCESS in daemon and HolderKind.FD not in daemon
    without = baseline(world, handles=False)
    assert set(without) == set(base)
    assert all(facts.handle is None for facts, _holders in without.values())


@pytest.mark.parametrize("code", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("call", each(CALLS))
def test_an_error_for_one_item_costs_that_item_alone(
    call: Call, code: int, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = baseline(world, call.handles)
    if not call.handles:
        without_handles(monkeypatch)
    faults = _faults()
    with scanning() as scan:
        injection = call.inject(world, code, monkeypatch)
        found = listing(sweep(scan, world, monkeypatch))
    assert injection.hits, f"{call.name} was never called for {call.item}"
    pid = world.roles.get(call.item) if call.process else None
    name = None if call.process else world.names[call.item]
    changed, lines = reach(base, pid, name)
    assert_the_rest_exact(base, found, changed, lines)
    if code in FAULTS:
        assert _faults() > faults
    elif code in ANSWERS:
        assert _faults() == faults
    # And what it cost the item itself.
    if call.name == "tables.open":  # another way in: a helper process in that mount namespace
        assert found == base
    elif call.name == "tables.read":  # a table not read is not followed (for now): its bind mount is not seen
        assert world.names["net_g"] not in found
    elif call.process and code in FAULTS:  # the process's read failed whole: nothing of a partial read
        assert not any(h.pid == pid for _facts, holders in found.values() for h in holders)
    elif name is not None:
        assert (name in found) == _listed_anyway(call.name, code), found.get(name)


def _listed_anyway(call: str, code: int) -> bool:
    """Whether the namespace an errno hits while it is pinned is listed all the same."""
    if call in ("kernel.get_userns", "kernel.get_parent"):
        return code == errno.EPERM  # the ioctl's answer above the daemon's namespaces: listed as the top
    if call == "kernel.open_ns_handle":  # a handle the kernel will not open again: pinned as without handles
        return code in ANSWERS | kernel.NO_HANDLES
    return call == "kernel.setns"  # not entered again: pinned as it was opened


@pytest.mark.parametrize("code", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("call", each(PROCESS_READS))
def test_a_process_whose_read_faults_is_kept_as_it_was(
    call: Call, code: int, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = baseline(world, handles=True)
    with scanning() as scan:
        assert listing(sweep(scan, world, monkeypatch)) == base
        scan.scanner = discovery.Scanner(os.getpid(), kernel.nsfs_device())  # one that asks about sockets again
        injection = call.inject(world, code, monkeypatch)
        found = listing(sweep(scan, world, monkeypatch))
    assert injection.hits, f"{call.name} was never called for {call.item}"
    if code in ANSWERS | call.answers:  # the kernel's answer: what it says is gone is gone, the rest as it was
        changed, lines = reach(base, world.roles[call.item], None)
        assert_the_rest_exact(base, found, changed, lines)
    else:  # not an answer: what the registry had of the process stays, fd holders and all
        assert found == base


def test_a_mount_table_whose_read_faults_keeps_its_bind_mounts(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change of one mount table whose read then fails: its bind mounts stay as they were
    (not emptied, which would release what only they hold), and the table is read again at
    the next refresh (the kernel flags a change once)."""
    net_a, net_g, mnt_g = world.names["net_a"], world.names["net_g"], world.names["mnt_g"]
    via = f"/proc/{world.roles['mount']}/mountinfo"
    failing = [True]
    reads: list[bool] = []  # whether each read of that table failed

    def read(fd: int, size: int) -> bytes:
        if _names_fd(fd, via):
            reads.append(failing[0])
            if failing[0]:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        return os.read(fd, size)

    in_mnt_g = ["nsenter", f"--target={world.roles['mount']}", "--mount"]
    bound = world.scratch / "net_a"
    bound.touch()
    with scanning() as scan:
        before = listing(sweep(scan, world, monkeypatch))
        assert [h.ns for h in before[net_g][1]] == [mnt_g]
        monkeypatch.setattr(mount_tables, "os", _Os("read", read))
        faults = errors.TALLY.counts().get(("mountinfo_read", errno.EIO), 0)
        netns = f"/proc/{world.roles['net_uts']}/ns/net"
        assert run([*in_mnt_g, "mount", "--bind", netns, str(bound)]).returncode == 0
        try:
            assert scan.tables.wait(10.0)
            scan.registry.refresh_tables()
            assert reads == [True]
            assert listing(scan.registry.snapshot) == before  # kept: net_g still held, the new mount unseen
            assert errors.TALLY.counts()[("mountinfo_read", errno.EIO)] == faults + 1
            failing[0] = False
            scan.registry.refresh_tables()
            assert reads[0] and not any(reads[1:]) and len(reads) > 1
            after = listing(scan.registry.snapshot)
            assert after[net_g] == before[net_g]
            mount = Holder(HolderKind.MOUNT, text=str(bound), ns=mnt_g)
            assert set(after[net_a][1]) == {*before[net_a][1], mount}
        finally:
            assert run([*in_mnt_g, "umount", str(bound)]).returncode == 0
