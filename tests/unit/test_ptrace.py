"""Who may read which process: the kernel's ptrace read rule, from a process's credentials as
/proc shows them (discovery) and from the caller's (visibility)."""

from __future__ import annotations

import os

import pytest

from nsfs_fuse.model import Creds, Entry, NsKey, Snapshot
from nsfs_fuse.procfs import Status, process_creds, read_status
from nsfs_fuse.visibility import CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, Caller, Ptrace, confined

HOST = NsKey("user", 100)
CHILD = NsKey("user", 200)  # created by uid 1000 on the host; its root is uid 1000 outside
GRANDCHILD = NsKey("user", 300)  # created in CHILD by its root
SIBLING = NsKey("user", 250)  # created by uid 2000 on the host
UNKNOWN = NsKey("user", 999)  # no entry: out of the daemon's reach

ALL = (1 << 41) - 1  # every capability Linux 6.18 has
PTRACE_ONLY = 1 << CAP_SYS_PTRACE


def user(key: NsKey, parent: NsKey | None, creator: int | None) -> Entry:
    return Entry(key, key.inode, None, None, None, parent, parent, creator, 0)


SNAPSHOT = Snapshot.of(
    [user(HOST, None, None), user(CHILD, HOST, 1000), user(GRANDCHILD, CHILD, 1000), user(SIBLING, HOST, 2000)],
    {},
    1,
)


def creds(
    uid: int, userns: NsKey = HOST, *, permitted: int = 0, owner: int | None = None, undumpable: NsKey | None = None
) -> Creds:
    return Creds((uid, uid, uid), (uid, uid, uid), permitted, uid if owner is None else owner, userns, undumpable)


def caller(uid: int, userns: NsKey = HOST, caps: int = 0, tgid: int = 1) -> Ptrace:
    return Ptrace(Caller(tgid, uid, uid, uid, caps, userns), SNAPSHOT)


PLAIN_1000 = creds(1000)
PLAIN_2000 = creds(2000)
ROOT = creds(0, permitted=ALL, undumpable=HOST)  # euid 0 is the top's root: cannot be told dumpable
WITH_A_CAP = creds(1000, permitted=1 << 10)  # uid 1000 with a file capability (CAP_NET_BIND_SERVICE)
UNDUMPABLE_1000 = creds(1000, owner=0, undumpable=HOST)
IN_CHILD = creds(1000, CHILD, permitted=ALL, undumpable=CHILD)  # the container's root
IN_CHILD_USER = creds(100001, CHILD)  # an unprivileged user inside the container
IN_GRANDCHILD = creds(1000, GRANDCHILD, permitted=ALL, undumpable=GRANDCHILD)
IN_SIBLING = creds(2000, SIBLING, permitted=ALL, undumpable=SIBLING)


def readable(reader: Ptrace) -> set[str]:
    everyone = {
        "plain 1000": PLAIN_1000,
        "with a cap": WITH_A_CAP,
        "plain 2000": PLAIN_2000,
        "root": ROOT,
        "undumpable 1000": UNDUMPABLE_1000,
        "child": IN_CHILD,
        "child user": IN_CHILD_USER,
        "grandchild": IN_GRANDCHILD,
        "sibling": IN_SIBLING,
        "unknown": creds(5, UNKNOWN),
    }
    return {name for name, found in everyone.items() if reader.reads(10, found)}


def test_root_with_its_capabilities_reads_everything_but_what_it_cannot_place() -> None:
    assert readable(caller(0, caps=ALL)) == {
        "plain 1000",
        "with a cap",
        "plain 2000",
        "root",
        "undumpable 1000",
        "child",
        "child user",
        "grandchild",
        "sibling",
    }


def test_a_user_reads_its_own_dumpable_processes_and_what_its_namespaces_hold_but_no_fds_there() -> None:
    # Uid 1000 created CHILD, so it has every capability there and below: their /proc/PID/ns
    # are its to read, but /proc/PID/fd (mode 0500) belongs to the process's own uid.
    assert readable(caller(1000)) == {"plain 1000", "child", "grandchild"}
    assert readable(caller(2000)) == {"plain 2000", "sibling"}
    assert readable(caller(1001)) == set()


