"""The fd counts: a round over every process, paced to its share of a core, and what it reads again."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import trio
import trio.testing

from nsfs_fuse.model import NsKey
from nsfs_fuse.rereads import FD_COUNT_CHUNK, Rereads


class Applied:
    def __init__(self) -> None:
        self.pids: list[list[int]] = []

    def __call__(self, pids: list[int], gone: object = ()) -> None:
        self.pids.append(sorted(pids))


def rereads(share: float) -> tuple[Rereads, list[float], Applied]:
    charged: list[float] = []
    applied = Applied()
    r = Rereads(registry=None, scanner=None, own_pid=os.getpid(), cpu_share=share, charge=charged.append)  # type: ignore[arg-type]
    r.apply = applied  # type: ignore[method-assign,assignment]
    return r, charged, applied


def test_a_round_is_paced_to_its_share_and_charged_to_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk of counts is followed by a pause that keeps the round within its share of a
    core: a round over this machine's processes lasts (in trio's clock) what its CPU time
    divided by the share says, and every bit of that CPU time is charged."""
    pids = list(range(1, 5 * FD_COUNT_CHUNK + 1))
    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: pids)
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", lambda pid: sum(range(2000)) % 7 + pid % 3)
    r, charged, applied = rereads(0.001)
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def one_round() -> float:
        start = trio.current_time()
        await r.count_fds()
        return trio.current_time() - start

    lasted = trio.run(one_round, clock=clock)
    assert len(charged) == 1 + 5  # the listing of /proc, then each chunk
    assert sum(charged) > 0
    assert lasted >= sum(charged[1:]) / 0.001 * 0.99
    assert applied.pids == []  # a first round has nothing to compare with


def test_a_second_round_reads_again_exactly_the_processes_whose_count_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {10: 3, 11: 4, 12: 5}
    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: sorted(counts))
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", counts.__getitem__)
    r, _charged, applied = rereads(1.0)
    trio.run(r.count_fds)
    counts.update({11: 5, 13: 9, 14: 7})  # 11 opened one; 13 and 14 are new (no count to compare with)
    del counts[12]
    r.follow_up([13], [])  # 13 will be read again: 14's follow-ups are over, it is read now
    trio.run(r.count_fds)
    assert applied.pids == [[11, 14]]
    trio.run(r.count_fds)
    assert applied.pids == [[11, 14]]  # once: now it has a count to compare with


def test_a_kernel_that_counts_no_fds_stops_the_rounds_until_a_search_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: [10, 11])
    counted: list[int] = []

    def fd_count(pid: int) -> int:
        counted.append(pid)
        return 0

    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", fd_count)
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.ns_link", lambda pid, link: f"net:[{pid}]")
    monkeypatch.setattr("nsfs_fuse.rereads.FD_COUNTS_EVERY", 0.05)
    r, _charged, applied = rereads(1.0)

    async def until(done: Callable[[], bool]) -> None:
        with trio.fail_after(10):
            while not done():
                await trio.sleep(0.01)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(r._count_rounds)
            await until(lambda: counted == [10, 11])
            await trio.sleep(0.5)  # ten rounds' time: no round after the first
            assert counted == [10, 11]
            r.search([NsKey("net", 11)])
            await until(lambda: applied.pids == [[11]])
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert counted == [10, 11]  # the search's round counted nothing


def test_a_search_reads_the_processes_in_each_namespace_once_by_the_links_of_its_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that made or went into a namespace without fork, exec or thread shows it in
    one of its links: a pid namespace only in pid_for_children, a time namespace in time or
    time_for_children."""
    links = {
        (10, "net"): "net:[5]",
        (11, "net"): "net:[6]",
        (12, "time_for_children"): "time:[7]",
        (13, "pid"): "pid:[9]",  # its own pid namespace: it did not make it, its parent did
        (14, "pid_for_children"): "pid:[9]",
        (15, "time"): "time:[7]",
    }
    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: list(range(10, 17)))
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", lambda pid: 3)
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.ns_link", lambda pid, link: links.get((pid, link)))
    r, _charged, applied = rereads(1.0)
    r.search([NsKey("net", 5), NsKey("time", 7), NsKey("pid", 9)])
    trio.run(r.count_fds)
    assert applied.pids == [[10, 12, 14, 15]]
    trio.run(r.count_fds)
    assert applied.pids == [[10, 12, 14, 15]]  # searched in one round; no count changed


def test_a_process_is_read_once_a_round_whether_its_count_changed_or_the_search_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = {10: 3, 11: 4, 12: 5}
    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: sorted(counts))
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", counts.__getitem__)
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.ns_link", lambda pid, link: f"net:[{pid}]")
    r, _charged, applied = rereads(1.0)
    trio.run(r.count_fds)
    counts.update({10: 4, 11: 5})  # both opened an fd; 11 on the namespace searched for
    r.search([NsKey("net", 11), NsKey("net", 12)])  # 12 is in one, its count unchanged
    trio.run(r.count_fds)
    assert applied.pids == [[10, 11, 12]]


def test_what_changed_in_a_chunk_is_read_before_the_next_chunk_and_its_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pace holds the round back, not what it found: a process whose count changed is
    read as soon as its chunk is counted."""
    pids = list(range(1, 2 * FD_COUNT_CHUNK + 1))
    first, second = 5, FD_COUNT_CHUNK + 5
    opened: set[int] = set()
    happened: list[str] = []

    def fd_count(pid: int) -> int:
        if pid == FD_COUNT_CHUNK + 1:
            happened.append("second chunk")
        return 3 + (pid in opened)

    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: pids)
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", fd_count)
    r, _charged, _applied = rereads(0.001)
    r.apply = lambda due, gone=(): happened.append(f"read {due}")  # type: ignore[method-assign,assignment]
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(r.count_fds, clock=clock)
    opened.update({first, second})
    happened.clear()
    trio.run(r.count_fds, clock=clock)
    assert happened == [f"read {[first]}", "second chunk", f"read {[second]}"]


def test_a_round_asked_for_begins_at_once_or_when_the_one_under_way_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's list names a namespace no read holds: the next round begins now, not
    FD_COUNTS_EVERY after the last one began."""
    r, _charged, _applied = rereads(1.0)
    began: list[float] = []

    async def round_of_counts() -> None:
        began.append(trio.current_time())
        await trio.sleep(1.0)  # a round under way

    monkeypatch.setattr(r, "count_fds", round_of_counts)
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(r._count_rounds)
            await trio.sleep(0.5)
            r.search([])  # during the first round
            await trio.sleep(8.0)
            r.search([])  # between rounds: the one that began at 7.0 ended at 8.0
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)
    start = began[0]
    assert [t - start for t in began] == [0.0, 1.0, 4.0, 7.0, 8.5]
