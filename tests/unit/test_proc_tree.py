"""Discovery over a /proc of made-up processes (tests/unit/proc, laid out by
tests/unit/make_proc_tree.py): every kind of holder a process read finds, vanished and odd
processes, other nsfs daemons and their helpers, mount tables. No root, no kernel: the pids
are above the kernel's PID_MAX_LIMIT, so the one question that goes to the kernel (a
socket's network namespace, through pidfd_open) is answered "no such process".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nsfs_fuse import discovery
from nsfs_fuse.model import Holder, HolderKind, NsKey, ProcessRead, Sighting, parse_ns_name

from .make_proc_tree import HOST, ROOT

PROC = ROOT
TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def key(name: str) -> NsKey:
    parsed = parse_ns_name(name)
    assert parsed is not None
    return parsed


def scanner() -> discovery.Scanner:
    return discovery.Scanner(own_pid=1, nsfs_dev=0, proc=PROC)


def found(sightings: tuple[Sighting, ...] | list[Sighting]) -> list[tuple[str, str, str, int, int, str]]:
    """Each sighting as (namespace, path under the tree, kind, pid, num, text), in order."""
    return [
        (s.key.name, s.path.removeprefix(PROC), s.holder.kind.value, s.holder.pid, s.holder.num, s.holder.text)
        for s in sightings
    ]


def links(
    pid: int, comm: str, inodes: dict[str, int], for_children: dict[str, int]
) -> list[tuple[str, str, str, int, int, str]]:
    process = [(f"{t}:[{inodes[t]}]", f"/{pid}/ns/{t}", "process", pid, 0, comm) for t in TYPES if t in inodes]
    children = [
        (f"{t}:[{for_children[t]}]", f"/{pid}/ns/{t}_for_children", "for-children", pid, 0, "")
        for t in ("pid", "time")
        if t in for_children
    ]
    return [*process, *children]


def test_the_listing_is_the_numbered_entries() -> None:
    """5000400 is not there: a sweep that listed it meets it gone."""
    assert scanner().pids() == [5000100, 5000200, 5000300, 5000500, 5000600, 5000601]


def test_a_process_its_thread_and_its_fds() -> None:
    """The links of 5000100 (and its next children's), its thread in a network namespace of
    its own (only what differs from its leader), its fd on a namespace. Not a holder:
    /dev/null, an eventfd, a name too large to be an inode, a socket no process has now."""
    read = scanner().read(5000100)
    assert not read.failed and not read.exiting and read.mnt == key(f"mnt:[{HOST['mnt']}]")
    assert found(read.sightings) == [
        *links(5000100, "sleep", HOST, {"pid": HOST["pid"], "time": HOST["time"]}),
        ("net:[4026532500]", "/5000100/task/5000101/ns/net", "task", 5000100, 5000101, "worker"),
        ("net:[4026532600]", "/5000100/fd/3", "fd", 5000100, 3, ""),
    ]
    assert read.daemon_pins == frozenset()


def test_holders_carry_their_process_credentials() -> None:
    """As its status says, in its user namespace; owner is whoever owns the status file."""
    read = scanner().read(5000100)
    creds = read.sightings[0].holder.creds
    assert creds is not None
    assert (creds.uids, creds.gids, creds.permitted) == ((1000,) * 3, (1000,) * 3, 0)
    assert creds.userns == key(f"user:[{HOST['user']}]")
    assert creds.owner == os.stat(f"{PROC}/5000100/status").st_uid
    task = read.sightings[-2].holder
    assert task.kind is HolderKind.TASK and task.creds is not None and task.creds.uids == (1000,) * 3


def test_a_process_in_a_user_namespace_of_its_own() -> None:
    """5000200's user, net and uts namespaces are its own, and its children's pid namespace;
    its credentials are in that user namespace, whose root is 100000 outside (uid_map)."""
    read = scanner().read(5000200)
    own = dict(HOST, user=4026532700, net=4026532701, uts=4026532702)
    assert found(read.sightings) == links(5000200, "sh", own, {"pid": 4026532703, "time": HOST["time"]})
    creds = read.sightings[0].holder.creds
    assert creds is not None and creds.userns == key("user:[4026532700]")
    assert creds.uids == (100000,) * 3 and creds.permitted == 0x1FFFFFFFFFF


def test_a_status_the_kernel_would_not_write_gives_no_credentials() -> None:
    """5000300's Uid line is cut short: its namespaces are found, its holders carry no
    credentials (so fewer callers see them), and the read is not a failed one."""
    read = scanner().read(5000300)
    assert not read.failed
    assert found(read.sightings) == links(5000300, "odd", HOST, {"pid": HOST["pid"], "time": HOST["time"]})
    assert all(s.holder.creds is None for s in read.sightings)


def test_a_vanished_process_is_an_empty_read() -> None:
    """Listed, then gone: nothing held, not a failure (the registry drops what it kept)."""
    read = scanner().read(5000400)
    assert (read.failed, read.exiting, read.sightings, read.mnt) == (False, False, (), None)


def test_a_zombie_holds_its_pid_and_user_namespaces() -> None:
    read = scanner().read(5000500)
    assert read.exiting and read.mnt is None
    assert found(read.sightings) == [
        (f"pid:[{HOST['pid']}]", "/5000500/ns/pid", "process", 5000500, 0, "defunct"),
        (f"user:[{HOST['user']}]", "/5000500/ns/user", "process", 5000500, 0, "defunct"),
    ]


def test_another_daemons_fds_are_its_pins_and_its_helper_holds_nothing() -> None:
    daemon = scanner().read(5000600)
    assert daemon.daemon_pins == {key("net:[4026532600]"), key("uts:[4026532702]")}
    assert found(daemon.sightings) == links(5000600, "nsfs", HOST, {"pid": HOST["pid"], "time": HOST["time"]})
    helper = scanner().read(5000601)
    assert (helper.sightings, helper.daemon_pins, helper.failed) == ((), frozenset(), False)


def test_a_sweep_reads_what_it_lists_and_meets_the_vanished() -> None:
    reads = []

    def each(chunk: list[ProcessRead]) -> bool:
        reads.extend(chunk)
        return True

    assert scanner().sweep(each, pids=[5000100, 5000400, 5000500])
    assert [(r.pid, len(r.sightings), r.exiting) for r in reads] == [
        (5000100, 12, False),
        (5000400, 0, False),
        (5000500, 2, True),
    ]


def test_a_mount_table_gives_its_nsfs_bind_mounts() -> None:
    """Escaped paths unescaped; other file systems and a line that is no mount left out."""
    mnt = key(f"mnt:[{HOST['mnt']}]")
    lines = Path(f"{PROC}/5000100/mountinfo").read_text().splitlines(keepends=True)
    assert discovery.table_sightings(mnt, lines, "/proc/5000100/root") == [
        Sighting(
            key("net:[4026532600]"),
            "/proc/5000100/root/run/netns/blue",
            Holder(HolderKind.MOUNT, text="/run/netns/blue", ns=mnt.name),
        ),
        Sighting(
            key("uts:[4026532702]"),
            "/proc/5000100/root/run/a b",
            Holder(HolderKind.MOUNT, text="/run/a b", ns=mnt.name),
        ),
    ]


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        (Holder(HolderKind.FD, 5000100, 3), True),  # still the same namespace
        (Holder(HolderKind.FD, 5000100, 0), False),  # the number holds another file now
        (Holder(HolderKind.FD, 5000400, 3), False),  # its process is gone
        (Holder(HolderKind.PROCESS, 5000100), None),  # not a kind this checks
    ],
)
def test_an_fd_holder_is_checked_with_one_readlink(holder: Holder, expected: bool | None) -> None:
    assert discovery.still_holds(key("net:[4026532600]"), holder, proc=PROC) is expected


def test_a_caller_is_known_by_its_thread() -> None:
    assert discovery.process_of(5000100, proc=PROC) == 5000100
    assert discovery.process_of(5000400, proc=PROC) is None
    assert discovery.ns_link(5000200, "net", proc=PROC) == "net:[4026532701]"
    assert discovery.ns_link(5000400, "net", proc=PROC) is None
    assert [s.key.name for s in discovery.caller_sightings(5000200, proc=PROC)][:4] == [
        f"cgroup:[{HOST['cgroup']}]",
        f"ipc:[{HOST['ipc']}]",
        f"mnt:[{HOST['mnt']}]",
        "net:[4026532701]",
    ]
