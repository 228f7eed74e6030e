"""Every reader gets the right answer: any copy tool, any pid namespace, any sandbox."""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.features import files
from tests.support.oracles import ns_of
from tests.support.procs import Procs
from tests.support.waiting import SLOWDOWN, run, wait_until

AS_1000 = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"  # for programs run as other uids: the suite's interpreter is under /root

# Each way a program may copy a file, run in a child so that each opens it afresh:
# argv PATH METHOD [changing]; prints what it read, and fails (exit 4) if that is not
# what read(2) gave the same process just before (unless the file is `changing`).
COPY = r"""
import errno, os, shutil, sys, tempfile, time
path, method = sys.argv[1:3]
time.sleep(0.3)  # this process is new in its namespaces: let the daemon list it first (events, 50 ms)

def by(method):
    if method == "read":
        return open(path, "rb").read()
    if method == "sendfile":
        with open(path, "rb") as src, tempfile.TemporaryFile() as dst:
            while os.sendfile(dst.fileno(), src.fileno(), None, 1 << 20):
                pass
            dst.seek(0)
            return dst.read()
    if method == "splice":
        r, w = os.pipe()
        got = b""
        with open(path, "rb") as src:
            while n := os.splice(src.fileno(), w, 1 << 16):
                got += os.read(r, n)
        return got
    if method == "copy_file_range":
        with open(path, "rb") as src, tempfile.TemporaryFile() as dst:
            try:
                while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 20):
                    pass
            except OSError as exc:  # across filesystems: the caller copies another way (cp does)
                print(errno.errorcode[exc.errno], end="")
                sys.exit(0)
            dst.seek(0)
            return dst.read()
    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(path, f"{d}/copy")
        return open(f"{d}/copy", "rb").read()

plain = by("read")
got = by(method)
sys.stdout.buffer.write(got)
sys.exit(0 if got == plain or sys.argv[3:] == ["changing"] else 4)
"""

METHODS = ["sendfile", "splice", "copy_file_range", "shutil"]
COPYING = ["sendfile", "splice", "shutil"]  # those that copy from FUSE to another filesystem


def copied(
    path: Path, method: str, prefix: Sequence[str] = (), changing: bool = False, python: str = sys.executable
) -> str:
    result = run([*prefix, python, "-c", COPY, str(path), method, *(["changing"] if changing else [])])
    assert result.returncode == 0, (method, result.returncode, result.stderr)
    return result.stdout


def small_world(nsfs: Daemon, procs: Procs) -> tuple[str, str]:
    """A network namespace held by one sleeper, and a user namespace uid 1000 made."""
    net = ns_of(procs.sleeper("--net"), "net")
    user = ns_of(procs.sleeper("--user", uid=1000), "user")
    wait_until(lambda: {net, user} <= nsfs.names(), "the new namespaces")
    return net, user


@pytest.mark.parametrize("method", METHODS)
def test_every_file_reads_the_same_through_every_kind_of_read(nsfs: Daemon, procs: Procs, method: str) -> None:
    net, user = small_world(nsfs, procs)
    if method == "copy_file_range":  # from FUSE to another filesystem the kernel refuses: no bytes, no wrong bytes
        assert copied(nsfs.path(net, "holders"), method) == "EXDEV"
        return
    for name in files("holders", "nstype"):
        assert copied(nsfs.path(net, name), method) == nsfs.read(net, name), name
    assert copied(nsfs.path(user, "owner_uid"), method) == "1000\n"
    host_net = ns_of(os.getpid(), "net")  # thousands of bytes of holders, changing as processes come and go
    whole = copied(nsfs.path(host_net, "holders"), method, changing=True)
    # Whole lines only: every process is in it, and a few hold sockets there too (the mount's
    # watchdog, the test run itself).
    assert len(whole) > 1000 and {line.split()[0] for line in whole.splitlines()} <= {"process", "socket"}
    assert whole.endswith("\n")


def test_busybox_cat_coreutils_cat_and_cp_copy_holders_whole(nsfs: Daemon, procs: Procs, tmp_path: Path) -> None:
    net, _user = small_world(nsfs, procs)
    expected = nsfs.read(net, "holders")
    assert expected.startswith("process ") and expected.endswith(" sleep\n")
    assert os.stat(nsfs.path(net, "holders")).st_size == len(expected.encode())
    for argv in (["busybox", "cat"], ["cat"]):
        result = run([*argv, str(nsfs.path(net, "holders"))])
        assert (result.returncode, result.stdout) == (0, expected), argv
    for argv in (["cp"], ["busybox", "cp"]):
        target = tmp_path / argv[0]
        result = run([*argv, str(nsfs.path(net, "holders")), str(target)])
        assert result.returncode == 0 and target.read_text() == expected, (argv, result.stderr)


