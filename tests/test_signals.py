"""Real signals to a real daemon: those that would end it end it cleanly, those with no use are
ignored and said, SIGHUP reopens the log file; what no handler catches is the mount's watchdog's.

Which signal does what is the README's table ("Signals"); the lists here are written out from it
rather than taken from nsfs_fuse.signals, and tests/unit/test_signals.py checks that the module
decides for every signal there is.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsfs_fuse.signals import name
from tests.support.daemon import NSFS, Daemon, running_daemon
from tests.support.procs import children_of, daemon_serving, gone, watchdog_of
from tests.support.waiting import PATIENCE, SLOWDOWN, is_mounted, run, wait_until

ENDING = [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGXCPU, signal.SIGPWR]
IGNORED = [
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGSTKFLT,
    *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
]
UNCAUGHT = [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT]  # a kill, and faults as sent by kill(1)
NAMESPACE_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")

# A line of the background daemon's log file, less its timestamp.
_STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (.*)$")


def own_net() -> str:
    return os.readlink(f"/proc/{os.getpid()}/ns/net")


def said(log: Path, *words: str) -> list[str]:
    """The daemon's own lines (not FUSE's trace) that hold any of `words`."""
    return [line for line in log.read_text().splitlines() if line.startswith("nsfs") and any(w in line for w in words)]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def mount_entry(mountpoint: Path) -> tuple[str, str]:
    """(fstype, source) of what is mounted at `mountpoint`, as this process's mountinfo says."""
    for line in Path("/proc/self/mountinfo").read_text(errors="surrogateescape").splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            after = fields[fields.index("-") + 1 :]
            return after[0], after[1]
    raise AssertionError(f"nothing is mounted at {mountpoint}")


@pytest.mark.parametrize("signum", ENDING, ids=name)
def test_a_signal_that_would_end_the_daemon_unmounts_and_exits_0(public_dir: Path, signum: int) -> None:
    with running_daemon(public_dir / "mnt") as nsfs:
        watchdog = watchdog_of(nsfs.pid)
        os.kill(nsfs.pid, signum)
        assert nsfs.proc.wait(timeout=PATIENCE * SLOWDOWN) == 0
        assert not is_mounted(nsfs.mountpoint)
        wait_until(lambda: gone(watchdog), "the watchdog to go with the daemon")
    assert said(nsfs.log, "SIG", "exiting") == [
        f"nsfs: INFO: {name(signum)}: unmounting",
        f"nsfs: INFO: exiting: {nsfs.mountpoint} unmounted, every pin closed",
    ]


@pytest.fixture(scope="module")
def steady() -> Iterator[Daemon]:
    """One daemon for every signal that must not end it, with debug logging: a signal that comes
    again is said at debug level. running_daemon checks at the end that it still stops cleanly."""
    scratch = Path(tempfile.mkdtemp(prefix="nsfs-test-"))
    scratch.chmod(0o755)
    try:
        with running_daemon(scratch / "mnt", "debug") as daemon:
            yield daemon
    finally:
        shutil.rmtree(scratch)


def still_serves(nsfs: Daemon) -> None:
    assert nsfs.proc.poll() is None
    assert own_net() in nsfs.names()


@pytest.mark.parametrize("signum", IGNORED, ids=name)
def test_a_signal_with_no_use_is_ignored_and_said_once(steady: Daemon, signum: int) -> None:
    first, again = f"nsfs: INFO: {name(signum)}: ignored", f"nsfs: DEBUG: {name(signum)}: ignored again"
    os.kill(steady.pid, signum)
    wait_until(lambda: first in said(steady.log, first), f"the daemon to say it ignored {name(signum)}")
    os.kill(steady.pid, signum)
    wait_until(lambda: again in said(steady.log, again), f"the daemon to see {name(signum)} again")
    assert said(steady.log, f"{name(signum)}:") == [first, again]
    still_serves(steady)


