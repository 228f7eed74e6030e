"""The fd counts: a round over every process, paced to its share of a core, and what it reads again."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

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
    counts.update({11: 5, 13: 9})  # 11 opened one; 13 is new (no count to compare with)
    del counts[12]
    trio.run(r.count_fds)
    assert applied.pids == [[11]]


def test_a_kernel_that_counts_no_fds_stops_the_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nsfs_fuse.rereads.psutil.pids", lambda: [10, 11])
    monkeypatch.setattr("nsfs_fuse.rereads.discovery.fd_count", lambda pid: 0)
    r, _charged, applied = rereads(1.0)

    async def rounds() -> bool:
        with trio.move_on_after(2) as scope:  # a next round would start 3 s after the first
            await r._count_rounds()
        return scope.cancelled_caught

    assert trio.run(rounds) is False  # ended by itself
    assert applied.pids == []
