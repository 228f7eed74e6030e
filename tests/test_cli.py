"""The program as mount(8), fstab and users run it, and every bad input it must refuse."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import NSFS, daemon_serving, gone, is_mounted, kill_with_watchdog, mounts, run, wait_until
from nsfs_fuse import __version__

HELPER = Path("/usr/local/sbin/nsfs")


@pytest.fixture
def mountpoint(public_dir: Path) -> Iterator[Path]:
    path = public_dir / "mnt"
    path.mkdir()
    try:
        yield path
    finally:
        if is_mounted(path):
            subprocess.run(["umount", "-l", str(path)], check=False)
            raise AssertionError(f"{path} was left mounted")


@pytest.fixture
def helper() -> Path:
    assert HELPER.exists(), f"{HELPER} is missing: run 'make setup'"
    return HELPER


def assert_mounted_and_serving(mountpoint: Path) -> int:
    assert mounts()[str(mountpoint)] == "fuse.nsfs"
    assert os.readlink(f"/proc/{os.getpid()}/ns/net") in os.listdir(mountpoint)
    pid = daemon_serving(mountpoint)
    assert pid, "no daemon serves the mount"
    return pid


@pytest.mark.parametrize(
    "argv",
    [
        ["mount", "-t", "fuse", "nsfs", "{mnt}"],
        ["mount", "-t", "fuse.nsfs", "nsfs", "{mnt}"],
        ["mount", "-t", "fuse", "-o", "nosuid,nodev,noatime,interval=0.5", "nsfs", "{mnt}"],
    ],
)
def test_mount_and_umount_with_the_real_mount_command(helper: Path, mountpoint: Path, argv: list[str]) -> None:
    result = run([a.format(mnt=mountpoint) for a in argv])
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = assert_mounted_and_serving(mountpoint)
    assert run(["umount", str(mountpoint)]).returncode == 0
    wait_until(lambda: gone(pid), "the daemon to exit after umount")
    assert not is_mounted(mountpoint)


def test_the_fstab_line_works(helper: Path, mountpoint: Path, public_dir: Path) -> None:
    fstab = public_dir / "fstab"
    fstab.write_text(f"nsfs {mountpoint} fuse defaults 0 0\n")
    result = run(["mount", "--fstab", str(fstab), str(mountpoint)])
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    pid = assert_mounted_and_serving(mountpoint)
    assert run(["umount", str(mountpoint)]).returncode == 0
    wait_until(lambda: gone(pid), "the daemon to exit after umount")


def test_sigterm_unmounts_and_ends_the_background_daemon(mountpoint: Path) -> None:
    # At 0.1% of a core a sweep lasts minutes: the daemon must not wait for it to end.
    result = run([*NSFS, str(mountpoint), "-o", "sweep_cpu=0.1"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = assert_mounted_and_serving(mountpoint)
    time.sleep(2)  # the first paced sweep is under way
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: gone(pid), "the daemon to exit on SIGTERM")
    assert not is_mounted(mountpoint)


def test_version_and_help(helper: Path) -> None:
    version = run([str(helper), "--version"])
    assert (version.returncode, version.stdout) == (0, f"nsfs {__version__}\n")
    help_text = run([str(helper), "--help"])
    assert help_text.returncode == 0
    assert help_text.stdout.startswith("usage: nsfs [SOURCE] MOUNTPOINT")
    assert "interval=SECONDS" in help_text.stdout
    assert "sweep_cpu=PERCENT" in help_text.stdout


BAD_OPTIONS = [
    (["-o", "bogus"], "nsfs: unknown mount option 'bogus'"),
    (["-o", "interval=abc"], "nsfs: interval must be seconds between 0.01 and 86400, not 'abc'"),
    (["-o", "interval=0"], "nsfs: interval must be seconds between 0.01 and 86400, not '0'"),
    (["-o", "interval=-1"], "nsfs: interval must be seconds between 0.01 and 86400, not '-1'"),
    (["-o", "interval=nan"], "nsfs: interval must be seconds between 0.01 and 86400, not 'nan'"),
    (["-o", "interval=inf"], "nsfs: interval must be seconds between 0.01 and 86400, not 'inf'"),
    (["-o", "sweep_cpu=0"], "nsfs: sweep_cpu must be a percentage between 0.1 and 100, not '0'"),
    (["-o", "sweep_cpu=101"], "nsfs: sweep_cpu must be a percentage between 0.1 and 100, not '101'"),
    (["-o", "sweep_cpu=1%"], "nsfs: sweep_cpu must be a percentage between 0.1 and 100, not '1%'"),
    (["--frobnicate"], "nsfs: unknown argument '--frobnicate'"),
    (["-o"], "nsfs: -o needs a list of options"),
]


def refuse(argv: list[str], expected: str, prefix: list[str] | None = None) -> None:
    # The mount table is the machine's, and other daemons and test runs mount and unmount
    # while this runs: only the paths the command was given are its to have mounted on.
    given = [str(Path(arg).absolute()) for arg in argv]

    def at_given() -> dict[str, str]:
        return {path: fs for path, fs in mounts().items() if any(path == g or path.startswith(f"{g}/") for g in given)}

    before = at_given()
    result = run([*(prefix or []), *argv])
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]
    assert at_given() == before, "a refused mount left something mounted"


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_are_refused_in_one_line(mountpoint: Path, options: list[str], message: str) -> None:
    refuse([*NSFS, str(mountpoint), *options], message)


def test_no_mountpoint(public_dir: Path) -> None:
    refuse([*NSFS], "nsfs: no mountpoint given")
    refuse([*NSFS, "a", "b", "c"], "nsfs: too many arguments: a b c")


def test_missing_mountpoint(public_dir: Path) -> None:
    refuse([*NSFS, str(public_dir / "nowhere")], f"nsfs: mountpoint {public_dir / 'nowhere'} does not exist")


def test_mountpoint_that_is_a_file(public_dir: Path) -> None:
    (public_dir / "file").touch()
    refuse([*NSFS, str(public_dir / "file")], f"nsfs: mountpoint {public_dir / 'file'} is not a directory")


def test_mountpoint_already_mounted(mountpoint: Path) -> None:
    assert run(["mount", "-t", "tmpfs", "tmpfs", str(mountpoint)]).returncode == 0
    try:
        refuse([*NSFS, str(mountpoint)], f"nsfs: {mountpoint} is already mounted (tmpfs): umount it first")
    finally:
        run(["umount", str(mountpoint)])


def test_not_root(mountpoint: Path) -> None:
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    refuse([*NSFS, str(mountpoint)], "nsfs: must be run as root", prefix=as_nobody)


def test_no_dev_fuse(mountpoint: Path) -> None:
    # A private mount namespace where /dev is an empty tmpfs: no /dev/fuse.
    hide_dev = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs tmpfs /dev && exec "$@"', "sh"]
    refuse([*NSFS, str(mountpoint)], "nsfs: cannot open /dev/fuse: No such file or directory", prefix=hide_dev)


def test_a_proc_of_another_pid_namespace(mountpoint: Path) -> None:
    # Under `unshare --pid --fork` alone, /proc still numbers the parent pid namespace's
    # processes: a caller's pid from FUSE would name some other process there.
    expected = "nsfs: /proc is not this pid namespace's: callers could not be told apart"
    refuse([*NSFS, str(mountpoint)], expected, prefix=["unshare", "--pid", "--fork"])


def test_a_dead_mount_is_named_and_umount_clears_it(mountpoint: Path) -> None:
    proc = subprocess.Popen([*NSFS, str(mountpoint), "-f"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: is_mounted(mountpoint) and bool(os.listdir(mountpoint)), "the mount")
    finally:
        kill_with_watchdog(proc)
    assert is_mounted(mountpoint)  # a daemon killed with its watchdog leaves its mount behind, dead
    refuse([*NSFS, str(mountpoint)], f"nsfs: {mountpoint} is a dead mount: run 'umount {mountpoint}' first")
    assert run(["umount", str(mountpoint)]).returncode == 0
    assert not is_mounted(mountpoint)
