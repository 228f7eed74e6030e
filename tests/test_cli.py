"""The programs as mount(8), fstab and users run them, and every bad input they must refuse: nsfs's
options, paths and mountpoints in both modes and through mount(8), and lsnsfs's arguments."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from nsfs_fuse import __version__, mountinfo
from nsfs_fuse.mountinfo import unescape
from tests.support.daemon import LSNSFS, NSFS, Daemon, running_daemon
from tests.support.oracles import ns_of
from tests.support.procs import Procs, daemon_serving, gone, kill_with_watchdog
from tests.support.waiting import PATIENCE, is_mounted, mounts, run, wait_until

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
    (["-o", "debug=nothing"], "nsfs: debug= names a part of the daemon (attributes, checks, cli, "),
]


def places(argv: Sequence[str]) -> set[str]:
    """Where a command run with `argv` could mount: each path it names (alone, or after an =),
    and the directory it runs in (an empty mountpoint was taken for it)."""
    words = [word.partition("=")[2] or word for word in argv]
    return {os.path.realpath(word) for word in words if word} | {os.getcwd()}


def mounted_at(argv: Sequence[str]) -> dict[str, str]:
    """What is mounted at those places. Not the whole table: other tests' daemons mount and
    unmount beside this one on a shared machine."""
    where = places(argv)
    return {path: fstype for path, fstype in mounts().items() if unescape(path) in where}


def refuse(argv: list[str], expected: str, prefix: list[str] | None = None, status: int | None = None) -> None:
    """`argv` fails (with `status`, if given) saying `expected` in one line, no more, and
    leaves nothing mounted."""
    before = mounted_at(argv)
    result = run([*(prefix or []), *argv])
    assert result.returncode != 0
    assert status is None or result.returncode == status, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]
    assert mounted_at(argv) == before, "a refused mount left something mounted"


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


def test_a_directory_bind_mounted_onto_the_mountpoint_is_mounted_over(public_dir: Path) -> None:
    """As a container's volume is (the DaemonSet's hostPath /run/namespaces): the daemon mounts
    over it, serves, and on SIGTERM takes away its own mount only."""
    volume, mountpoint = public_dir / "volume", public_dir / "mnt"
    volume.mkdir()
    mountpoint.mkdir()
    assert run(["mount", "--bind", str(volume), str(mountpoint)]).returncode == 0

    def at_mountpoint() -> list[mountinfo.Mount]:
        table = Path("/proc/self/mountinfo").read_text().splitlines()
        return [m for m in mountinfo.parse(table) if m.mountpoint == str(mountpoint)]

    try:
        (bind,) = at_mountpoint()
        daemon = subprocess.Popen([*NSFS, str(mountpoint), "-f"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: len(at_mountpoint()) == 2, "the daemon's mount over the bind mount")
            assert at_mountpoint()[-1].fstype == "fuse.nsfs"
            assert ns_of(os.getpid(), "net") in os.listdir(mountpoint)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=PATIENCE)
        assert daemon.returncode == 0, stderr
        assert at_mountpoint() == [bind]
    finally:
        assert run(["umount", str(mountpoint)]).returncode == 0
    assert at_mountpoint() == []


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
    refuse([LSNSFS, "-m", str(mountpoint)], f"lsnsfs: {mountpoint}: Transport endpoint is not connected", status=1)
    assert run(["umount", str(mountpoint)]).returncode == 0
    assert not is_mounted(mountpoint)


# -- every option with bad values ----------------------------------------------------------


@pytest.fixture
def bad(public_dir: Path) -> Iterator[dict[str, Path]]:
    """Paths that cannot be a file or a socket: missing, a directory, a file (for a socket),
    under a file, and, since root may write anywhere else, on a read-only file system."""
    (public_dir / "dir").mkdir()
    (public_dir / "file").write_text("kept\n")
    readonly = public_dir / "ro"
    readonly.mkdir()
    assert run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(readonly)]).returncode == 0
    try:
        yield {
            "missing": public_dir / "nowhere" / "x",
            "directory": public_dir / "dir",
            "file": public_dir / "file",
            "under a file": public_dir / "file" / "x",
            "read-only": readonly / "x",
            "newline": public_dir / "new\nline" / "x",
        }
    finally:
        run(["umount", str(readonly)])
    assert (public_dir / "file").read_text() == "kept\n", "a refused path was written or replaced"


NOENT, NOTDIR, ROFS = "No such file or directory", "Not a directory", "Read-only file system"


def one_line(path: Path) -> str:
    """A path as a message shows it: its newline escaped as lsnsfs escapes it."""
    return str(path).replace("\n", "\\x0a")


# What the daemon would say of each, for the three path options; None: the path is fine there.
PATH_REASONS: dict[str, dict[str, str | None]] = {
    "logfile": {
        "missing": NOENT,
        "directory": "Is a directory",
        "file": None,  # appended to
        "under a file": NOTDIR,
        "read-only": ROFS,
        "newline": NOENT,
    },
    "metrics_file": {
        "missing": NOENT,
        "directory": "it is not a regular file, and writing would replace it",
        "file": None,  # replaced, as it should be
        "under a file": NOTDIR,
        "read-only": ROFS,
        "newline": NOENT,
    },
    "events": {
        "missing": NOENT,
        "directory": "it exists and is not a socket",
        "file": "it exists and is not a socket",  # used to be unlinked
        "under a file": NOTDIR,
        "read-only": ROFS,
        "newline": NOENT,
    },
}
SAYS = {"logfile": "cannot log to", "metrics_file": "cannot write metrics to", "events": "cannot serve events at"}
MODES = {"foreground": ["-f"], "background": []}
USAGE_ERRORS = [
    ("logfile=", "nsfs: logfile needs a path"),
    ("metrics_file=", "nsfs: metrics_file needs a path"),
    ("events=", "nsfs: events needs a path"),
    ("interval=", "nsfs: interval must be seconds between 0.01 and 86400, not ''"),
    ("interval=1e999", "nsfs: interval must be seconds between 0.01 and 86400, not '1e999'"),
    ("interval=0x10", "nsfs: interval must be seconds between 0.01 and 86400, not '0x10'"),
    ("sweep_cpu=", "nsfs: sweep_cpu must be a percentage between 0.1 and 100, not ''"),
    ("sweep_cpu=-5", "nsfs: sweep_cpu must be a percentage between 0.1 and 100, not '-5'"),
    ("metrics=", "nsfs: metrics must be [ADDRESS:]PORT with a port between 1 and 65535, not ''"),
    ("metrics=0", "nsfs: metrics must be [ADDRESS:]PORT with a port between 1 and 65535, not '0'"),
    ("metrics=host:", "nsfs: metrics must be [ADDRESS:]PORT with a port between 1 and 65535, not 'host:'"),
    ("metrics=70000", "nsfs: metrics must be [ADDRESS:]PORT with a port between 1 and 65535, not '70000'"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", PATH_REASONS)
def test_a_path_option_the_daemon_cannot_use_is_one_line_before_mounting(
    mountpoint: Path, bad: dict[str, Path], option: str, mode: str
) -> None:
    for kind, reason in PATH_REASONS[option].items():
        if reason is None:
            continue
        path = bad[kind]
        expected = f"nsfs: {SAYS[option]} {one_line(path)}: {reason}"
        refuse([*NSFS, str(mountpoint), *MODES[mode], "-o", f"{option}={path}"], expected)


@pytest.mark.parametrize("mode", MODES)
def test_every_bad_option_value_is_one_line(mountpoint: Path, public_dir: Path, mode: str) -> None:
    for option, message in USAGE_ERRORS:
        refuse([*NSFS, str(mountpoint), *MODES[mode], "-o", option], message, status=2)
    long = public_dir / ("x" * 120)
    refuse(
        [*NSFS, str(mountpoint), *MODES[mode], "-o", f"events={long}"],
        f"nsfs: cannot serve events at {long}: longer than a unix socket's 107 bytes",
    )
    cannot = f"nsfs: cannot mount {mountpoint}: metrics cannot listen on"
    unresolved = resolver_says("nowhere.invalid")
    for where, reason in [("nowhere.invalid:9687", unresolved), ("192.0.2.1:9687", "Cannot assign")]:
        refuse([*NSFS, str(mountpoint), *MODES[mode], "-o", f"metrics={where}"], f"{cannot} {where}: {reason}")


def resolver_says(host: str) -> str:
    """What this machine's resolver says of a name that resolves nowhere: "Name or service not
    known" with a DNS server to ask, "Temporary failure in name resolution" with none (a guest)."""
    try:
        socket.getaddrinfo(host, 9687)
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    raise AssertionError(f"{host} resolves here")


