"""New namespaces answer at once, without waiting for the periodic refresh.

The daemons here refresh only every 60 s: whatever they show sooner came from
process events, from what a lookup reads of the caller, or from the caller's own
namespace links. The Refresher's own tests: a request for a sweep (lost process
events) shares one sweep, and abandons a paced one for one at full speed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from nsfs_fuse.sweeps import Pace, Refresher
from tests.support.daemon import Daemon, running_daemon
from tests.support.oracles import own_namespaces
from tests.support.procs import Procs
from tests.support.waiting import PATIENCE, run

SLOW = 60.0


@pytest.fixture
def slow(public_dir: Path, procs: Procs) -> Iterator[Daemon]:
    with running_daemon(public_dir / "slow", interval=SLOW) as daemon:
        yield daemon


def test_a_namespace_made_a_moment_ago_answers_at_once(slow: Daemon) -> None:
    # The shell line from the issue, word for word but for the mountpoint.
    script = f"unshare -n sleep 60 & sleep 0.1; cat {slow.mountpoint}/$(readlink /proc/$!/ns/net)/nstype; kill $!"
    result = run(["sh", "-c", script])
    assert (result.returncode, result.stdout, result.stderr) == (0, "net\n", "")


def test_a_listing_includes_the_callers_own_new_namespaces(slow: Daemon) -> None:
    script = f"readlink /proc/self/ns/user /proc/self/ns/net && ls {slow.mountpoint}"
    result = run(["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script])
    assert result.returncode == 0, result.stderr
    user, net, *listing = result.stdout.split()
    assert sorted(listing) == sorted({user, net} | own_namespaces(os.getpid(), "user", "net"))


class Scans:
    """A stand-in sweep that records when each call ran, and costs `cost` seconds of "CPU"."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.runs: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __call__(self, _pace: Pace) -> float:
        start = time.monotonic()
        time.sleep(self.cost)
        with self._lock:
            self.runs.append((start, time.monotonic()))
        return self.cost


def with_refresher(scans: Scans, misses: Callable[[Refresher], Awaitable[None]]) -> None:
    """Run the real refresher around `scans`, let `misses` ask it for rescans, then stop it."""

    async def main() -> None:
        refresher = Refresher(scans, interval=SLOW)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(refresher.run)
            await misses(refresher)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_concurrent_lookup_misses_share_one_scan() -> None:
    scans = Scans(cost=0.05)

    async def fifty_at_once(refresher: Refresher) -> None:
        await trio.sleep(0.1)
        async with trio.open_nursery() as misses:
            for _ in range(50):
                misses.start_soon(refresher.rescan)

    with_refresher(scans, fifty_at_once)
    assert len(scans.runs) == 1


def test_a_stream_of_misses_leaves_a_pause_after_every_scan() -> None:
    scans = Scans(cost=0.03)

    async def one_after_another(refresher: Refresher) -> None:
        for _ in range(10):
            await refresher.rescan()

    with_refresher(scans, one_after_another)
    assert len(scans.runs) == 10
    for (_start, end), (next_start, _) in zip(scans.runs, scans.runs[1:], strict=False):
        # Idle at least as long as the last sweep's CPU time: at most half the time sweeping.
        assert next_start - end >= scans.cost


class PacedSweeps:
    """A stand-in sweep of many chunks, each "costing" 10 ms of CPU, asking `pace` after each."""

    def __init__(self) -> None:
        self.ends: list[str] = []  # "done" or "abandoned", per sweep

    def __call__(self, pace: Pace) -> float:
        for chunk in range(1, 1001):
            if not pace(chunk * 0.01, 0.0):
                self.ends.append("abandoned")
                return chunk * 0.01
        self.ends.append("done")
        return 10.0


def test_a_rescan_abandons_a_paced_sweep_for_one_at_full_speed() -> None:
    sweeps = PacedSweeps()

    async def main() -> None:
        # At 1% of a core the first sweep would take 1000 s.
        refresher = Refresher(sweeps, interval=0.01, sweep_cpu=0.01)
        refresher.following_events = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(refresher.run)
            await trio.sleep(0.2)  # the paced sweep is under way
            with trio.fail_after(PATIENCE):
                await refresher.rescan()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert sweeps.ends[:2] == ["abandoned", "done"]
