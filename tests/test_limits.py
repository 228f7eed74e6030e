"""Exhausted limits and faults: the daemon keeps serving and says what happened, once."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from pathlib import Path

import pytest
import trio
from pyfuse3 import FUSEError

from nsfs_fuse.fs import guarded
from tests.support.daemon import NSFS, running_daemon
from tests.support.features import files
from tests.support.oracles import ns_of
from tests.support.procs import Procs, kill_with_watchdog
from tests.support.waiting import is_mounted, run, wait_until

FD_LIMIT = 128  # the daemon keeps 64 of them for itself: at most 64 pins


def test_more_namespaces_than_fds(public_dir: Path, procs: Procs) -> None:
    with running_daemon(public_dir / "mnt", prefix=["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}"]) as nsfs:
        made = set()
        for _ in range(40):
            pid = procs.sleeper("--net", "--uts", "--ipc")
            made |= {ns_of(pid, t) for t in ("net", "uts", "ipc")}
        wait_until(lambda: made <= nsfs.names(), "all 120 new namespaces to be listed", timeout=30)
        names = nsfs.names()
        linked = {n for n in names if os.path.lexists(nsfs.path(n, "ns"))}
        assert len(names) > FD_LIMIT
        assert 0 < len(linked) <= FD_LIMIT - 64
        # The test's own namespaces, which its sleepers keep: others on the machine may go
        # meanwhile (one being probed has no link, then no entry).
        assert len(made - linked) >= len(made) - (FD_LIMIT - 64)
        for name in (names - linked) & made:  # listed in full, but for the link
            assert nsfs.read(name, "nstype") == name.split(":")[0] + "\n"
            assert sorted(os.listdir(nsfs.path(name)))[:2] == files("holders", "nstype")[:2]
        for name in linked & made:
            assert os.stat(nsfs.path(name, "ns")).st_ino == int(name.split("[")[1][:-1])
        assert nsfs.fd_count() <= FD_LIMIT
        warnings = [line for line in nsfs.log.read_text().splitlines() if "fd limit reached" in line]
        assert len(warnings) == 1, warnings
    # running_daemon checked that it stopped cleanly (exit 0, unmounted).


def test_logfile_in_the_background(public_dir: Path) -> None:
    mountpoint, logfile = public_dir / "mnt", public_dir / "nsfs.log"
    mountpoint.mkdir()
    started = run([*NSFS, str(mountpoint), "-o", f"logfile={logfile},interval=0.2"])
    assert (started.returncode, started.stderr) == (0, "")
    try:
        wait_until(lambda: logfile.exists() and "serving" in logfile.read_text(), "the log file")
        assert "found" in logfile.read_text()
    finally:
        assert run(["umount", str(mountpoint)]).returncode == 0
    wait_until(lambda: "exiting" in logfile.read_text(), "the daemon to log its exit")


def test_a_daemon_killed_with_its_watchdog_leaves_a_mount_that_umount_removes(public_dir: Path) -> None:
    mountpoint = public_dir / "mnt"
    mountpoint.mkdir()
    proc = subprocess.Popen([*NSFS, str(mountpoint), "-f"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: is_mounted(mountpoint) and bool(os.listdir(mountpoint)), "the mount")
    finally:
        kill_with_watchdog(proc)
    dead = run(["ls", str(mountpoint)])
    assert "Transport endpoint is not connected" in dead.stderr
    assert run(["umount", str(mountpoint)]).returncode == 0
    assert not is_mounted(mountpoint)


def test_an_unexpected_exception_in_a_handler_is_eio_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # A bug must cost one request, not the daemon: pyfuse3 ends its main loop on any
    # exception other than FUSEError.
    @guarded
    async def handler() -> None:
        raise ValueError("a bug")

    with caplog.at_level(logging.ERROR, logger="nsfs_fuse"), pytest.raises(FUSEError) as raised:
        trio.run(handler)
    assert raised.value.errno == errno.EIO
    assert "handler failed" in caplog.text and "ValueError: a bug" in caplog.text