@pytest.mark.parametrize("mode", MODES)
def test_every_bad_mountpoint_is_one_line(bad: dict[str, Path], mode: str) -> None:
    cases = [
        ("", "nsfs: the mountpoint is an empty path"),
        (str(bad["missing"]), f"nsfs: mountpoint {bad['missing']} does not exist"),
        (str(bad["file"]), f"nsfs: mountpoint {bad['file']} is not a directory"),
        (str(bad["under a file"]), f"nsfs: cannot use {bad['under a file']}: Not a directory"),
        (str(bad["newline"]), f"nsfs: mountpoint {one_line(bad['newline'])} does not exist"),
        # Over /proc/sys the daemon waited on its own mount for ever, holding it.
        ("/proc/sys", "nsfs: mountpoint /proc/sys is on a proc filesystem, which the daemon reads itself"),
    ]
    for mountpoint, message in cases:
        refuse([*NSFS, mountpoint, *MODES[mode]], message)


def test_a_live_events_socket_is_not_taken_from_its_daemon(mountpoint: Path, public_dir: Path) -> None:
    path = public_dir / "events"
    with socket.socket(socket.AF_UNIX) as serving:
        serving.bind(str(path))
        serving.listen()
        refuse([*NSFS, str(mountpoint), "-o", f"events={path}"], f"nsfs: cannot serve events at {path}: another")
    assert path.is_socket()
    # Once nobody serves it, it is stale: the daemon replaces it.