def test_sighup_logging_to_stderr_says_there_is_nothing_to_reopen(steady: Daemon) -> None:
    line = "nsfs: INFO: SIGHUP: logging to stderr, nothing to reopen"
    for times in (1, 2):  # each time: a reopen is asked for, not sent in a loop
        os.kill(steady.pid, signal.SIGHUP)
        wait_until(lambda: said(steady.log, "SIGHUP") == [line] * times, "the daemon to answer SIGHUP")  # noqa: B023
    still_serves(steady)


def test_sighup_reopens_the_log_file_logrotate_moved_away(public_dir: Path) -> None:
    mountpoint, logfile, rotated = public_dir / "mnt", public_dir / "nsfs.log", public_dir / "nsfs.log.1"
    mountpoint.mkdir()
    started = run([*NSFS, str(mountpoint), "-o", f"logfile={logfile},interval=0.2"])
    assert (started.returncode, started.stdout, started.stderr) == (0, "", "")
    pid = daemon_serving(mountpoint)
    try:
        # The last line the daemon writes by itself: after it, only what the test causes.
        wait_until(lambda: "a paced sweep took" in logfile.read_text(), "the first paced sweep")
        logfile.rename(rotated)
        os.kill(pid, signal.SIGHUP)
        wait_until(logfile.exists, "the daemon to open the log file again")
        assert own_net() in os.listdir(mountpoint)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: gone(pid), "the daemon to exit on SIGTERM")
    finally:
        if is_mounted(mountpoint):
            run(["umount", str(mountpoint)])
    assert not is_mounted(mountpoint)
    lines = [_STAMPED.sub(r"\1", line) for line in logfile.read_text().splitlines()]
    assert lines[0] == f"nsfs[{pid}]: INFO: SIGHUP: reopened the log file {logfile}"
    assert [line for line in lines if "SIG" in line or "exiting" in line] == [
        f"nsfs[{pid}]: INFO: SIGHUP: reopened the log file {logfile}",
        f"nsfs[{pid}]: INFO: SIGTERM: unmounting",
        f"nsfs[{pid}]: INFO: exiting: {mountpoint} unmounted, every pin closed",
    ]
    assert "SIG" not in rotated.read_text()


def sweep_helper(daemon: int) -> int:
    """The process that reads /proc for `daemon`'s sweeps (sweeps.py), once it has started."""
    for pid in children_of(daemon):
        try:
            if "nsfs_fuse.sweeps" in Path(f"/proc/{pid}/cmdline").read_text().split("\0"):
                return pid
        except OSError:
            pass
    return 0