@pytest.mark.needs("pid_in_pidns")  # the caller numbers its own processes
def test_two_callers_copying_the_same_holders_each_get_their_own(nsfs: Daemon, procs: Procs) -> None:
    """Root sees every holder; the root of a container with its own user and pid namespaces
    sees its own processes, numbered as it numbers them. Alternating copies never mix the two."""
    pid = procs.sleeper("--user", "--map-root-user", "--pid", "--fork", "--mount-proc", uid=1000)
    cgroup = ns_of(pid, "cgroup")  # the host's: held by every process
    inside = ["nsenter", f"--target={pid}", "--user", "--pid", "--mount"]
    wait_until(lambda: ns_of(pid, "user") in nsfs.names(), "the container's namespaces")
    for _ in range(3):
        for method in COPYING:
            theirs = copied(nsfs.path(cgroup, "holders"), method, inside, python=SYSTEM_PYTHON)
            assert theirs.startswith("process 1 sleep\n") and len(theirs.splitlines()) <= 3, theirs
            ours = copied(nsfs.path(cgroup, "holders"), method, changing=True)
            assert len(ours.splitlines()) > 10 and "process 1 sleep\n" not in ours


def test_no_extended_attributes_so_ls_stops_asking(nsfs: Daemon) -> None:
    net = ns_of(os.getpid(), "net")
    for path in (nsfs.path(net), nsfs.path(net, "nstype")):
        with pytest.raises(OSError) as caught:
            os.getxattr(path, "system.posix_acl_access")
        assert caught.value.errno == errno.EOPNOTSUPP
    listing = run(["ls", "-l", str(nsfs.mountpoint)])
    assert listing.returncode == 0 and not any(line[10:11] == "+" for line in listing.stdout.splitlines())


