"""A sweep's reader sends only what changed since its last read (sweeps.Memory), and the
registry notes the time of the rest (Holdings.touch). Whatever events read in between, and in
whatever order their reads arrive, what is kept must be what the latest read of each process
found: the same as if every read had been sent whole."""

from __future__ import annotations

import itertools
import random

import pytest

from nsfs_fuse.holdings import Holdings
from nsfs_fuse.model import Holder, HolderKind, NsKey, ProcessRead, Sighting
from nsfs_fuse.sweeps import Memory

KEYS = [NsKey("net", i) for i in range(1, 3)]  # few: a process often comes back to what it held


def process(pid: int, at: float, key: NsKey | None) -> ProcessRead:
    if key is None:
        return ProcessRead(pid, at)  # gone
    return ProcessRead(pid, at, (Sighting(key, f"/proc/{pid}/ns/net", Holder(HolderKind.PROCESS, pid, text="sh")),))


class World:
    """Processes, each in one of KEYS; every read of one is remembered, to know the latest."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = itertools.count(1)
        self.processes = {pid: rng.choice(KEYS) for pid in range(1, 13)}
        self.next_pid = 13
        self.latest: dict[int, tuple[float, NsKey | None]] = {}

    def read(self, pid: int) -> ProcessRead:
        found = process(pid, float(next(self.now)), self.processes.get(pid))
        if found.read_at > self.latest.get(pid, (0.0, None))[0]:
            self.latest[pid] = (found.read_at, self.processes.get(pid))
        return found

    def change(self, near: list[int]) -> None:
        pid = self.rng.choice(near if near and self.rng.random() < 0.5 else sorted(self.processes) or [self.next_pid])
        what = self.rng.random()
        if what < 0.2 and len(self.processes) > 1:
            self.processes.pop(pid, None)
        elif what < 0.4:
            self.processes[self.next_pid] = self.rng.choice(KEYS)
            self.next_pid += 1
        elif pid in self.processes:
            self.processes[pid] = self.rng.choice(KEYS)

    def expected(self, started: float) -> dict[NsKey, set[Holder]]:
        held: dict[NsKey, set[Holder]] = {}
        for pid, (read_at, key) in self.latest.items():
            if read_at >= started and key is not None:
                held.setdefault(key, set()).add(Holder(HolderKind.PROCESS, pid, text="sh"))
        return held


def kept(h: Holdings) -> dict[NsKey, set[Holder]]:
    held = {key: {holder for direct in h.direct(key) for part in direct.values() for holder in part} for key in KEYS}
    return {key: holders for key, holders in held.items() if holders}


@pytest.mark.parametrize("seed", range(300))
def test_what_is_kept_is_what_the_latest_read_found(seed: int) -> None:
    rng = random.Random(seed)
    world = World(rng)
    h = Holdings(lambda key, found: True, lambda key: None, lambda key: None)
    memory = Memory()
    late: list[ProcessRead] = []  # events' reads on their way
    touched = 0

    def events(near: list[int]) -> None:
        """Processes change and events read them (`near`: those a sweep just read, half the time)."""
        for _ in range(rng.randint(0, 3)):
            world.change(near)
        for _ in range(rng.randint(0, 2)):
            pool = near if near and rng.random() < 0.5 else [*world.processes, world.next_pid - 1]
            event = world.read(rng.choice(pool))
            if rng.random() < 0.5:
                late.append(event)
            else:
                h.read(event)
        while late and rng.random() < 0.5:
            h.read(late.pop(rng.randrange(len(late))))

    for _sweep in range(20):
        events([])
        started = float(next(world.now))
        memory.forget(h.take_dirty())
        pids = sorted(world.processes)
        for at in range(0, len(pids), 3):
            changed, same = memory.sort([world.read(pid) for pid in pids[at : at + 3]])
            events(pids[at : at + 3])
            for read in changed:
                h.read(read, swept=True)
            touched += len(same)
            for pid, read_at in same:
                if not h.touch(pid, read_at):
                    h.read(world.read(pid))  # read again, now, as the sweeper does
        while late:
            h.read(late.pop())
        memory.end_sweep()
        h.end_sweep(started)
        assert kept(h) == world.expected(started)
    assert touched > 0


def test_a_failed_read_is_always_sent_and_never_taken_for_the_last() -> None:
    memory = Memory()
    key = KEYS[0]
    assert memory.sort([process(1, 1.0, key)]) == ([process(1, 1.0, key)], [])
    failed = ProcessRead(1, 2.0, failed=True)
    assert memory.sort([failed]) == ([failed], [])
    assert memory.sort([failed]) == ([failed], [])  # not "the same as last time": the daemon must hear of it
    # What the daemon kept is the read before the failure, not what the reader last saw:
    # the next read is sent whole.
    assert memory.sort([process(1, 3.0, key)]) == ([process(1, 3.0, key)], [])
    assert memory.sort([process(1, 4.0, key)]) == ([], [(1, 4.0)])
