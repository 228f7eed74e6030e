"""Discovery and `holders`: what keeps each namespace alive, one kind of holder at a time.

Each test makes a namespace held by one kind of holder alone, checks that it is
listed and that `holders` names exactly that holder, then removes the holder and
checks that the entry goes and the daemon closes its pin.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nsfs_fuse import kernel
from nsfs_fuse.discovery import Scanner
from nsfs_fuse.model import HolderKind, ProcessRead
from nsfs_fuse.sweeps import Each, SweepProcess
from tests.support.daemon import Daemon, assert_released, running_daemon
from tests.support.oracles import all_process_namespaces, children, ns_id, ns_of
from tests.support.procs import Procs
from tests.support.programs import SOCKET_ONLY, THREAD, UNSHARE_TIME_NO_EXEC, WITH_A_SOCKET, WITHOUT_PIDFD
from tests.support.waiting import run, wait_until


def holders(nsfs: Daemon, name: str) -> list[str]:
    return nsfs.read(name, "holders").splitlines()


def listed_holders(nsfs: Daemon, name: str) -> list[str] | None:
    """Its holders while it is listed; None once it is not (it may leave between a listing and
    the read: on a kernel without file handles, a namespace whose last process exits leaves
    until a sweep finds the fd that still holds it)."""
    try:
        return holders(nsfs, name)
    except FileNotFoundError:
        return None


def holders_if_listed(nsfs: Daemon, name: str) -> list[str] | None:
    """As `holders`; None while it is not listed. Before Linux 6.2 no fd count tells the daemon
    of a new fd holder: an entry whose last other holder goes may leave until a sweep finds
    that fd, and come back (README, Kernels)."""
    try:
        return holders(nsfs, name)
    except FileNotFoundError:
        return None


def link_inode(path: Path) -> int | None:
    """The inode an `ns` link opens; None while the entry has no link, or while its pin is
    suspended for a probe (the link read just before then leads to a placeholder socket, which
    /proc will not open: ENXIO; a stat of it would succeed and name the socket)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENXIO):
            return None
        raise
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def comm(pid: int, tid: int | None = None) -> str:
    path = f"/proc/{pid}/task/{tid}/comm" if tid else f"/proc/{pid}/comm"
    return Path(path).read_text().strip()