def test_ns_link_is_absent_where_the_daemon_has_no_pid(nsfs: Daemon, procs: Procs) -> None:
    """In a pid namespace of its own with its own /proc, a caller cannot reach the daemon's
    fds: no `ns` link, even when one of its processes has the daemon's pid number and an
    fd of the pin's number open."""
    uts = ns_of(os.getpid(), "uts")
    pin = int(os.readlink(nsfs.path(uts, "ns")).rsplit("/", 1)[1])
    holder = f"import os, time; os.dup2(os.open('/proc/self/ns/mnt', os.O_RDONLY), {pin}); time.sleep(600)"
    script = (
        f"echo {nsfs.pid - 1} > /proc/sys/kernel/ns_last_pid; "
        f'{sys.executable} -c "{holder}" & '
        f"i=0; while [ ! -e /proc/{nsfs.pid}/fd/{pin} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; "
        f"ls {nsfs.path(uts)}; readlink {nsfs.path(uts, 'ns')}; "
        f"nsenter --uts={nsfs.path(uts, 'ns')} hostname; echo exit=$?"
    )
    result = run(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", script])
    assert result.stdout.split() == [*files("holders", "nstype", "owner"), "exit=1"], result.stdout + result.stderr
    assert "No such file or directory" in result.stderr
    # In the daemon's pid namespace the link is there and opens the namespace.
    entered = run(["nsenter", f"--uts={nsfs.path(uts, 'ns')}", "readlink", "/proc/self/ns/uts"])
    assert (entered.returncode, entered.stdout) == (0, f"{uts}\n"), entered.stderr


def dangling_links(listing_root: str, prefix: list[str]) -> str:
    """Run as a caller: every entry it lists, and every owner/parent link that leads nowhere."""
    script = (
        f'cd {listing_root} && for e in *; do echo "$e"; for l in owner parent; do '
        f'[ -L "$e/$l" ] && [ ! -e "$e/$l" ] && echo "dangling $e/$l"; done; done; true'
    )
    return run([*prefix, "sh", "-c", script]).stdout


def test_an_unprivileged_bubblewrap_sandbox_finds_every_namespace_it_is_in(nsfs: Daemon) -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed (make setup installs it)")
    mnt = nsfs.mountpoint
    inside = [
        *AS_1000,
        "bwrap",
        "--unshare-user",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-ipc",
        "--unshare-pid",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    script = f"for t in cgroup ipc mnt net pid time user uts; do cat {mnt}/$(readlink /proc/self/ns/$t)/nstype; done"
    result = run([*inside, "sh", "-c", script])
    assert (result.returncode, result.stdout.split()) == (
        0,
        ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"],
    ), result.stderr
    own_then_listed = (
        "for l in /proc/self/ns/*; do readlink $l; done; echo --; "
        f'cd {mnt} && for e in *; do echo "$e"; for l in owner parent; do '
        '[ -L "$e/$l" ] && [ ! -e "$e/$l" ] && echo "dangling"; done; done; true'
    )
    own, listed = run([*inside, "sh", "-c", own_then_listed]).stdout.split("--\n")
    assert set(own.split()) <= set(listed.split()) and "dangling" not in listed.split(), (own, listed)


@pytest.mark.needs("pid_in_pidns")
def test_a_rootless_container_sees_its_own_and_numbers_holders_its_way(nsfs: Daemon, procs: Procs) -> None:
    flags = ("--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--net", "--uts", "--ipc", "--mount")
    pid = procs.sleeper(*flags, uid=1000)
    net = ns_of(pid, "net")
    wait_until(lambda: net in nsfs.names(), "the container's namespaces")
    inside = ["nsenter", f"--target={pid}", "--all"]  # the container's root: it may read its own processes
    own = run([*inside, "sh", "-c", "for l in /proc/self/ns/*; do readlink $l; done"]).stdout.split()
    listed = dangling_links(str(nsfs.mountpoint), inside).split()
    assert set(own) <= set(listed) and "dangling" not in listed
    holders = run([*inside, "cat", str(nsfs.path(net, "holders"))])
    # Numbered as the container numbers them; `cat` itself too, if the daemon read it in time
    # (or nsenter's child, if read between its fork and its exec of cat).
    first, *rest = holders.stdout.splitlines()
    assert first == "process 1 sleep" and all(
        re.fullmatch(r"process [1-9][0-9]? (cat|nsenter)", line) for line in rest
    ), holders
    assert sorted(run([*inside, "ls", str(nsfs.path(net))]).stdout.split()) == files("holders", "nstype", "owner")
    entered = run([*inside, "nsenter", f"--net={nsfs.path(net, 'ns')}", "true"])
    assert entered.returncode != 0 and "No such file or directory" in entered.stderr


def read_all(fd: int) -> bytes:
    parts = [os.read(fd, 1 << 16)]
    while parts[-1]:
        parts.append(os.read(fd, 1 << 16))
    return b"".join(parts)


def sizes_against_reads(path: Path, until: float) -> tuple[int, list[str]]:
    """Open, fstat and read `path` over and over until it is gone or `until` (monotonic) passes:
    how many opens, and what went wrong with each that did not read what its fstat said."""
    opens, wrong = 0, []
    while time.monotonic() < until:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            break  # the entry is gone: nothing more to open
        opens += 1
        try:
            size = os.fstat(fd).st_size
            content = read_all(fd)
        except OSError as exc:
            wrong.append(f"{exc.strerror} on an open file")
        else:
            if size != len(content):
                wrong.append(f"fstat {size}, read {content!r}")
        finally:
            os.close(fd)
    return opens, wrong


def test_a_file_s_size_is_what_the_same_open_reads_while_its_namespace_dies(nsfs: Daemon, procs: Procs) -> None:
    """cp and sendfile copy as many bytes as fstat says: 60 rounds of open/fstat/read of the
    holders of a namespace whose only process is killed meanwhile, and not one disagrees."""
    opened, wrong = 0, []

    def held(net: str) -> bool:
        return net in nsfs.names() and nsfs.read(net, "holders") != ""

    for _ in range(60):
        pid = procs.sleeper("--net")
        net = ns_of(pid, "net")
        wait_until(functools.partial(held, net), "the namespace and its holder")
        killer = threading.Thread(target=procs.end, args=(pid,))
        killer.start()
        opens, round_wrong = sizes_against_reads(nsfs.path(net, "holders"), time.monotonic() + 3 * SLOWDOWN)
        killer.join()
        opened += opens
        wrong += round_wrong
    assert wrong == [], f"{len(wrong)} of {opened} opens, such as {sorted(set(wrong))[:4]}"