def test_a_container_reads_its_own_processes_only() -> None:
    # Not a host process of its uid either: without CAP_SYS_PTRACE over it, the kernel wants the
    # caller in the process's own user namespace (cap_ptrace_access_check).
    assert readable(caller(1000, CHILD, caps=ALL)) == {"child", "child user", "grandchild"}
    assert readable(caller(1000, GRANDCHILD, caps=ALL)) == {"grandchild"}
    assert readable(caller(100001, CHILD)) == {"child user"}


def test_a_process_with_a_capability_the_caller_lacks_is_not_an_equal() -> None:
    assert readable(caller(1000, caps=1 << 10)) == {"plain 1000", "with a cap", "child", "grandchild"}


def test_root_without_capabilities_reads_no_process_that_may_not_be_dumpable() -> None:
    assert readable(caller(0)) == set()
    assert readable(caller(0, caps=1 << CAP_DAC_READ_SEARCH)) == set()


def test_capabilities_are_asked_for_in_the_process_s_namespace_and_fds_want_dac_too() -> None:
    # Uid 0 owns the /proc/PID/fd of root's processes and of those that are not dumpable.
    assert readable(caller(0, caps=PTRACE_ONLY)) == {"root", "undumpable 1000"}
    assert readable(caller(7, caps=PTRACE_ONLY)) == set()


def test_a_process_always_reads_itself() -> None:
    assert caller(1000, tgid=10).reads(10, UNDUMPABLE_1000)
    assert not caller(1000, tgid=11).reads(10, UNDUMPABLE_1000)
    assert not caller(1000, tgid=10).reads(10, None)  # gone: nothing to show


def test_a_caller_an_lsm_confines_reads_itself_only() -> None:
    boxed = Ptrace(Caller(10, 0, 0, 0, ALL, HOST, confined=True), SNAPSHOT)
    assert boxed.reads(10, ROOT) and not boxed.reads(11, ROOT)


@pytest.mark.parametrize(
    ("label", "is_confined"),
    [
        (None, False),  # no LSM labels processes
        ("unconfined", False),  # AppArmor
        ("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", False),  # SELinux
        ("docker-default (enforce)", True),
        ("system_u:system_r:container_t:s0:c1,c2", True),
    ],
)
def test_which_lsm_labels_confine(label: str | None, is_confined: bool) -> None:
    assert confined(label) is is_confined


def test_a_caller_that_cannot_be_identified_reads_nothing() -> None:
    assert not Ptrace(None, SNAPSHOT).reads(10, PLAIN_1000)


# -- what /proc tells of a process -----------------------------------------------


def status(uid: int, owner: int, gid: int | None = None) -> Status:
    gid = uid if gid is None else gid
    return Status(10, 1, (uid, uid, uid, uid), (gid, gid, gid, gid), 1 << 10, 0, (owner, owner if gid == uid else gid))


@pytest.mark.parametrize(
    ("found", "userns", "root", "undumpable"),
    [
        (status(1000, owner=1000), HOST, 0, None),  # dumpable: its /proc files are its own
        (status(1000, owner=0), HOST, 0, HOST),  # not dumpable: they are the root's
        (status(0, owner=0), HOST, 0, HOST),  # root's own files: cannot be told
        (status(100001, owner=100001), CHILD, 100000, None),  # a user inside a container
        (status(100001, owner=100000), CHILD, 100000, CHILD),  # the same, not dumpable
        (status(100000, owner=100000), CHILD, 100000, CHILD),  # the container's root: cannot be told
        (status(100001, owner=0), CHILD, 100000, HOST),  # exec'd above its namespace: the top
    ],
)
def test_a_process_that_may_not_be_dumpable_is_told_by_its_proc_files_owner(
    found: Status, userns: NsKey, root: int, undumpable: NsKey | None
) -> None:
    uid = found.uids[0]
    expected = Creds((uid, uid, uid), (uid, uid, uid), 1 << 10, found.owner[0], userns, undumpable)
    assert process_creds(found, userns, root, HOST) == expected


def test_a_status_file_is_read_as_the_kernel_writes_it() -> None:
    found = read_status("/proc/self/status")
    assert found is not None
    assert found.tgid == os.getpid()
    assert found.uids[:3] == os.getresuid() and found.gids[:3] == os.getresgid()
    assert found.owner == (os.geteuid(), os.getegid())  # this process is dumpable
    assert read_status("/proc/self/nonexistent") is None
