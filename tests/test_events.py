"""Process events keep the index fresh between scans; without them, scans do, and the log says so."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import NSFS, PATIENCE, Daemon, Procs, children, is_mounted, ns_of, run, running_daemon, wait_until

RARE = 60.0  # a refresh period no test waits for: what happens sooner comes from events


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
        assert rare.read(ns_of(pid, "net"), "holders") == f"process {pid} sleep\n"
        procs.end(pid)
        wait_until(lambda: not names & set(os.listdir(rare.mountpoint)), "exit to unlist them", timeout=5)  # noqa: B023
        assert not names & rare.pinned()


def test_where_no_events_arrive_the_daemon_scans_and_says_so_once(public_dir: Path, procs: Procs) -> None:
    # In a child pid namespace the kernel takes the subscription and sends nothing.
    mountpoint = public_dir / "mnt"
    mountpoint.mkdir()
    log = public_dir / "nsfs.log"
    with open(log, "wb") as out:
        daemon = procs.start(
            "unshare", "--pid", "--fork", *NSFS, str(mountpoint), "-f", "-o", "interval=0.2", stderr=out
        )
    try:
        wait_until(lambda: is_mounted(mountpoint), "the mount")
        inner = wait_until(lambda: children(daemon.pid), "the daemon in its pid namespace")[0]
        pid = procs.sleeper("--net")
        net = ns_of(pid, "net")

        def listed() -> set[str]:  # as a caller the daemon can identify: one in its pid namespace
            return set(run(["nsenter", f"--target={inner}", "--pid", "ls", str(mountpoint)]).stdout.split())

        wait_until(lambda: net in listed(), "a scan to list it")
        procs.end(pid)
        wait_until(lambda: net not in listed(), "a scan to unlist it")
        said = wait_until(
            lambda: [line for line in log.read_text().splitlines() if "process events unavailable" in line],
            "the daemon to find that no events arrive",
        )
        assert said == ["nsfs: WARNING: process events unavailable (none arrive): sweeping every 0.2 s instead"]
    finally:
        run(["umount", str(mountpoint)])
    assert daemon.wait(timeout=PATIENCE) == 0