def test_a_process(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--net")
    net = ns_of(pid, "net")
    wait_until(lambda: net in nsfs.names(), "the namespace")
    # Listed from unshare's first read; the exec's event brings the line up to date (on a slow
    # guest the listing can come first).
    wait_until(lambda: holders(nsfs, net) == [f"process {pid} sleep"], "its holder line after the exec")
    procs.end(pid)
    assert_released(nsfs, baseline, net)


def test_a_thread(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    proc, (tid, net) = procs.reporting(sys.executable, "-c", THREAD)
    wait_until(lambda: net in nsfs.names(), "the thread's namespace")
    assert holders(nsfs, net) == [f"task {proc.pid} {tid} {comm(proc.pid, int(tid))}"]
    procs.stop(proc)
    assert_released(nsfs, baseline, net)


def test_an_fd(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--net")
    net = ns_of(pid, "net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        procs.end(pid)
        wait_until(
            lambda: net in nsfs.names() and listed_holders(nsfs, net) == [f"fd {os.getpid()} {fd}"], "the fd holder"
        )
    finally:
        os.close(fd)
    assert_released(nsfs, baseline, net)


def _mount_in(procs: Procs, target: Path, source_pid: int) -> tuple[int, str]:
    """A process in a private mount namespace with a bind mount of `source_pid`'s net namespace at `target`."""
    holder = procs.sleeper("--mount", "--propagation", "private")
    target.touch()
    bound = run(
        ["nsenter", f"--target={holder}", "--mount", "mount", "--bind", f"/proc/{source_pid}/ns/net", str(target)]
    )
    assert bound.returncode == 0, bound.stderr
    return holder, ns_of(holder, "mnt")


def test_a_bind_mount_in_another_mount_namespace(nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path) -> None:
    pid = procs.sleeper("--net")
    net = ns_of(pid, "net")
    target = public_dir / "netns"
    holder, mnt = _mount_in(procs, target, pid)
    procs.end(pid)
    # The daemon's own mount namespace has no such mount: only the other one does.
    assert str(target) not in Path("/proc/self/mountinfo").read_text()
    expected = [f"mount {target} {mnt}"]
    wait_until(
        lambda: net in nsfs.names() and listed_holders(nsfs, net) == expected, "a mount in another mount namespace"
    )
    procs.end(holder)  # its mount namespace goes, and the mount with it
    assert_released(nsfs, baseline, net, mnt)


def test_a_bind_mount_in_a_mount_namespace_no_process_is_in(
    nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path
) -> None:
    pid = procs.sleeper("--net")
    net = ns_of(pid, "net")
    target = public_dir / "netns with space"
    holder, mnt = _mount_in(procs, target, pid)
    mnt_fd = os.open(f"/proc/{holder}/ns/mnt", os.O_RDONLY)
    try:
        procs.end(pid)
        procs.end(holder)
        wait_until(lambda: {net, mnt} <= nsfs.names(), "both namespaces, with no process in either")
        wait_until(lambda: holders_if_listed(nsfs, mnt) == [f"fd {os.getpid()} {mnt_fd}"], "the fd holder")
        escaped = str(target).replace(" ", "\\040")
        wait_until(lambda: holders_if_listed(nsfs, net) == [f"mount {escaped} {mnt}"], "the mount holder")
    finally:
        os.close(mnt_fd)
    assert_released(nsfs, baseline, net, mnt)


def test_a_socket(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    proc, (net, fd) = procs.reporting(sys.executable, "-c", SOCKET_ONLY)
    assert ns_of(proc.pid, "net") != net, "the process went back home; only its socket is in there"
    wait_until(lambda: net in nsfs.names(), "a namespace held by a socket")
    assert holders(nsfs, net) == [f"socket {proc.pid} {fd}"]
    procs.stop(proc)
    assert_released(nsfs, baseline, net)


def test_time_for_children(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    proc, (time_ns,) = procs.reporting(sys.executable, "-c", UNSHARE_TIME_NO_EXEC)
    # Where the kernel lists namespaces itself (listns) it may be listed first `unseen`: unshare()
    # makes no event, and once the process is past its follow-up reads (its Python may take that
    # long to start in an emulated guest) no fd count changes either; the search the listing
    # asks for names it then (test_listed.py), or a sweep.
    expected = [f"for-children {proc.pid}"]
    wait_until(lambda: holders_if_listed(nsfs, time_ns) == expected, "a time namespace held for children")
    procs.stop(proc)
    assert_released(nsfs, baseline, time_ns)


def test_an_owner_only(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--net")
    user, net = ns_of(pid, "user"), ns_of(pid, "net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        procs.end(pid)
        wait_until(lambda: user in nsfs.names() and listed_holders(nsfs, user) == [f"owner-of {net}"], "an owner only")
    finally:
        os.close(fd)
    assert_released(nsfs, baseline, user, net)


def test_a_parent_only(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    proc = procs.start(*("unshare", "--pid", "--fork") * 2, "sleep", "600")
    inner = procs.wait_for_sleep(proc)
    outer, child = ns_of(children(proc.pid)[0], "pid"), ns_of(inner, "pid")
    # A new process opens the fd as it starts: read on its exec, on any kernel.
    hold = f"import os, time; print(os.open('/proc/{inner}/ns/pid', os.O_RDONLY), flush=True); time.sleep(600)"
    holder, (fd,) = procs.reporting(sys.executable, "-c", hold)
    wait_until(lambda: child in nsfs.names() and f"fd {holder.pid} {fd}" in holders(nsfs, child), "the fd holder")
    procs.stop(proc)
    wait_until(lambda: outer in nsfs.names() and listed_holders(nsfs, outer) == [f"parent-of {child}"], "a parent only")
    assert holders(nsfs, child) == [f"fd {holder.pid} {fd}"]
    procs.stop(holder)
    assert_released(nsfs, baseline, outer, child)


@pytest.mark.needs("ns_handles")
@pytest.mark.parametrize("others", [0, 2], ids=["alone", "beside two daemons"])
def test_an_fd_in_flight(nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path, others: int) -> None:
    # Beside other daemons, whose pins would answer a probe as well as the message does,
    # every daemon lets go of the namespace at one shared moment and probes it then.
    with contextlib.ExitStack() as stack:
        for n in range(others):
            stack.enter_context(running_daemon(public_dir / f"other{n}"))
        pid = procs.sleeper("--net")
        net = ns_of(pid, "net")
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        wait_until(lambda: net in nsfs.names(), "the namespace, seen while an fd held it")
        sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sender.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            os.close(fd)
            procs.end(pid)
            # Only the message in the socket's queue holds it now: no scan can see that.
            wait_until(lambda: holders(nsfs, net) == ["unseen"], "the probe to keep it, unseen")
            # Probed again every 0.5 s, for part of which it is listed without its link: wait
            # for the link, and it must open exactly this namespace.
            inode = wait_until(lambda: link_inode(nsfs.path(net, "ns")), "the re-pinned ns link")
            assert inode == int(net[5:-1]), "the re-pinned ns link still opens it"
        finally:
            sender.close()
            receiver.close()  # the message, and the fd in it, are freed
        assert_released(nsfs, baseline, net)


def test_where_the_kernel_cannot_lend_a_socket_its_process_is_still_read(public_dir: Path, procs: Procs) -> None:
    """Before Linux 5.6 (RHEL 8's 4.18) there is no pidfd_getfd: a socket's namespace cannot be
    asked, and that is an answer, not a fault that fails the read of every process with a
    socket. Made here with a seccomp filter that answers ENOSYS, as such a kernel does."""
    prefix = ["/usr/bin/python3", "-c", WITHOUT_PIDFD]
    with running_daemon(public_dir / "mnt", prefix=prefix) as nsfs:
        proc, (net, _fd) = procs.reporting("unshare", "--net", sys.executable, "-c", WITH_A_SOCKET)
        # Its reads after the exec meet the socket (one before it may not: a failed read would
        # leave that one's `python3` line in place).
        expected = [f"process {proc.pid} sleep"]
        wait_until(lambda: net in nsfs.names() and listed_holders(nsfs, net) == expected, "its process, alone")
        assert "no pidfd_getfd (Linux 5.6+) here: sockets are not found as holders" in nsfs.log.read_text()
        assert "(ENOSYS)" not in nsfs.log.read_text(), "counted as a fault"


@pytest.mark.needs("pid_in_pidns")
def test_pids_are_those_of_the_callers_pid_namespace(nsfs: Daemon, procs: Procs) -> None:
    proc = procs.start("unshare", "--pid", "--net", "--fork", "--mount-proc", "sleep", "600")
    pid = procs.wait_for_sleep(proc)
    net = ns_of(pid, "net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        # unshare itself moved into the new network namespace; its child is also in the new pid one.
        expected = [f"process {proc.pid} unshare", f"process {pid} sleep", f"fd {os.getpid()} {fd}"]
        wait_until(lambda: net in nsfs.names() and listed_holders(nsfs, net) == expected, "all three holders")
        # Inside the new pid namespace the sleep is pid 1, and neither unshare nor this test exist.
        inside = run(["nsenter", f"--target={pid}", "--pid", "cat", str(nsfs.path(net, "holders"))])
        assert (inside.returncode, inside.stdout) == (0, "process 1 sleep\n"), inside.stderr
    finally:
        os.close(fd)


def test_names_with_spaces_stay_one_field(nsfs: Daemon, procs: Procs) -> None:
    script = "import ctypes, time; ctypes.CDLL(None).prctl(15, b'two words', 0, 0, 0); time.sleep(600)"
    proc = procs.start("unshare", "--net", sys.executable, "-c", script)
    wait_until(lambda: comm(proc.pid) == "two words", "the new name")
    net = ns_of(proc.pid, "net")
    wait_until(lambda: net in nsfs.names() and (listed_holders(nsfs, net) or [""])[0].endswith("words"), "the holder")
    assert holders(nsfs, net) == [f"process {proc.pid} two\\040words"]
    assert len(holders(nsfs, net)[0].split()) == 3


def test_a_bind_mount_in_the_daemons_mount_namespace(
    nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path
) -> None:
    pid = procs.sleeper("--net")
    name = ns_of(pid, "net")
    target = public_dir / "netns"
    target.touch()
    assert run(["mount", "--bind", f"/proc/{pid}/ns/net", str(target)]).returncode == 0
    try:
        procs.end(pid)
        expected = [f"mount {target} {ns_of(os.getpid(), 'mnt')}"]
        wait_until(lambda: name in nsfs.names() and listed_holders(nsfs, name) == expected, "a mount holder")
    finally:
        assert run(["umount", str(target)]).returncode == 0
    assert_released(nsfs, baseline, name)


def test_a_bind_mount_at_an_odd_path(nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path) -> None:
    """A path with a byte that is not UTF-8 and a form feed, which mountinfo leaves as they are:
    its mount line comes whole, the bytes as they were."""
    pid = procs.sleeper("--net")
    name = ns_of(pid, "net")
    target = os.fsencode(public_dir) + b"/odd\xff\x0cpath"
    Path(os.fsdecode(target)).touch()
    assert run(["mount", "--bind", f"/proc/{pid}/ns/net", os.fsdecode(target)]).returncode == 0
    try:
        procs.end(pid)
        expected = b"mount " + target + f" {ns_of(os.getpid(), 'mnt')}\n".encode()
        wait_until(
            lambda: name in nsfs.names() and nsfs.path(name, "holders").read_bytes() == expected, "the mount holder"
        )
    finally:
        assert run(["umount", os.fsdecode(target)]).returncode == 0
    assert_released(nsfs, baseline, name)


def test_pid_for_children(nsfs: Daemon, procs: Procs, baseline: int) -> None:
    # Without --fork, unshare's own process stays in its pid namespace; the new one is
    # only its children's. The kernel refuses to open it until its first child (its
    # init) exists, so `(true)` forks one that exits at once: no process is left in it.
    proc = procs.start("unshare", "--pid", "sh", "-c", "(true); exec sleep 600")
    pid = procs.wait_for_sleep(proc)
    name = os.readlink(f"/proc/{pid}/ns/pid_for_children")
    assert name != ns_of(pid, "pid")
    # The entry may show while `(true)` still runs; its lines go when it is reaped.
    expected = [f"for-children {pid}"]
    wait_until(
        lambda: name in nsfs.names() and listed_holders(nsfs, name) == expected, "a pid namespace held for children"
    )
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


def test_a_long_list_reads_whole(nsfs: Daemon, procs: Procs, public_dir: Path) -> None:
    many = 10000
    # A static sleep of our own: 10,000 dynamically linked ones each hold libc open, and a guest
    # whose root is shared over 9p (make test-kernel) runs out of the host's fds for them.
    sleep = public_dir / "sleep"
    shutil.copy("/bin/busybox", sleep)
    script = f"i=0; while [ $i -lt {many} ]; do {sleep} 600 & i=$((i+1)); done; echo ready; wait"
    proc = procs.start("unshare", "--net", "sh", "-c", script, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    net = ns_of(proc.pid, "net")
    kids = sorted(children(proc.pid))
    assert len(kids) == many
    wait_until(lambda: all(comm(pid) == "sleep" for pid in kids), "every child to exec sleep", timeout=60)
    # In pid order; pids wrap at pid_max, so the shell is not necessarily first.
    members = sorted([(proc.pid, "sh"), *((pid, "sleep") for pid in kids)])
    expected = [f"process {pid} {name}" for pid, name in members]
    wait_until(lambda: net in nsfs.names() and listed_holders(nsfs, net) == expected, "every holder", timeout=60)
    cat = run(["cat", str(nsfs.path(net, "holders"))])
    assert cat.stdout.splitlines() == expected


@pytest.mark.needs("ns_handles")
@pytest.mark.needs("ns_id")
def test_a_recycled_inode_is_a_new_entry_never_a_mix(nsfs: Daemon, procs: Procs) -> None:
    # The old uts namespace is owned by a user namespace that stays; the new one by the
    # initial one. Inode numbers go lowest-free first, and a uts namespace's number is freed
    # with it (a network namespace's by a cleanup that runs later: a new one made as its handle
    # stopped opening got another number 15 times in 15), so the next namespace made then takes
    # it, unless a lower number was freed meanwhile. Beside another daemon that happens: it lets
    # go of what an earlier test ended on its own time, in the middle of this one. Then the try
    # is made again, once nothing of this one is pending.
    owner = procs.sleeper("--user", "--map-root-user")
    user = ns_of(owner, "user")
    for _ in range(20):
        old = procs.start("nsenter", f"--target={owner}", "--user", "unshare", "--uts", "sleep", "600")
        old_pid = procs.wait_for_sleep(old)
        uts = ns_of(old_pid, "uts")
        wait_until(lambda: uts in nsfs.names(), "the first namespace")  # noqa: B023 - called at once
        old_id, old_inode = nsfs.read(uts, "id"), os.stat(nsfs.path(uts)).st_ino
        assert os.readlink(nsfs.path(uts, "owner")) == f"../{user}"
        handle = _handle(f"/proc/{old_pid}/ns/uts")
        procs.stop(old)
        wait_until(lambda: _freed(handle), "the kernel to free the old namespace")  # noqa: B023 - called at once
        pid = procs.sleeper("--uts")
        if ns_of(pid, "uts") == uts:
            break
        # Another number: a lower one freed meanwhile. Made before that number is free again
        # (the daemons let go of it after the exit), the next old namespace would get another,
        # and the next new one this number again: every try would fail the same way.
        taken = _handle(f"/proc/{pid}/ns/uts")
        procs.end(pid)
        wait_until(lambda: _freed(taken), "the kernel to free the new namespace")  # noqa: B023 - called at once
    else:
        raise AssertionError("no new namespace reused an old one's inode number in 20 tries")
    wait_until(
        lambda: uts in nsfs.names() and listed_holders(nsfs, uts) == [f"process {pid} sleep"], "the new namespace"
    )
    assert nsfs.read(uts, "id") == f"{ns_id(f'/proc/{pid}/ns/uts')}\n" != old_id
    assert os.readlink(nsfs.path(uts, "owner")) == f"../{ns_of(os.getpid(), 'user')}"
    assert os.stat(nsfs.path(uts, "ns")).st_ino == int(uts[5:-1])
    assert os.stat(nsfs.path(uts)).st_ino != old_inode, "a new entry, not the old one's inode"


def _handle(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        handle = kernel.ns_handle(fd)
    finally:
        os.close(fd)
    assert handle is not None, "this kernel has nsfs file handles"
    return handle


def _freed(handle: bytes) -> bool:
    """Whether the namespace behind `handle` is gone (its inode number free again)."""
    try:
        os.close(kernel.open_ns_handle(handle))
    except OSError as exc:
        return exc.errno in (errno.ESTALE, errno.ENOENT)
    return False


def test_lsns_lists_nothing_the_filesystem_does_not(nsfs: Daemon, procs: Procs, public_dir: Path) -> None:
    # A little of everything: processes, a socket-only and an fd-only namespace, a bind mount.
    procs.sleeper("--user", "--map-root-user", "--pid", "--net", "--ipc", "--uts", "--fork")
    socket_net = procs.reporting(sys.executable, "-c", SOCKET_ONLY)[1][0]
    pid = procs.sleeper("--net")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    mounted = procs.sleeper("--net")
    target = public_dir / "netns"
    target.touch()
    assert run(["mount", "--bind", f"/proc/{mounted}/ns/net", str(target)]).returncode == 0
    try:
        procs.end(pid)
        procs.end(mounted)
        wait_until(lambda: socket_net in nsfs.names(), "the socket-held namespace")
        lsns = run(["lsns", "--list", "--noheadings", "--output", "NS,TYPE"])
        assert lsns.returncode == 0, lsns.stderr
        theirs = {f"{nstype}:[{inode}]" for inode, nstype in (line.split() for line in lsns.stdout.splitlines())}
        # lsns names the namespaces of every process, other daemons' helpers too, which hold
        # nothing; and of processes that start as it reads, which the daemon hears of a moment
        # later. Whatever it named that a process other than a helper is still in is listed.

        def unlisted() -> set[str]:
            return (theirs & all_process_namespaces()) - nsfs.names()

        try:
            wait_until(lambda: not unlisted(), "every namespace lsns lists to be listed")
        except AssertionError:
            raise AssertionError(f"lsns lists what we do not: {sorted(unlisted())}") from None
        assert socket_net in nsfs.names()
    finally:
        os.close(fd)
        assert run(["umount", str(target)]).returncode == 0


def test_a_sweep_in_its_own_process_reads_what_a_sweep_in_the_daemon_reads(procs: Procs) -> None:
    """Sweeps read /proc in a helper process and send their reads back (sweeps.py)."""
    pids = {procs.sleeper("--net"), procs.sleeper("--user", "--uts")}
    fd_holder = procs.sleeper("--net")
    held = os.open(f"/proc/{fd_holder}/ns/net", os.O_RDONLY)
    helpers: set[int] = set()
    remote = SweepProcess(0, kernel.nsfs_device(), helpers)  # 0: no daemon, so this process's fds count
    try:
        far: dict[int, ProcessRead] = {}
        near: dict[int, ProcessRead] = {}

        def into(found: dict[int, ProcessRead], same: set[int] | None = None) -> Each:
            def each(reads: list[ProcessRead], unchanged: list[tuple[int, float]]) -> bool:
                found.update((r.pid, r) for r in reads)
                if same is not None:
                    same.update(pid for pid, _read_at in unchanged)
                return True

            return each

        assert remote.sweep(into(far))
        assert Scanner(0, kernel.nsfs_device()).sweep(lambda reads: into(near)(reads, []))
        for pid in pids | {fd_holder}:
            assert {s.key for s in far[pid].sightings} == {s.key for s in near[pid].sightings}, pid
        ours = {s.holder for s in far[os.getpid()].sightings if s.key.name == ns_of(fd_holder, "net")}
        assert {(h.kind, h.pid, h.num) for h in ours} == {(HolderKind.FD, os.getpid(), held)}
        assert {h.creds for h in ours} == {s.holder.creds for s in near[os.getpid()].sightings if s.holder.pid}
        (helper,) = helpers
        assert far[helper].sightings == ()  # the helper never holds anything
        # The next sweep sends only what changed, and what it is told to forget.
        changed: dict[int, ProcessRead] = {}
        same: set[int] = set()
        (first, second) = sorted(pids)
        again = os.open(f"/proc/{fd_holder}/ns/net", os.O_RDONLY)  # this process now holds it twice
        try:
            assert remote.sweep(into(changed, same), forget=[first])
        finally:
            os.close(again)
        assert {first, os.getpid()} <= changed.keys() and second not in changed and fd_holder not in changed
        assert {second, fd_holder} <= same and first not in same and os.getpid() not in same
        assert changed[first].sightings == far[first].sightings
        # Abandoned after the first chunk: the helper is killed, and a new one answers next time.
        assert not remote.sweep(lambda reads, same: False)
        assert helpers == set() and not os.path.exists(f"/proc/{helper}")
        assert remote.sweep(lambda reads, same: True) and remote.cpu() > 0
        # A paced sweep reads at idle priority, one someone waits for at normal priority.
        (helper,) = helpers
        assert remote.sweep(lambda reads, same: True, background=True)
        assert os.sched_getscheduler(helper) == os.SCHED_IDLE
        assert remote.sweep(lambda reads, same: True)
        assert os.sched_getscheduler(helper) == os.SCHED_OTHER

        # A fault folding a chunk in is the caller's: it propagates as itself, not as the
        # helper's failure, and the helper goes, as when a sweep is abandoned.
        def faulty(reads: list[ProcessRead], same: list[tuple[int, float]]) -> bool:
            raise OSError(errno.ESTALE, "folding the reads in")

        with pytest.raises(OSError) as raised:
            remote.sweep(faulty)
        assert raised.value.strerror == "folding the reads in"
        assert helpers == set() and not os.path.exists(f"/proc/{helper}")
    finally:
        remote.close()
        os.close(held)
    assert helpers == set()
