"""Entries: names, files, contents and links, checked against the kernel itself."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest

from tests.support.daemon import Daemon, leaving
from tests.support.features import files
from tests.support.oracles import (
    NS_GET_PARENT,
    NS_GET_USERNS,
    all_process_namespaces,
    listns_ids,
    ns_id,
    ns_of,
    related,
)
from tests.support.procs import Procs
from tests.support.waiting import INTERVAL, run, wait_until

TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
ALL_NEW = ("--user", "--map-root-user", "--cgroup", "--ipc", "--mount", "--net", "--pid", "--uts", "--time", "--fork")


def test_every_type_is_listed_with_its_nstype(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper(*ALL_NEW)
    names = {t: ns_of(pid, t) for t in TYPES}
    assert len({n.split(":")[1] for n in names.values()}) == 8, "unshare made eight new namespaces"
    wait_until(lambda: set(names.values()) <= nsfs.names(), "the new namespaces")
    for nstype, name in names.items():
        assert nsfs.read(name, "nstype") == f"{nstype}\n"


def test_listing_covers_every_process_namespace_and_only_real_ones(nsfs: Daemon) -> None:
    wait_until(lambda: all_process_namespaces() <= nsfs.names(), "every /proc/*/ns/* namespace to be listed")
    for name in nsfs.names():
        nstype, inode = name.split(":")
        try:
            st = os.stat(nsfs.path(name, "ns"))
            content = nsfs.read(name, "nstype")
        except FileNotFoundError:
            # What an earlier test left may be on its way out (a pid namespace until
            # its last zombie is reaped): then it must be gone from the listing too.
            leaving(nsfs, name)
            continue
        if st.st_ino != int(inode[1:-1]) and os.path.samestat(st, os.stat(os.devnull)):
            leaving(nsfs, name)  # being probed: held by nothing a scan finds
            continue
        assert st.st_ino == int(inode[1:-1])
        assert content == f"{nstype}\n"


def test_entry_files_and_their_contents(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--pid", "--net", "--fork")
    user, pidns, net = ns_of(pid, "user"), ns_of(pid, "pid"), ns_of(pid, "net")
    init_user, init_pid = ns_of(os.getpid(), "user"), ns_of(os.getpid(), "pid")
    wait_until(lambda: {user, pidns, net} <= nsfs.names(), "the new namespaces")

    assert sorted(os.listdir(nsfs.path(net))) == files("holders", "ns", "nstype", "owner")
    assert sorted(os.listdir(nsfs.path(pidns))) == files("holders", "ns", "nstype", "owner", "parent")
    assert sorted(os.listdir(nsfs.path(user))) == files("holders", "ns", "nstype", "owner", "owner_uid", "parent")
    # The initial namespaces have no owner or parent: the kernel answers EPERM there too.
    assert sorted(os.listdir(nsfs.path(init_user))) == files("holders", "ns", "nstype", "owner_uid")
    assert sorted(os.listdir(nsfs.path(init_pid))) == files("holders", "ns", "nstype", "owner")

    assert os.readlink(nsfs.path(net, "owner")) == f"../{user}"
    assert os.readlink(nsfs.path(pidns, "owner")) == f"../{user}"
    assert os.readlink(nsfs.path(pidns, "parent")) == f"../{init_pid}"
    assert os.readlink(nsfs.path(user, "owner")) == f"../{init_user}"
    assert os.readlink(nsfs.path(user, "parent")) == f"../{init_user}"
    assert os.readlink(nsfs.path(init_pid, "owner")) == f"../{init_user}"
    # The links resolve inside the mount, to the entry they name.
    assert os.path.realpath(nsfs.path(net, "owner")) == str(nsfs.path(user))

    assert nsfs.read(user, "owner_uid") == "0\n"
    assert os.readlink(nsfs.path(net, "ns")) == f"/proc/{nsfs.pid}/fd/{_pin_fd(nsfs, net)}"


@pytest.mark.needs("ns_id")
def test_the_id_file_is_the_kernels_namespace_id(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--pid", "--net", "--fork")
    names = {nstype: ns_of(pid, nstype) for nstype in ("user", "pid", "net")}
    wait_until(lambda: set(names.values()) <= nsfs.names(), "the new namespaces")
    for nstype, name in names.items():
        assert nsfs.read(name, "id") == f"{ns_id(f'/proc/{pid}/ns/{nstype}')}\n"


@pytest.mark.needs("listns")
def test_the_mount_lists_every_namespace_the_kernel_lists(nsfs: Daemon, procs: Procs) -> None:
    """listns(2) is the kernel's own list of the namespaces in use: each one is an entry once the
    daemon has looked."""
    pid = procs.sleeper("--user", "--map-root-user", "--pid", "--net", "--ipc", "--fork")
    wait_until(lambda: ns_of(pid, "ipc") in nsfs.names(), "the new namespaces")

    def listed_ids() -> set[int]:
        ids = set()
        for name in nsfs.names():
            try:
                ids.add(int(nsfs.read(name, "id")))
            except FileNotFoundError:  # gone since listed
                continue
        return ids

    def missing() -> set[int]:
        # Those still in use after the mount was read: a namespace that went meanwhile is no gap.
        return (listns_ids() - listed_ids()) & listns_ids()

    wait_until(lambda: not missing(), "every namespace listns lists to be listed")


def _pin_fd(nsfs: Daemon, name: str) -> int:
    for fd in os.listdir(f"/proc/{nsfs.pid}/fd"):
        if os.readlink(f"/proc/{nsfs.pid}/fd/{fd}") == name:
            return int(fd)
    raise AssertionError(f"the daemon holds no fd on {name}")


def test_owner_and_parent_links_match_the_kernel_for_every_entry(nsfs: Daemon, procs: Procs) -> None:
    procs.sleeper("--user", "--map-root-user", "--pid", "--net", "--fork")
    nested = ("unshare", "--user", "--map-root-user", "--fork", "unshare", "--user", "--pid", "--ipc", "--fork")
    procs.start(*nested, "sleep", "600")
    wait_until(lambda: len([n for n in nsfs.names() if n.startswith("user:")]) >= 4, "the nested user namespaces")
    for name in sorted(nsfs.names()):
        ns_file = str(nsfs.path(name, "ns"))
        try:
            expected = {"owner": related(ns_file, NS_GET_USERNS)}
            if name.startswith(("pid:", "user:")):
                expected["parent"] = related(ns_file, NS_GET_PARENT)
        except OSError as exc:
            # On its way out: gone, or being probed (then `ns` opens /dev/null: ENOTTY).
            assert exc.errno in (errno.ENOENT, errno.ENOTTY), exc
            leaving(nsfs, name)
            continue
        for link, target in expected.items():
            path = nsfs.path(name, link)
            if target is None:
                assert not os.path.lexists(path), f"{name}/{link} should be absent (EPERM)"
            else:
                assert os.readlink(path) == f"../{target}", f"{name}/{link}"
        if not name.startswith(("pid:", "user:")):
            assert not os.path.lexists(nsfs.path(name, "parent"))


def test_owner_uid_of_a_user_namespace_made_by_an_unprivileged_user(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--net", uid=1000)
    user, net = ns_of(pid, "user"), ns_of(pid, "net")
    wait_until(lambda: {user, net} <= nsfs.names(), "the namespaces of uid 1000")
    assert nsfs.read(user, "owner_uid") == "1000\n"
    # Inside that namespace uid 1000 is root: owner_uid is mapped per caller.
    inside = run(["nsenter", f"--target={pid}", "--user", "cat", str(nsfs.path(user, "owner_uid"))])
    assert (inside.returncode, inside.stdout) == (0, "0\n"), inside.stderr
    # ls -l: a user namespace's owner is its creator, as owner_uid says; any other entry's,
    # the creator of its owning user namespace.
    assert os.stat(nsfs.path(net)).st_uid == 1000
    assert os.stat(nsfs.path(net, "nstype")).st_uid == 1000
    assert os.stat(nsfs.path(user)).st_uid == 1000
    assert os.stat(nsfs.path(user, "owner_uid")).st_uid == 1000
    assert os.stat(nsfs.path(ns_of(os.getpid(), "user"))).st_uid == 0
    found = run(["find", str(nsfs.mountpoint), "-maxdepth", "1", "-user", "1000"])
    assert sorted(found.stdout.split()) == sorted([str(nsfs.path(user)), str(nsfs.path(net))])


def test_ls_l_shows_modes_owner_and_first_seen_time(nsfs: Daemon, procs: Procs) -> None:
    before = os.stat(nsfs.mountpoint).st_mtime
    pid = procs.sleeper("--net")
    net = ns_of(pid, "net")
    wait_until(lambda: net in nsfs.names(), "the new namespace")
    st = os.lstat(nsfs.path(net))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o555
    assert st.st_mtime >= before
    assert stat.S_ISREG(os.lstat(nsfs.path(net, "nstype")).st_mode)
    assert stat.S_IMODE(os.lstat(nsfs.path(net, "nstype")).st_mode) == 0o444
    assert stat.S_ISLNK(os.lstat(nsfs.path(net, "owner")).st_mode)
    listing = run(["ls", "-l", str(nsfs.mountpoint)])
    line = next(line for line in listing.stdout.splitlines() if line.endswith(net))
    assert line.startswith("dr-xr-xr-x 2 root root 0 "), line
    # The first-seen time stays put across refreshes.
    time.sleep(3 * INTERVAL)
    assert nsfs.path(net).stat().st_mtime == st.st_mtime


def test_ns_link_opens_the_namespace_itself(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--net", "--uts")
    net, uts = ns_of(pid, "net"), ns_of(pid, "uts")
    # Held by the sleeper, not only listed: where the kernel lists a namespace before its holder
    # is read (listns), it is probed meanwhile, and shown without its `ns` while it is.
    holder = f"process {pid} "

    def held() -> bool:
        try:
            return all(holder in nsfs.read(name, "holders") for name in (net, uts))
        except FileNotFoundError:
            return False

    wait_until(held, "the new namespaces, held by the sleeper")
    assert os.stat(nsfs.path(net, "ns")).st_ino == int(net[5:-1])
    stat_l = run(["stat", "-L", "-c", "%i", str(nsfs.path(net, "ns"))])
    assert stat_l.stdout == f"{net[5:-1]}\n"
    entered = run(["nsenter", f"--net={nsfs.path(net, 'ns')}", "readlink", "/proc/self/ns/net"])
    assert (entered.returncode, entered.stdout) == (0, f"{net}\n"), entered.stderr
    entered = run(["nsenter", f"--uts={nsfs.path(uts, 'ns')}", "readlink", "/proc/self/ns/uts"])
    assert entered.stdout == f"{uts}\n"


def test_directories_list_dot_and_dot_dot(nsfs: Daemon) -> None:
    net = ns_of(os.getpid(), "net")
    root = run(["ls", "-a", str(nsfs.mountpoint)]).stdout.split()
    assert root[:2] == [".", ".."] and net in root
    entry = run(["ls", "-a", str(nsfs.path(net))]).stdout.split()
    assert entry == [".", "..", *files("holders", "ns", "nstype", "owner")]
    assert os.stat(nsfs.path(net, "..")).st_ino == os.stat(nsfs.mountpoint).st_ino
