"""Benchmark rows for issue 10: does the daemon keep dead namespaces alive, and how fresh is it?

A namespace's life is judged by what the kernel shows, not by what the mount says.
The witness is a veth pair with one end in the host and the other in the namespace:
when the namespace dies, the host end vanishes from /sys/class/net. A user
namespace (held by a zombie) has no network device, so there the witness is the
kernel's own file handle: open_by_handle_at() on an nsfs handle succeeds only while
something holds the namespace.

Every wait is bounded: a figure that times out prints as "> T s". Everything made
here (network namespaces and veths named `nsb...`, helper processes, mounts) is
undone on the way out, even on failure.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.daemon import Daemon, running_daemon
from tests.support.features import has
from tests.support.oracles import link_exists, ns_alive, ns_handle
from tests.support.waiting import run

Row = tuple[str, str, str, str]
Sample = float | None  # seconds; None: timed out

# Kinds of last holder, in the order of the rows.
KINDS = ("netns", "fd", "process", "zombie", "thread", "socket", "mount")
KIND_LABELS = {
    "netns": "ip netns del",
    "fd": "fd closed, process lives",
    "process": "process killed+reaped",
    "zombie": "zombie reaped (user ns)*",
    "thread": "thread exits, proc lives",
    "socket": "socket closed",
    "mount": "umount, other mount ns",
}

HELPER_PATIENCE = 30.0  # for a helper to report, an `ip` command to return
POLL = 0.002  # the death delays are tens of milliseconds without the mount
OLD_AFTER = 4.0  # a process this old has no follow-up read due (the daemon's FOLLOW_UP: 0.5, 3 s)
LIST_POLL = 0.05  # listing the mount costs ~20 ms at full size: poll no faster than this
DISCOVER_POLL = 0.25  # waiting minutes for a sweep to find a namespace: no need to hurry it
SETTLE = 2.0  # longer than the daemon's short reprobes after a change (50 ms, 250 ms, 1 s)
NS_LINKS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
TAG = f"nsb{os.getpid() % 10000:04d}"  # prefix of every netns and veth made by this run
MADE_UP_LOW = 4_100_000_000  # namespace inode numbers start at 0xF0000000 and are dense: these are free

# The holder of one namespace, run as its own process: argv KIND VETH TARGET.
# A thread unshares a network namespace without exec, so that no process event names it:
# the daemon must find it by its own means. If VETH is "veth", it prints "veth TID" and
# waits for "made" (the bench puts a veth end in the namespace by that TID, from the host).
# It then leaves exactly one holder of the kind asked, prints "NAME PID", and waits. On "go"
# it lets that holder go and prints the CLOCK_MONOTONIC time it did; it then lives on
# until its stdin closes. Kind "zombie": a child `unshare --user sleep` is killed on "go"
# and reaped 0.3 s later.
HOLDER = r"""
import ctypes, os, signal, socket, subprocess, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
NEWNET, NEWNS = 0x40000000, 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
kind, veth, target = sys.argv[1:4]

def check(ok, what):
    if not ok:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")

def report(*words):
    print(*words, flush=True)

def new_net(box):
    # This thread alone enters a new network namespace, and gets its veth end.
    check(libc.unshare(NEWNET) == 0, "unshare(CLONE_NEWNET)")
    tid = threading.get_native_id()
    if veth:
        report("veth", tid)
        if sys.stdin.readline().strip() != "made":
            return
    box["path"] = f"/proc/self/task/{tid}/ns/net"
    box["name"] = os.readlink(box["path"])

def go():
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)

def in_thread(work):
    # Run work(box) in a thread of its own that then waits for end(), and exits.
    box, ready, leave = {}, threading.Event(), threading.Event()
    def main():
        try:
            box["tid"] = threading.get_native_id()
            work(box)
        finally:
            ready.set()
        leave.wait()
    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait()
    if "name" not in box:
        sys.exit(1)
    def end():
        leave.set()
        thread.join()
        deadline = time.monotonic() + 10  # until the kernel has let the thread go
        while os.path.exists(f"/proc/self/task/{box['tid']}") and time.monotonic() < deadline:
            time.sleep(0.0005)
    return box, end

if kind == "fd":
    def work(box):
        new_net(box)
        box["fd"] = os.open(box["path"], os.O_RDONLY)
    box, end = in_thread(work)
    end()
    report(box["name"], os.getpid())
    go()
    os.close(box["fd"])
