"""Process events keep the index fresh between scans; without them, scans do, and the log says so."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import NSFS, Daemon, running_daemon
from tests.support.features import has
from tests.support.oracles import children, ns_handle, ns_of
from tests.support.procs import Procs
from tests.support.waiting import INTERVAL, PATIENCE, SLOWDOWN, run, wait_until

RARE = 60.0  # a refresh period no test waits for: what happens sooner comes from events
SWEEPS = 5  # a namespace is listed (and unlisted) within this many sweep intervals where sweeps are all there is


@pytest.fixture
def rare(public_dir: Path, procs: Procs) -> Iterator[Daemon]:
    with running_daemon(public_dir / "rare", interval=RARE) as daemon:
        yield daemon


def test_a_new_process_is_listed_and_its_exit_unlisted_without_a_scan(rare: Daemon, procs: Procs) -> None:
    for _ in range(3):
        pid = procs.sleeper("--net", "--uts")
        names = {ns_of(pid, "net"), ns_of(pid, "uts")}
        # Listed by a caller in none of them: no lookup miss, no caller's own, no scan for a minute.
        wait_until(lambda: names <= set(os.listdir(rare.mountpoint)), "exec to list them", timeout=5)  # noqa: B023
        # Listed at unshare's fork or exec; the exec of sleep is another event (on a slow guest
        # the listing can show before it is read).
        expected = f"process {pid} sleep\n"
        wait_until(lambda: rare.read(ns_of(pid, "net"), "holders") == expected, "exec to name it", timeout=5)  # noqa: B023
        procs.end(pid)
        wait_until(lambda: not names & set(os.listdir(rare.mountpoint)), "exit to unlist them", timeout=5)  # noqa: B023
        assert not names & rare.pinned()


def test_a_daemon_in_a_network_namespace_of_its_own_follows_events_from_the_hosts(
    public_dir: Path, procs: Procs
) -> None:
    """As in a container or a pod without hostNetwork: the proc connector answers only in the
    initial network namespace, so the daemon opens its socket there (through pid 1's), and
    a namespace still comes and goes with its process, with no sweep for a minute."""
    with running_daemon(public_dir / "mnt", interval=RARE, prefix=("unshare", "--net")) as daemon:
        assert ns_of(daemon.pid, "net") != ns_of(os.getpid(), "net")
        # It subscribes once it serves: what comes before that waits for a sweep.
        wait_until(lambda: "following process events" in daemon.log.read_text(), "the subscription")
        pid = procs.sleeper("--uts")
        uts = ns_of(pid, "uts")
        wait_until(lambda: uts in set(os.listdir(daemon.mountpoint)), "exec to list it", timeout=5)
        procs.end(pid)
        wait_until(lambda: uts not in set(os.listdir(daemon.mountpoint)), "exit to unlist it", timeout=5)
        log = daemon.log.read_text()
    assert "process events from the host's network namespace" in log and "following process events" in log, log
    assert "unavailable" not in log, log


def test_where_no_events_arrive_the_daemon_scans_and_says_so_once(public_dir: Path, procs: Procs) -> None:
    # In a child pid namespace the kernel takes the subscription and sends nothing. The daemon
    # there has a /proc of its own (and so a mount namespace): its world is that pid namespace.
    # There a kernel with the 2026 visibility checks (7.0, and 6.18.y since) also opens by file
    # handle only the namespaces the caller is in: the sleeper's is then pinned without one, as
    # before Linux 6.18, and the log says so once.
    mountpoint = public_dir / "mnt"
    mountpoint.mkdir()
    log = public_dir / "nsfs.log"
    in_a_pidns = ["unshare", "--pid", "--fork", "--mount-proc"]
    with open(log, "wb") as out:
        daemon = procs.start(*in_a_pidns, *NSFS, str(mountpoint), "-f", "-o", f"interval={INTERVAL}", stderr=out)
    inner = wait_until(lambda: children(daemon.pid), "the daemon in its pid namespace")[0]
    in_its_namespaces = ["nsenter", f"--target={inner}", "--pid", "--mount"]
    try:
        wait_until(lambda: f" {mountpoint} " in Path(f"/proc/{inner}/mountinfo").read_text(), "the mount")
        pid = procs.sleeper("--net", prefix=in_its_namespaces)
        net = ns_of(pid, "net")

        def listed() -> set[str]:  # as a caller the daemon can identify: one in its pid namespace
            return set(run([*in_its_namespaces, "ls", str(mountpoint)]).stdout.split())

        # Within a few sweeps. 6.18 will not open again by handle a namespace made inside the
        # daemon's pid namespace (ESTALE), though the daemon holds it: it is pinned as on a
        # kernel without handles. That ESTALE once failed every sweep, and nothing new was listed.
        wait_until(lambda: net in listed(), "a scan to list it", timeout=SWEEPS * INTERVAL)
        refused = has("ns_handles") and _handle_refused(in_its_namespaces, f"/proc/{pid}/ns/net")
        procs.end(pid)
        wait_until(lambda: net not in listed(), "a scan to unlist it", timeout=SWEEPS * INTERVAL)
        said = wait_until(
            lambda: [line for line in log.read_text().splitlines() if "process events unavailable" in line],
            "the daemon to find that no events arrive",
        )
        assert said == [
            f"nsfs: WARNING: process events unavailable (none arrive): sweeping every {INTERVAL:g} s instead"
        ]
    finally:
        run([*in_its_namespaces, "umount", str(mountpoint)])
    assert daemon.wait(timeout=PATIENCE * SLOWDOWN) == 0
    # Nothing went wrong on the way: no traceback, no other warning or error, and the refusal
    # of handles said once where this kernel refuses them.
    text = log.read_text()
    assert "Traceback" not in text, text
    assert [line for line in text.splitlines() if ": WARNING: " in line or ": ERROR: " in line] == said, text
    told = [line for line in text.splitlines() if "again by its handle (ESTALE)" in line]
    assert len(told) == (1 if refused else 0), text


# Opens the namespace of a handle given in hex, as the daemon would; prints the errno, 0 if it opened.
OPEN_BY_HANDLE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
handle = bytes.fromhex(sys.argv[1])
fd = libc.open_by_handle_at(-10003, ctypes.create_string_buffer(handle, len(handle)), os.O_RDONLY)
print(ctypes.get_errno() if fd < 0 else 0)
"""


def _handle_refused(where: list[str], path: str) -> bool:
    """Whether a process entered by `where` is refused the live namespace at `path` by handle."""
    opened = run([*where, sys.executable, "-c", OPEN_BY_HANDLE, ns_handle(path).hex()])
    assert opened.returncode == 0, opened.stderr
    return int(opened.stdout) == errno.ESTALE  # alive, so not gone: refused
