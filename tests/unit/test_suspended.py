"""The suspended namespaces as the prober sees them from the loop, without the registry's lock."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from nsfs_fuse.model import NsKey
from nsfs_fuse.suspended import Suspended


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads switch as often as CPython allows: a race shows within a few thousand calls."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_the_soonest_time_is_asked_safely_while_a_worker_suspends_and_releases(switching_often: None) -> None:
    suspended = Suspended(probed=None)  # type: ignore[arg-type]  # only its bookkeeping is used
    keys = [NsKey("net", 4026531000 + i) for i in range(64)]
    for i, key in enumerate(keys):
        suspended._due[key] = (i, float(i))
    stop = threading.Event()

    def worker() -> None:  # as Registry.listed or a read's settle, under the registry's lock
        while not stop.is_set():
            for key in keys[32:]:
                suspended.forget(key)
            for i, key in enumerate(keys[32:], 32):
                suspended._due[key] = (i, float(i))

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for _ in range(20000):
            assert suspended.soonest() == 0.0
    finally:
        stop.set()
        thread.join()
