"""Holdings: who holds what, by source. What it keeps incrementally must always equal
what a look at everything would find."""

from __future__ import annotations

from nsfs_fuse.holdings import Holdings
from nsfs_fuse.model import Holder, HolderKind, NsKey, ProcessRead, Sighting

NET, OTHER = NsKey("net", 1), NsKey("net", 2)


def holdings() -> tuple[Holdings, list[NsKey], list[NsKey]]:
    changed: list[NsKey] = []
    unheld: list[NsKey] = []
    return Holdings(lambda key, found: True, changed.append, unheld.append), changed, unheld


def process(pid: int, at: float, key: NsKey) -> ProcessRead:
    return ProcessRead(pid, at, (Sighting(key, f"/proc/{pid}/ns/net", Holder(HolderKind.PROCESS, pid, text="sh")),))


def fd(pid: int, at: float, key: NsKey, num: int = 5) -> ProcessRead:
    return ProcessRead(pid, at, (Sighting(key, f"/proc/{pid}/fd/{num}", Holder(HolderKind.FD, pid, num)),))


def everything(h: Holdings, key: NsKey) -> set[Holder]:
    return {holder for direct in h.direct(key) for part in direct.values() for holder in part}


def test_loose_lists_the_holders_of_namespaces_no_process_is_in_as_processes_come_and_go() -> None:
    h, _changed, unheld = holdings()
    h.read(process(1, 1.0, NET))
    h.read(fd(2, 1.0, OTHER))
    h.read(fd(3, 1.0, NET, 7))
    assert h.loose() == [(OTHER, Holder(HolderKind.FD, 2, 5))]
    h.read(ProcessRead(1, 2.0))  # NET's last member goes: its fd holder is now all it has
    assert sorted(h.loose()) == sorted([(OTHER, Holder(HolderKind.FD, 2, 5)), (NET, Holder(HolderKind.FD, 3, 7))])
    h.read(process(4, 3.0, NET))  # a process enters NET
    assert h.loose() == [(OTHER, Holder(HolderKind.FD, 2, 5))]
    h.read(ProcessRead(2, 3.0))  # the fd on OTHER is closed
    assert h.loose() == [] and unheld == [OTHER]


def test_a_namespace_with_thousands_of_holders_publishes_exactly_its_holders_after_each_change() -> None:
    h, changed, _unheld = holdings()
    pids = range(1, 1280)
    for pid in pids:
        h.read(process(pid, 1.0, NET))
    expected = {Holder(HolderKind.PROCESS, pid, text="sh") for pid in pids}
    assert everything(h, NET) == expected
    for pid in range(1, 1280, 7):  # every seventh exits, then half of those come back as fds
        h.read(ProcessRead(pid, 2.0))
        expected.discard(Holder(HolderKind.PROCESS, pid, text="sh"))
        assert everything(h, NET) == expected
        taken = h.direct(NET)  # as a snapshot takes it: later changes must not show in it
        kept = [set(d.items()) for d in taken]
        if pid % 2:
            h.read(fd(pid, 3.0, NET))
            assert [set(d.items()) for d in taken] == kept
            expected.add(Holder(HolderKind.FD, pid, 5))
            assert everything(h, NET) == expected
    assert changed.count(NET) == len(pids) + len(range(1, 1280, 7)) + len(range(1, 1280, 14))
    assert h.loose() == []


def test_a_read_like_the_last_changes_nothing_unless_a_pin_was_missing() -> None:
    tries: list[NsKey] = []
    changed: list[NsKey] = []

    def pinned(key: NsKey, found: list[Sighting]) -> bool:
        tries.append(key)
        return len(tries) > 1  # the first pin fails (out of fds, say)

    h = Holdings(pinned, changed.append, lambda key: None)
    h.read(process(1, 1.0, NET))
    assert list(h.keys()) == [] and changed == []
    h.read(process(1, 2.0, NET))  # the same read: the missing pin is tried again
    assert list(h.keys()) == [NET] and changed == [NET]
    h.read(process(1, 3.0, NET))  # the same again: nothing to do, but its time is noted
    assert tries == [NET, NET] and changed == [NET]
    h.read(ProcessRead(1, 2.5))  # older than that: dropped
    assert list(h.keys()) == [NET]
    h.read(ProcessRead(1, 3.5))  # the process is gone
    assert list(h.keys()) == [] and changed == [NET, NET]


def test_a_failed_read_keeps_what_was_kept_as_of_its_time() -> None:
    h, changed, unheld = holdings()
    h.read(process(1, 1.0, NET))
    h.read(ProcessRead(1, 2.0, failed=True))  # a fault: it found out nothing
    assert everything(h, NET) == {Holder(HolderKind.PROCESS, 1, text="sh")} and changed == [NET] and unheld == []
    h.end_sweep(1.5)  # a sweep that began before the failed read: the process was seen since
    assert everything(h, NET) == {Holder(HolderKind.PROCESS, 1, text="sh")}
    h.read(ProcessRead(1, 1.8))  # older than the failed read: dropped, as any older read
    assert list(h.keys()) == [NET]
    h.read(fd(1, 3.0, OTHER))  # a read that succeeds replaces it whole
    assert list(h.keys()) == [OTHER] and unheld == [NET]


def test_a_failed_first_read_holds_nothing() -> None:
    h, changed, _unheld = holdings()
    h.read(ProcessRead(1, 1.0, failed=True))
    assert list(h.keys()) == [] and changed == [] and not h.knows(1)


def test_loose_lists_what_processes_hold_not_the_mount_tables_that_hold_the_same_namespace() -> None:
    """An `ip netns` bind mount is copied into every mount namespace made since: the fd checks
    must not walk one holder per mount table (each table is followed by the kernel's flag)."""
    h, _changed, _unheld = holdings()
    for inode in range(100, 400):
        mnt = NsKey("mnt", inode)
        h.mount_table(mnt, [Sighting(NET, "/run/netns/a", Holder(HolderKind.MOUNT, text="/run/netns/a", ns=mnt.name))])
    h.read(fd(3, 1.0, NET, 7))
    assert [len(d) for d in h.direct(NET)] == [1, 300]
    assert h.loose() == [(NET, Holder(HolderKind.FD, 3, 7))]
    h.read(ProcessRead(3, 2.0))  # the fd's process goes: the mount tables still hold it
    assert h.loose() == []