def test_mount_says_what_nsfs_says(helper: Path, mountpoint: Path, bad: dict[str, Path]) -> None:
    """mount(8) runs the helper in the background mode: the same one line reaches its caller."""
    for kind in ("missing", "directory", "read-only"):
        path = bad[kind]
        expected = f"nsfs: cannot log to {path}: {PATH_REASONS['logfile'][kind]}"
        refuse(["mount", "-t", "fuse", "-o", f"logfile={path}", "nsfs", str(mountpoint)], expected)
    refuse(["mount", "-t", "fuse", "-o", "interval=x", "nsfs", str(mountpoint)], "nsfs: interval must be seconds")
    refuse(["mount", "-t", "fuse", "nsfs", str(bad["file"])], f"nsfs: mountpoint {bad['file']} is not a directory")


def test_every_bad_lsnsfs_argument_is_one_line(bad: dict[str, Path]) -> None:
    not_nsfs = "not an nsfs mount (mount one with: mount -t fuse nsfs"
    for kind in ("missing", "directory", "file", "under a file", "read-only"):
        refuse([LSNSFS, "-m", str(bad[kind])], f"lsnsfs: {bad[kind]}: {not_nsfs} {bad[kind]})", status=1)
    newline = one_line(bad["newline"])
    refuse([LSNSFS, "-m", str(bad["newline"])], f"lsnsfs: {newline}: {not_nsfs} {newline})", status=1)
    usage = [
        (["-m", ""], "lsnsfs: argument -m/--mount: an empty path"),
        (["-m"], "lsnsfs: argument -m/--mount: expected one argument"),
        (["-t", ""], "lsnsfs: unknown namespace type: "),
        (["-t"], "lsnsfs: argument -t/--type: expected one argument"),
        (["-p", ""], "lsnsfs: argument -p/--task: invalid PID argument: ''"),
        (["-p", "0"], "lsnsfs: argument -p/--task: invalid PID argument: '0'"),
        (["-p", "-1"], "lsnsfs: argument -p/--task: invalid PID argument: '-1'"),
        (["--events", ""], "lsnsfs: argument --events: an empty path"),
        (["--frobnicate"], "lsnsfs: unrecognized arguments: --frobnicate"),
    ]
    for argv, message in usage:
        refuse([LSNSFS, *argv], message, status=2)
    follow = "lsnsfs: cannot follow events at"
    for kind, reason in [("missing", NOENT), ("file", "Connection refused"), ("under a file", NOTDIR)]:
        refuse([LSNSFS, "--watch", "--events", str(bad[kind])], f"{follow} {bad[kind]}: {reason}", status=1)
    long = bad["directory"] / ("x" * 120)
    refuse([LSNSFS, "--watch", "--events", str(long)], f"{follow} {long}: AF_UNIX path too long", status=1)
    refuse([LSNSFS, "--watch", "-m", str(bad["directory"])], f"{follow} /run/nsfs/", status=1)


def test_lsnsfs_says_a_write_error_in_one_line(nsfs: Daemon) -> None:
    """Where its output goes is a path too: a full disk is one line, not a traceback at exit."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [LSNSFS, "-m", str(nsfs.mountpoint)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
        )
    assert (done.returncode, done.stderr) == (1, "lsnsfs: write error: No space left on device\n")
    closed = run(["sh", "-c", 'exec "$0" -m "$1" >&-', LSNSFS, str(nsfs.mountpoint)])
    assert (closed.returncode, closed.stderr) == (1, "lsnsfs: write error: Bad file descriptor\n")


def test_one_part_logs_at_debug_level_alone(public_dir: Path, procs: Procs) -> None:
    """`-o debug=entries`: the entries' debug lines (a namespace released), and no other part's."""
    with running_daemon(public_dir / "mnt", "debug=entries") as daemon:
        pid = procs.sleeper("--net")
        net = ns_of(pid, "net")
        wait_until(lambda: net in daemon.names(), "the namespace listed")
        procs.end(pid)
        wait_until(lambda: net not in daemon.names(), "the namespace gone")
        wait_until(lambda: f"DEBUG: released {net}" in daemon.log.read_text(), "its release logged")
    debug = [line for line in daemon.log.read_text().splitlines() if "DEBUG:" in line]
    assert debug and all(line.startswith("nsfs: DEBUG: released ") for line in debug), debug