elif kind == "old":
    # A process long past its start (no follow-up read is due) makes a namespace in its one
    # thread, keeps it by an fd and goes back: nothing but its count of fds changes.
    time.sleep(float(target))
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    check(libc.unshare(NEWNET) == 0, "unshare(CLONE_NEWNET)")
    name = os.readlink("/proc/self/ns/net")
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    check(libc.setns(own, NEWNET) == 0, "setns")
    report(name, os.getpid())
    go()
    os.close(fd)
elif kind == "old-in":
    # The same, but it stays in the namespace and opens no fd: nothing an event, a follow-up
    # read or an fd count can see changes.
    time.sleep(float(target))
    check(libc.unshare(NEWNET) == 0, "unshare(CLONE_NEWNET)")
    report(os.readlink("/proc/self/ns/net"), os.getpid())
    go()
elif kind == "flight":
    # The fd is sent over a unix socket nobody reads: only the message holds the namespace.
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    def work(box):
        new_net(box)
        fd = os.open(box["path"], os.O_RDONLY)
        socket.send_fds(sender, [b"x"], [fd])
        os.close(fd)
    box, end = in_thread(work)
    end()
    report(box["name"], os.getpid())
    go()
    receiver.close()
    sender.close()
elif kind == "socket":
    def work(box):
        new_net(box)
        box["sock"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    box, end = in_thread(work)
    end()
    report(box["name"], os.getpid())
    go()
    box["sock"].close()
elif kind == "thread":
    box, end = in_thread(new_net)
    report(box["name"], box["tid"])
    go()
    end()
elif kind == "mount":
    # A mount namespace of our own (before any thread), private, so the bind mount is only here.
    check(libc.unshare(NEWNS) == 0, "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0, "mount --make-rprivate /")
    box, end = in_thread(new_net)
    check(libc.mount(box["path"].encode(), target.encode(), None, MS_BIND, None) == 0, "mount --bind")
    end()
    report(box["name"], os.getpid())
    go()
    check(libc.umount2(target.encode(), 0) == 0, "umount")
elif kind == "zombie":
    own = os.readlink("/proc/self/ns/user")
    child = subprocess.Popen(["unshare", "--user", "sleep", "600"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child.pid}/comm") as f:
                if f.read().strip() == "sleep" and os.readlink(f"/proc/{child.pid}/ns/user") != own:
                    break
        except OSError:
            pass
        time.sleep(0.001)
    report(os.readlink(f"/proc/{child.pid}/ns/user"), child.pid)
    go()
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.001)
    time.sleep(0.3)
    child.wait()
else:
    sys.exit(f"unknown kind {kind}")
report(time.monotonic())
sys.stdin.read()
"""

# Lookups of made-up names, one `stat` each as a shell user would, as the issue measured them:
# argv SECONDS MOST LOW MOUNT; prints how many it made. Bounded in time and count.
LOOKUP_LOOP = r"""
n=0 most=$2 low=$3 mount=$4 end=$((SECONDS + $1))
while [ "$SECONDS" -lt "$end" ] && [ "$n" -lt "$most" ]; do
    stat "$mount/net:[$((low + RANDOM * 32768 + RANDOM))]" >/dev/null 2>&1
    n=$((n + 1))
done
echo "$n"
"""


# -- the kernel, asked directly: nsfs file handles ------------------------------

# -- waiting, bounded --------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float) -> float | None:
    """Seconds (monotonic, absolute) at which predicate() first held, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(poll)


def since(start: float, end: float | None) -> Sample:
    return None if end is None else max(0.0, end - start)


def read_line(stream: IO[bytes], timeout: float, what: str) -> str:
    """One line from an unbuffered pipe, within `timeout` seconds."""
    fd, line = stream.fileno(), b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError(f"{what}: the helper exited")
        line += byte
    return line.decode().strip()


def safe_listing(nsfs: Daemon) -> set[str]:
    try:
        return nsfs.names()
    except OSError:
        return set()


def safe_read(nsfs: Daemon, name: str, file: str) -> str:
    try:
        return nsfs.read(name, file)
    except OSError:
        return ""


# -- what this module makes, and undoes ----------------------------------------


@dataclass
class Mess:
    """Everything made here, to undo whatever happens."""

    scratch: Path
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    count: int = 0

    def names(self, letter: str) -> tuple[str, str]:
        """A fresh (host, peer) pair of names, at most 15 bytes."""
        self.count += 1
        return f"{TAG}{letter}{self.count}h", f"{TAG}{letter}{self.count}p"

    def helper(self, *argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, start_new_session=True)
        self.helpers.append(proc)
        return proc

    def end(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill a helper's whole process group (its forked children too) and reap it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=HELPER_PATIENCE)
            except subprocess.TimeoutExpired:
                print(f"lifetime: helper {proc.pid} did not die", file=sys.stderr)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc in self.helpers:
            self.helpers.remove(proc)

    def drop_netns(self, name: str) -> None:
        if name in self.netns:
            run(["ip", "netns", "del", name], timeout=HELPER_PATIENCE)
            self.netns.remove(name)

    def drop_link(self, name: str) -> None:
        if link_exists(name):
            run(["ip", "link", "del", name], timeout=HELPER_PATIENCE)
        if name in self.links:
            self.links.remove(name)

    def close(self) -> None:
        for proc in list(self.helpers):
            self.end(proc)
        for name in list(self.netns):
            self.drop_netns(name)
        for name in list(self.links):
            self.drop_link(name)
        # Anything of ours that a crash left unrecorded.
        for name in run(["ip", "netns", "list"], timeout=HELPER_PATIENCE).stdout.split():
            if name.startswith(TAG):
                run(["ip", "netns", "del", name], timeout=HELPER_PATIENCE)
        with contextlib.suppress(OSError):
            for name in os.listdir("/sys/class/net"):
                if name.startswith(TAG):
                    run(["ip", "link", "del", name], timeout=HELPER_PATIENCE)


# -- 1. death delay, per kind of last holder --------------------------------------


class NotPinned(Exception):
    """The daemon never pinned the namespace, so it cannot have delayed its death."""


@dataclass
class Witnessed:
    """A namespace held one way, the one who can let that holder go, and how to see it alive."""

    name: str
    alive: Callable[[], bool]
    release: Callable[[], float]  # lets the last holder go; returns when it went (monotonic)
    host: str
    pid: int = 0  # the zombie, for "zombie"


@contextlib.contextmanager
def witnessed(kind: str, mess: Mess) -> Iterator[Witnessed]:
    """A namespace whose last holder is of `kind`, with a veth end in it (but "zombie": a user namespace).

    Only "netns" and "process" are announced to the daemon by an exec; the others are made
    by unshare() without exec, and the veth is put in them from the host, by thread id.
    """
    host, peer = mess.names(kind[0])
    mess.links.append(host)
    try:
        if kind == "netns":
            yield from _netns_witnessed(mess, host, peer)
        elif kind == "process":
            yield from _process_witnessed(mess, host, peer)
        else:
            yield from _helper_witnessed(kind, mess, host, peer)
    finally:
        mess.drop_link(host)


def add_veth(host: str, peer: str, netns: str) -> None:
    """A veth pair: `host` here, `peer` in `netns` (a name under /run/netns, or a pid or thread id)."""
    argv = ["ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", netns]
    done = run(argv, timeout=HELPER_PATIENCE)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _netns_witnessed(mess: Mess, host: str, peer: str) -> Iterator[Witnessed]:
    netns = f"{TAG}n{mess.count}"
    mess.netns.append(netns)
    try:
        done = run(["ip", "netns", "add", netns], timeout=HELPER_PATIENCE)
        if done.returncode:
            raise RuntimeError(f"ip netns add {netns}: {done.stderr.strip()}")
        add_veth(host, peer, netns)

        def delete() -> float:
            start = time.monotonic()  # the unmount is somewhere inside `ip netns del`
            run(["ip", "netns", "del", netns], timeout=HELPER_PATIENCE)
            mess.netns.remove(netns)
            return start

        name = f"net:[{os.stat(f'/run/netns/{netns}').st_ino}]"
        yield Witnessed(name, lambda: link_exists(host), delete, host)
    finally:
        mess.drop_netns(netns)


def _process_witnessed(mess: Mess, host: str, peer: str) -> Iterator[Witnessed]:
    own = os.readlink("/proc/self/ns/net")
    proc = mess.helper("unshare", "--net", "sleep", "600")
    try:

        def entered() -> bool:
            try:
                comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
                return comm == "sleep" and os.readlink(f"/proc/{proc.pid}/ns/net") != own
            except OSError:
                return False

        if wait_for(entered, HELPER_PATIENCE, POLL) is None:
            raise RuntimeError("unshare --net sleep did not start")
        add_veth(host, peer, str(proc.pid))

        def kill() -> float:
            start = time.monotonic()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=HELPER_PATIENCE)
            return start

        yield Witnessed(os.readlink(f"/proc/{proc.pid}/ns/net"), lambda: link_exists(host), kill, host)
    finally:
        mess.end(proc)


def _helper_witnessed(kind: str, mess: Mess, host: str, peer: str) -> Iterator[Witnessed]:
    target = mess.scratch / f"{TAG}-{mess.count}"
    if kind == "mount":
        target.touch()
    proc = mess.helper(sys.executable, "-c", HOLDER, kind, "" if kind == "zombie" else "veth", str(target))
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    try:
        words = read_line(stdout, HELPER_PATIENCE, f"the {kind} holder").split()
        if words[0] == "veth":
            add_veth(host, peer, words[1])
            stdin.write(b"made\n")
            words = read_line(stdout, HELPER_PATIENCE, f"the {kind} holder").split()
        name, pid = words
        if kind == "zombie":
            handle = ns_handle(f"/proc/{pid}/ns/user")
            alive: Callable[[], bool] = lambda: ns_alive(handle)  # noqa: E731
        else:
            alive = lambda: link_exists(host)  # noqa: E731

        def release() -> float:
            stdin.write(b"go\n")
            return float(read_line(stdout, HELPER_PATIENCE, f"the {kind} holder to let go"))

        yield Witnessed(name, alive, release, host, int(pid))
    finally:
        mess.end(proc)
        target.unlink(missing_ok=True)


def known(nsfs: Daemon, name: str) -> Callable[[], bool]:
    """Whether the daemon pins (or at least lists) `name`: its fds at every call, its listing at every fourth."""
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        return name in nsfs.pinned() or (calls % 4 == 0 and name in safe_listing(nsfs))

    return check


def death_delay(kind: str, mess: Mess, nsfs: Daemon | None, timeout: float, discover: float) -> Sample:
    """Seconds from the last holder going to the kernel showing the namespace dead; None after `timeout`.

    With a daemon, the daemon must first have found the namespace by its own means, or it
    could not delay anything (NotPinned if not within `discover` seconds); then SETTLE
    seconds pass, as on a machine where the namespace has been there a while. Nothing
    here looks the name up: a lookup of an unknown name makes today's daemon sweep at
    once, find the namespace but not its holder (`unseen`), and probe it again 50 ms
    later, which is not what a namespace the daemon found on its own goes through.
    """
    with witnessed(kind, mess) as ns:
        if not ns.alive():
            raise RuntimeError(f"{kind}: {ns.name} is dead before it was let go")
        if nsfs is not None:
            if wait_for(known(nsfs, ns.name), discover, DISCOVER_POLL) is None:
                raise NotPinned(ns.name)
            time.sleep(SETTLE)
        start = ns.release()
        if kind == "zombie" and nsfs is not None:
            # Linux 6.18 may keep a zombie's user namespace alive for seconds after the reap
            # with no daemon at all, and each look at its handle holds it a moment longer: the
            # kernel cannot tell the daemon's part here. What the daemon controls is measured:
            # no holders names the reaped process, and the namespace is gone or `unseen`.
            return since(start, wait_for(lambda: forgotten(nsfs, ns.name, ns.pid), timeout, LIST_POLL))
        return since(start, wait_for(lambda: not ns.alive(), timeout, POLL))


def forgotten(nsfs: Daemon, name: str, pid: int) -> bool:
    held = safe_read(nsfs, name, "holders")
    return held in ("", "unseen\n") and f"process {pid} " not in held


# -- figures ---------------------------------------------------------------------


def fmt_ms(seconds: Sample, timeout: float) -> str:
    return f"> {timeout:.0f} s" if seconds is None else f"{seconds * 1000:.0f} ms"


def median_worst(samples: Sequence[Sample], timeout: float) -> str:
    """'median / worst ms', where a timed-out sample counts as infinitely long."""
    if not samples:
        return "n/a"
    inf = float("inf")
    values = sorted(inf if s is None else s for s in samples)
    med, worst = statistics.median_low(values), values[-1]
    if worst == inf:
        return f"{fmt_ms(None if med == inf else med, timeout)} / > {timeout:.0f} s"
    return f"{med * 1000:.0f} / {worst * 1000:.0f} ms"


def repeat(measure: Callable[[], Sample], reps: int) -> list[Sample]:
    """Up to `reps` samples; stops once more than half have timed out (the median is then known)."""
    samples: list[Sample] = []
    for _ in range(reps):
        samples.append(measure())
        if sum(s is None for s in samples) * 2 > reps:
            break
    return samples


@dataclass
class Deaths:
    samples: list[Sample]
    unpinned: int = 0


def measure_deaths(
    kind: str, mess: Mess, nsfs: Daemon | None, *, reps: int, timeout: float, discover: float = 0
) -> Deaths:
    """Up to `reps` death delays; stops once more than half timed out or were never pinned."""
    result = Deaths([])
    for _ in range(reps):
        try:
            result.samples.append(death_delay(kind, mess, nsfs, timeout, discover))
        except NotPinned:
            result.unpinned += 1
        if sum(s is None for s in result.samples) * 2 > reps or result.unpinned * 2 > reps:
            break
    return result


def reference_deaths(mess: Mess, reps: int, timeout: float) -> dict[str, Deaths]:
    """The death delays with no daemon mounted: the kernel's own pace."""
    return {kind: measure_deaths(kind, mess, None, reps=reps, timeout=timeout) for kind in KINDS if kind != "zombie"}


def death_rows(
    nsfs: Daemon, mess: Mess, reference: dict[str, Deaths], *, reps: int, timeout: float, discover: float
) -> list[Row]:
    rows = []
    for kind in KINDS:
        if kind == "zombie" and not has("ns_handles"):  # its witness is the namespace's file handle
            rows.append((f"f) death, {KIND_LABELS[kind]}", "left out", "no nsfs file handles here", ""))
            continue
        got = measure_deaths(kind, mess, nsfs, reps=reps, timeout=timeout, discover=discover)
        figure = median_worst(got.samples, timeout) if got.samples else f"not found in {discover:.0f} s"
        if got.samples and got.unpinned:
            figure += f" ({got.unpinned} not found)"
        ref = reference.get(kind)
        side = "reap -> not named" if ref is None else f"no mount {median_worst(ref.samples, timeout)}"
        rows.append((f"f) death, {KIND_LABELS[kind]}", figure, side, "<= 1000 ms"))
    return rows


# -- 2. bind mounts followed -----------------------------------------------------


@dataclass
class Follow:
    added: list[Sample] = field(default_factory=list)
    deleted: list[Sample] = field(default_factory=list)
    unseen: int = 0
    tries: int = 0


def follow_netns(nsfs: Daemon, mess: Mess, timeout: float, result: Follow) -> Sample:
    """`ip netns add` to listed with its `mount` holder line, then `ip netns del` to unlisted.

    Polls only the listing and then the entry's holders: a lookup of an unknown name
    would itself make today's daemon sweep, and change what is measured.
    """
    mess.count += 1
    netns = f"{TAG}m{mess.count}"
    mess.netns.append(netns)
    try:
        added = run(["ip", "netns", "add", netns], timeout=HELPER_PATIENCE)
        start = time.monotonic()
        if added.returncode:
            raise RuntimeError(f"ip netns add {netns}: {added.stderr.strip()}")
        name = f"net:[{os.stat(f'/run/netns/{netns}').st_ino}]"
        mount_line = f"mount /run/netns/{netns} "
        result.tries += 1
        unseen = False

        def followed() -> bool:
            nonlocal unseen
            holders = safe_read(nsfs, name, "holders").splitlines()
            unseen = unseen or "unseen" in holders
            return any(line.startswith(mount_line) for line in holders)

        listed = wait_for(lambda: name in safe_listing(nsfs), timeout, LIST_POLL / 5)
        end = None if listed is None else wait_for(followed, timeout - (listed - start), LIST_POLL / 5)
        result.unseen += unseen
        added_in = since(start, end)
        result.added.append(added_in)
        if listed is not None:  # one never listed cannot leave the listing
            mess.drop_netns(netns)
            start = time.monotonic()
            gone = wait_for(lambda: name not in safe_listing(nsfs), timeout, LIST_POLL / 5)
            result.deleted.append(since(start, gone))
        return added_in
    finally:
        mess.drop_netns(netns)


def follow_rows(nsfs: Daemon, mess: Mess, reps: int, timeout: float) -> list[Row]:
    result = Follow()
    repeat(lambda: follow_netns(nsfs, mess, timeout, result), reps)
    unseen = f"unseen in {result.unseen} of {result.tries}"
    return [
        ("g) ip netns add -> listed+mount", median_worst(result.added, timeout), unseen, "<= 100 / 1000 ms"),
        ("g) ip netns del -> unlisted", median_worst(result.deleted, timeout), "", "<= 100 / 1000 ms"),
    ]


# -- 3. unshare() without exec, held by an fd or a thread ---------------------------


def unexec_appearance(nsfs: Daemon, mess: Mess, kind: str, timeout: float) -> Sample:
    """Seconds from a namespace made by unshare() (no exec) being held only by an fd or a thread to listed."""
    proc = mess.helper(sys.executable, "-c", HOLDER, kind, "", "")
    try:
        assert proc.stdout is not None
        name = read_line(proc.stdout, HELPER_PATIENCE, f"the {kind} holder").split()[0]
        start = time.monotonic()
        return since(start, wait_for(lambda: name in safe_listing(nsfs), timeout, LIST_POLL))
    finally:
        mess.end(proc)


def named_holder(nsfs: Daemon, mess: Mess, kind: str, timeout: float) -> Sample:
    """Seconds from a namespace made (no exec, no fork, no thread, by a process started
    `OLD_AFTER` before) and held only by an fd ("old") or by the process in it ("old-in") to
    listed with that holder."""
    proc = mess.helper(sys.executable, "-c", HOLDER, kind, "", str(OLD_AFTER))
    try:
        assert proc.stdout is not None
        name, pid = read_line(proc.stdout, HELPER_PATIENCE + OLD_AFTER, f"the {kind} holder").split()
        line = f"fd {pid} " if kind == "old" else f"process {pid} "
        start = time.monotonic()
        return since(start, wait_for(lambda: line in safe_read(nsfs, name, "holders"), timeout, LIST_POLL))
    finally:
        mess.end(proc)


def named_rows(nsfs: Daemon, mess: Mess, reps: int, timeout: float, note: str) -> list[Row]:
    """Rows h) of a namespace an old process keeps by an fd, or stays in: to listed with its holder."""
    rows = []
    for kind, what in (("old", "fd only"), ("old-in", "in it, no fd")):
        samples = repeat(functools.partial(named_holder, nsfs, mess, kind, timeout), reps)
        rows.append((f"h) unshare, {what}, old proc -> holder", median_worst(samples, timeout), note, "<= 5000 ms"))
    return rows


def appearance_rows(
    nsfs: Daemon,
    mess: Mess,
    reps: int,
    timeout: float,
    *,
    kinds: Sequence[str] = ("fd", "thread"),
    note: str = "no exec",
) -> list[Row]:
    """Rows h): from a namespace made without exec being held only by an fd, a thread or (where
    the kernel lists namespaces itself, listns) an fd in flight, to listed."""
    rows = []
    for kind in kinds:
        samples = repeat(functools.partial(unexec_appearance, nsfs, mess, kind, timeout), reps)
        what = "fd in flight" if kind == "flight" else kind
        rows.append((f"h) unshare, {what} only -> listed", median_worst(samples, timeout), note, "<= 5000 ms"))
    return rows


def without_listns_rows(mess: Mess, reps: int, timeout: float) -> list[Row]:
    """Rows h) again from a daemon that does not read the kernel's list (`-o nolistns`), beside
    the first, where the kernel has one (Linux 6.19+); none elsewhere."""
    if not has("listns"):
        return []
    with running_daemon(mess.scratch / "nolistns", "nolistns", interval=1.0, sweep_cpu=None, startup=600) as plain:
        rows = appearance_rows(plain, mess, reps, timeout, note="no exec, no listns")
        rows += named_rows(plain, mess, reps, timeout, "no fork, no listns")
    # What only a message in a socket's queue holds, no read of /proc can find.
    return [*rows, ("h) unshare, fd in flight only -> listed", "never", "no exec, no listns", "<= 5000 ms")]


# -- 4. lookups of made-up names --------------------------------------------------


def timed(argv: Sequence[str], timeout: float) -> Sample:
    start = time.monotonic()
    try:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - start


def median_sample(samples: Sequence[Sample]) -> Sample:
    values = sorted(float("inf") if s is None else s for s in samples)
    med = statistics.median_low(values)
    return None if med == float("inf") else med


def cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` and of its children (the daemon's sweep helper reads
    /proc for it: its work is the daemon's), those alive now and those it reaped."""
    children: list[str] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            children += Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    total = 0.0
    for proc, fields_used in ((pid, (11, 12, 13, 14)), *((int(c), (11, 12)) for c in children)):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in fields_used) / os.sysconf("SC_CLK_TCK")
    return total


def lookup_loop(mount: str, seconds: float, most: int) -> list[str]:
    """LOOKUP_LOOP as nobody, killed by `timeout` if it overstays (even if the bench dies)."""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    bound = ["timeout", "-s", "KILL", f"{seconds + 30:.0f}"]
    return [*nobody, *bound, "bash", "-c", LOOKUP_LOOP, "loop", f"{seconds:.0f}", str(most), str(MADE_UP_LOW), mount]


def loop_cpu(pid: int, where: str, seconds: float, mess: Mess, timeout: float) -> tuple[float, str]:
    """The CPU process `pid` spends per second while LOOKUP_LOOP runs `seconds` on `where`;
    and how many stats the loop made."""
    loop = mess.helper(*lookup_loop(where, seconds, 1_000_000))
    assert loop.stdout is not None
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    try:
        lookups = read_line(loop.stdout, seconds + timeout, "the lookup loop to finish")
    except (TimeoutError, EOFError):
        lookups = "?"
    rate = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    mess.end(loop)
    return rate, lookups


@contextlib.contextmanager
def floor_filesystem(names: list[str]) -> Iterator[tuple[int, str]]:
    """The do-nothing pyfuse3 filesystem (bench/floorfs.py) listing `names`: its pid and mountpoint."""
    scratch = Path(tempfile.mkdtemp(prefix="nsfs-floor-"))
    scratch.chmod(0o755)
    (scratch / "names").write_text("\n".join(names))
    mountpoint = scratch / "mnt"
    mountpoint.mkdir()
    fs = subprocess.Popen([sys.executable, "-m", "bench.floorfs", str(mountpoint), str(scratch / "names")])
    try:
        deadline = time.monotonic() + HELPER_PATIENCE
        while len(os.listdir(mountpoint)) != len(names):
            if time.monotonic() > deadline:
                raise TimeoutError("the floor filesystem did not come up")
            time.sleep(0.1)
        yield fs.pid, str(mountpoint)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
        fs.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def lookup_rows(nsfs: Daemon, mess: Mess, *, reps: int, idle: float, seconds: float, timeout: float) -> list[Row]:
    """An unprivileged loop of lookups of made-up names: the daemon's CPU, and root's `ls -l`
    meanwhile. Beside it, the two floors under that CPU: the same loop on a plain directory
    (what following the loop's processes costs the daemon) and on a pyfuse3 filesystem that
    does nothing (what pyfuse3 and trio cost per lookup)."""
    mount = str(nsfs.mountpoint)
    cpu0, t0 = cpu_seconds(nsfs.pid), time.monotonic()
    time.sleep(idle)
    idle_rate = (cpu_seconds(nsfs.pid) - cpu0) / (time.monotonic() - t0)
    before = [timed(["ls", "-l", mount], timeout) for _ in range(reps)]

    busy_rate, lookups = loop_cpu(nsfs.pid, mount, seconds, mess, timeout)
    plain = Path(tempfile.mkdtemp(prefix="nsfs-plain-"))
    try:
        plain.chmod(0o755)
        following_rate, plain_stats = loop_cpu(nsfs.pid, str(plain), seconds, mess, timeout)
    finally:
        plain.rmdir()
    with floor_filesystem(sorted(nsfs.names())) as (floor_pid, floor_mount):
        floor_rate, floor_stats = loop_cpu(floor_pid, floor_mount, seconds, mess, timeout)

    # root's `ls -l` while the loop runs again (bounded: killed right after).
    loop = mess.helper(*lookup_loop(mount, reps * timeout + 10, 10_000_000))
    try:
        time.sleep(1)
        during = [timed(["ls", "-l", mount], timeout) for _ in range(reps)]
    finally:
        mess.end(loop)
    b, d = median_sample(before), median_sample(during)
    ratio = "" if b is None or d is None else f"during/before = {d / b:.1f}x"
    return [
        (
            f"i) made-up lookups {seconds:.0f} s: CPU",
            f"{(busy_rate - idle_rate) * 100:.1f}% of a core",
            f"{lookups} stats; idle {idle_rate * 100:.1f}%",
            "<= 10% above idle",
        ),
        (
            "i)  floor: same loop, plain dir",
            f"{(following_rate - idle_rate) * 100:.1f}% of a core",
            f"{plain_stats} stats; the daemon following them",
            "",
        ),
        (
            "i)  floor: same loop, do-nothing FUSE",
            f"{floor_rate * 100:.1f}% of a core",
            f"{floor_stats} stats; pyfuse3 alone",
            "",
        ),
        ("i) ls -l before / during lookups", f"{fmt_ms(b, timeout)} / {fmt_ms(d, timeout)}", ratio, "<= 1.5x"),
    ]


# -- 5. process lines naming processes that are gone ----------------------------------

SUBSHELLS = "for i in $(seq {n}); do (exit 0) & echo $!; done; wait; echo done"


def dead_process_lines(nsfs: Daemon, mess: Mess, subshells: int, timeout: float) -> tuple[Sample, int]:
    """Seconds from `subshells` short-lived `(exit 0) &` being reaped to no `process PID` line in
    the initial namespaces' holders naming one of them; and the most such lines seen at once."""
    initial = [os.readlink(f"/proc/self/ns/{link}") for link in NS_LINKS]
    proc = mess.helper("bash", "-c", SUBSHELLS.format(n=subshells))
    assert proc.stdout is not None
    try:
        pids: set[int] = set()
        while (line := read_line(proc.stdout, HELPER_PATIENCE, "the subshells")) != "done":
            pids.add(int(line))
        start = time.monotonic()
        worst = 0

        def clean() -> bool:
            nonlocal worst
            stale = 0
            for name in initial:
                for line in safe_read(nsfs, name, "holders").splitlines():
                    words = line.split()
                    if words[:1] == ["process"] and len(words) > 1 and words[1].isdigit():
                        pid = int(words[1])
                        stale += pid in pids and not os.path.exists(f"/proc/{pid}")
            worst = max(worst, stale)
            return stale == 0

        return since(start, wait_for(clean, timeout, LIST_POLL / 5)), worst
    finally:
        mess.end(proc)


def process_line_rows(nsfs: Daemon, mess: Mess, reps: int, timeout: float, subshells: int = 200) -> list[Row]:
    worst = 0

    def one() -> Sample:
        nonlocal worst
        sample, stale = dead_process_lines(nsfs, mess, subshells, timeout)
        worst = max(worst, stale)
        return sample

    samples = repeat(one, reps)
    return [
        (
            f"j) {subshells} (exit 0)& -> no dead pids",
            median_worst(samples, timeout),
            f"at most {worst} dead lines",
            "<= 1000 ms",
        )
    ]


# -- all of it ---------------------------------------------------------------------


def lifetime_rows(
    nsfs: Daemon,
    mess: Mess,
    reference: dict[str, Deaths],
    *,
    reps: int,
    idle: float,
    timeout: float,
    discover: float,
) -> list[Row]:
    """Rows f) to j): issue 10's figures with the mount, f) side by side with `reference`."""
    rows = death_rows(nsfs, mess, reference, reps=reps, timeout=timeout, discover=discover)
    rows += follow_rows(nsfs, mess, reps, timeout)
    rows += appearance_rows(
        nsfs, mess, reps, timeout, kinds=("fd", "thread", "flight") if has("listns") else ("fd", "thread")
    )
    rows += named_rows(nsfs, mess, reps, timeout, "no fork")
    rows += without_listns_rows(mess, reps, timeout)
    rows += lookup_rows(nsfs, mess, reps=reps, idle=idle, seconds=20, timeout=timeout)
    rows += process_line_rows(nsfs, mess, reps, timeout)
    return rows
