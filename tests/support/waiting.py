"""Patience: how long tests wait (scaled for slow guests: NSFS_TEST_SLOWDOWN), waiting for a
condition, running a command, reading the mount table."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

INTERVAL = 0.2  # refresh period of test daemons: entries must go within it


# Test daemons may sweep faster than the default 1% of a core: what only a sweep
# finds (fds, mounts, sockets) is then found within seconds on a test machine.
SWEEP_CPU = 25


PATIENCE = 10.0  # how long a test waits for what should take one interval


# Every wait above is multiplied by this: a guest kernel under emulation
# (`make test-kernel`) runs Python 20-40x slower, and sets it, rather than each test.
SLOWDOWN = float(os.environ.get("NSFS_TEST_SLOWDOWN", "1"))


_T = TypeVar("_T")


def wait_until(predicate: Callable[[], _T], what: str, timeout: float = PATIENCE) -> _T:
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def mounts() -> dict[str, str]:
    """mountpoint -> fstype, from this process's mountinfo.

    The table is the machine's: a path in it need not be UTF-8 (another test run's mount,
    say), and its bytes are kept as they are (surrogateescape) rather than failing the read.
    """
    result = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            result[fields[4]] = fields[fields.index("-") + 1]
    return result


def is_mounted(path: Path | str) -> bool:
    return str(path) in mounts()


def run(argv: Sequence[str], timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        argv,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout * SLOWDOWN,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