@pytest.mark.parametrize(
    ("signum", "answer"),
    [(signal.SIGTERM, "SIGTERM: exiting before mounting"), (signal.SIGUSR1, "SIGUSR1: ignored")],
    ids=["SIGTERM", "SIGUSR1"],
)
def test_a_signal_during_the_first_sweep_is_acted_on_when_it_ends(public_dir: Path, signum: int, answer: str) -> None:
    mountpoint, log = public_dir / "mnt", public_dir / "nsfs.log"
    mountpoint.mkdir()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*NSFS, str(mountpoint), "-f"], stdin=subprocess.DEVNULL, stderr=out)
    helper = 0
    try:
        # Stopped, the helper holds the first sweep, and the daemon with it, before the mount.
        helper = wait_until(lambda: sweep_helper(proc.pid), "the first sweep to start")
        os.kill(helper, signal.SIGSTOP)
        assert "found" not in log.read_text(), "the first sweep ended before its helper could be stopped"
        os.kill(proc.pid, signum)
        os.kill(helper, signal.SIGCONT)
        helper = 0
        if signum != signal.SIGTERM:
            wait_until(lambda: is_mounted(mountpoint) and own_net() in os.listdir(mountpoint), "the mount")
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=PATIENCE * SLOWDOWN) == 0, log.read_text()
    finally:
        if helper:  # still stopped: the test failed before it let the sweep go on
            os.kill(helper, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if is_mounted(mountpoint):
            run(["umount", "-l", str(mountpoint)])
    assert not is_mounted(mountpoint)
    lines = said(log, "")
    assert lines[0].startswith("nsfs: INFO: found "), lines
    if signum == signal.SIGTERM:
        assert lines[1:] == [f"nsfs: INFO: {answer}", "nsfs: INFO: exiting: nothing mounted, every pin closed"]
    else:
        assert lines[1:3] == [f"nsfs: INFO: {answer}", f"nsfs: INFO: serving {mountpoint}"]


def test_the_mount_is_made_through_its_watchdog_and_shows_as_before(nsfs: Daemon) -> None:
    assert mount_entry(nsfs.mountpoint) == ("fuse.nsfs", "nsfs")
    watchdog = watchdog_of(nsfs.pid)
    # It was started after the first sweep had pinned every namespace: none of those fds, nor
    # /dev/fuse, may have been passed on to it (it would keep them until the daemon is gone).
    assert nsfs.pinned()
    kept = {os.readlink(f"/proc/{watchdog}/fd/{fd}") for fd in os.listdir(f"/proc/{watchdog}/fd")}
    assert not {target for target in kept if target.split(":")[0] in NAMESPACE_TYPES or target == "/dev/fuse"}
    # Whatever is sent to it (a terminal's SIGINT, a service's SIGTERM to every process), it
    # waits for the daemon's end: the README says so.
    blocked = int(Path(f"/proc/{watchdog}/status").read_text().split("SigBlk:")[1].split()[0], 16)
    assert blocked & (1 << (signal.SIGTERM - 1)) and blocked & (1 << (signal.SIGINT - 1))


@pytest.mark.parametrize("signum", UNCAUGHT, ids=name)
def test_a_daemon_dead_of_what_no_handler_catches_leaves_no_dead_mount(public_dir: Path, signum: int) -> None:
    mountpoint = public_dir / "mnt"
    mountpoint.mkdir()
    no_core = ["prlimit", "--core=0"]  # a fault's core dump would land in the test's directory
    proc = subprocess.Popen(
        [*no_core, *NSFS, str(mountpoint), "-f"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: is_mounted(mountpoint) and own_net() in os.listdir(mountpoint), "the mount")
        watchdog = watchdog_of(proc.pid)
        os.kill(proc.pid, signum)
        assert proc.wait(timeout=PATIENCE * SLOWDOWN) == -signum
        wait_until(lambda: not is_mounted(mountpoint), "the watchdog to unmount")
        wait_until(lambda: gone(watchdog), "the watchdog to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if is_mounted(mountpoint):
            run(["umount", "-l", str(mountpoint)])
            raise AssertionError(f"{mountpoint} was left mounted")


def test_without_fusermount3_the_daemon_mounts_and_warns_once(public_dir: Path) -> None:
    mountpoint, log = public_dir / "mnt", public_dir / "nsfs.log"
    mountpoint.mkdir()
    # In a mount namespace of its own, where fusermount3 is /dev/null (not executable): the
    # mount is made there too, so the test reads it through the daemon's root.
    hidden = ["unshare", "--mount", "sh", "-c", 'mount --bind /dev/null /usr/bin/fusermount3 && exec "$@"', "sh"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*hidden, *NSFS, str(mountpoint), "-f"], stdin=subprocess.DEVNULL, stderr=out)
    try:
        wait_until(lambda: said(log, "serving"), "the daemon to serve")
        assert own_net() in os.listdir(f"/proc/{proc.pid}/root{mountpoint}")
        assert "fusermount3" not in [comm(pid) for pid in children_of(proc.pid)]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=PATIENCE * SLOWDOWN) == 0
    finally:
        if proc.poll() is None:
            proc.kill()  # its mount goes with its mount namespace
            proc.wait()
    warning = (
        f"nsfs: WARNING: no fusermount3 (Debian's fuse3): if this daemon is killed, {mountpoint} stays mounted, dead"
    )
    assert said(log, "WARNING") == [warning]
