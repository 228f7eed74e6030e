"""The daemon's side of a sweep's helper process: faults the helper met are counted and logged by
the daemon, and what goes wrong in the daemon's own handling is not blamed on the helper."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Iterator

import pytest

from nsfs_fuse import errors
from nsfs_fuse.model import ProcessRead
from nsfs_fuse.sweeps import SweepProcess

# A helper that answers every sweep with one chunk: a failed read of pid 7, and the faults it met.
FAKE_HELPER = """
import pickle, struct, sys
from nsfs_fuse.model import ProcessRead
for line in sys.stdin.buffer:
    sys.stdin.buffer.readline()
    chunk = pickle.dumps(([ProcessRead(7, 1.0, failed=True)], [(8, 1.0)], [("readlink", 5, "/proc/7/ns/net", 3)]))
    sys.stdout.buffer.write(struct.pack("<I", len(chunk)) + chunk + struct.pack("<I", 0))
    sys.stdout.buffer.flush()
"""


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[SweepProcess]:
    monkeypatch.setattr(errors, "TALLY", errors.Tally())
    sweeps = SweepProcess(1, 1, set())
    sweeps._argv = [sys.executable, "-c", FAKE_HELPER]
    try:
        yield sweeps
    finally:
        sweeps.close()


def test_the_helpers_faults_are_counted_and_logged_by_the_daemon(
    helper: SweepProcess, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[tuple[list[ProcessRead], list[tuple[int, float]]]] = []

    def each(changed: list[ProcessRead], same: list[tuple[int, float]]) -> bool:
        got.append((changed, same))
        return True

    with caplog.at_level(logging.WARNING, logger="nsfs_fuse"):
        assert helper.sweep(each)
        assert helper.sweep(each)
    assert got == [([ProcessRead(7, 1.0, failed=True)], [(8, 1.0)])] * 2
    assert errors.TALLY.counts() == {("readlink", errno.EIO): 6}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["readlink of /proc/7/ns/net"]


def test_an_error_of_the_daemons_own_is_not_the_helpers(helper: SweepProcess) -> None:
    def each(changed: list[ProcessRead], same: list[tuple[int, float]]) -> bool:
        raise OSError(errno.ESTALE, "Stale file handle")

    with pytest.raises(OSError) as raised:
        helper.sweep(each)
    assert raised.value.errno == errno.ESTALE  # as raised, not "the sweep process failed"
    assert helper.sweep(lambda changed, same: True)  # the next sweep has a helper of its own
