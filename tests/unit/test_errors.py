"""The error policy: which errnos mean gone, which denied, and what a fault costs (one item)."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterator

import pytest

from nsfs_fuse import errors


@pytest.fixture(autouse=True)
def tally(monkeypatch: pytest.MonkeyPatch) -> Iterator[errors.Tally]:
    """A tally of the test's own: what is first and what is counted does not depend on other tests."""
    fresh = errors.Tally()
    monkeypatch.setattr(errors, "TALLY", fresh)
    yield fresh


@pytest.mark.parametrize("code", [errno.ENOENT, errno.ESRCH, errno.ENOTDIR, errno.EINVAL, errno.EBADF, errno.ESTALE])
def test_gone(code: int) -> None:
    assert errors.verdict(OSError(code, "x")) is errors.Verdict.GONE


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_denied(code: int) -> None:
    assert errors.verdict(OSError(code, "x")) is errors.Verdict.DENIED


@pytest.mark.parametrize("code", [errno.EIO, errno.EMFILE, errno.ENOMEM, errno.ENOTTY, errno.EFAULT])
def test_a_fault_is_neither(code: int) -> None:
    assert errors.verdict(OSError(code, "x")) is None


@errors.or_default("readlink", "fallback")
def read(path: str, code: int) -> str:
    raise OSError(code, f"error {code}")


@errors.or_skip("readlink", "fallback")
def part(path: str, code: int) -> str:
    raise OSError(code, f"error {code}")


def test_or_default_skips_gone_silently(caplog: pytest.LogCaptureFixture, tally: errors.Tally) -> None:
    with caplog.at_level(logging.DEBUG, logger="nsfs_fuse"):
        assert read("/proc/1/fd/3", errno.ENOENT) == "fallback"
    assert caplog.records == []
    assert tally.counts() == {}


def test_or_default_skips_denied_and_says_so_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="nsfs_fuse"):
        assert read("/proc/1/fd/3", errno.EACCES) == "fallback"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "readlink of /proc/1/fd/3: error 13: skipped")
    ]


def test_a_fault_is_skipped_too_logged_once_per_operation_and_errno_and_counted(
    caplog: pytest.LogCaptureFixture, tally: errors.Tally
) -> None:
    with caplog.at_level(logging.DEBUG, logger="nsfs_fuse"):
        assert read("/proc/1/fd/3", errno.EIO) == "fallback"
        assert read("/proc/2/fd/4", errno.EIO) == "fallback"  # the same again: counted, not logged
        assert read("/proc/2/fd/4", errno.EMFILE) == "fallback"  # another errno: logged
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "readlink of /proc/1/fd/3: Input/output error (EIO): skipped, or kept as it was;"
            " further EIO from readlink are only counted",
        ),
        (
            logging.WARNING,
            "readlink of /proc/2/fd/4: Too many open files (EMFILE): skipped, or kept as it was;"
            " further EMFILE from readlink are only counted",
        ),
    ]
    assert tally.counts() == {("readlink", errno.EIO): 2, ("readlink", errno.EMFILE): 1}


def test_or_default_returns_what_the_read_returns() -> None:
    @errors.or_default("readlink", None)
    def fine(path: str) -> str:
        return path.upper()

    assert fine("abc") == "ABC"


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EACCES])
def test_a_part_gone_or_denied_is_just_missing(code: int, tally: errors.Tally) -> None:
    assert part("/proc/1/fd/3", code) == "fallback"
    assert tally.counts() == {}


def test_a_part_that_faults_costs_the_whole_item(tally: errors.Tally) -> None:
    with pytest.raises(errors.Skip) as raised:
        part("/proc/1/fd/3", errno.EIO)
    skip = raised.value
    assert (skip.op, skip.item, skip.errno, skip.answered) == ("readlink", "/proc/1/fd/3", errno.EIO, False)
    assert tally.counts() == {("readlink", errno.EIO): 1}


@pytest.mark.parametrize(
    ("code", "answered", "counted"),
    [
        (errno.ESTALE, True, {}),
        (errno.EPERM, True, {}),
        (errno.EOPNOTSUPP, True, {}),  # the call's documented answer: neither logged nor counted
        (errno.EIO, False, {("open_by_handle", errno.EIO): 1}),
    ],
)
def test_a_step_raises_skip_whatever_the_errno(
    code: int, answered: bool, counted: dict[tuple[str, int], int], tally: errors.Tally
) -> None:
    with pytest.raises(errors.Skip) as raised, errors.step("open_by_handle", "net:[1]", {errno.EOPNOTSUPP}):
        raise OSError(code, "x")
    assert (raised.value.errno, raised.value.answered) == (code, answered)
    assert tally.counts() == counted


def test_what_a_helper_process_counted_is_counted_and_logged_here(
    caplog: pytest.LogCaptureFixture, tally: errors.Tally
) -> None:
    helper = errors.Tally()
    assert helper.add("readlink", errno.EIO, "/proc/7/fd/1")
    assert not helper.add("readlink", errno.EIO, "/proc/8/fd/1")
    faults = helper.take()
    assert faults == [("readlink", errno.EIO, "/proc/7/fd/1", 2)]
    assert helper.take() == []  # each is handed over once
    with caplog.at_level(logging.WARNING, logger="nsfs_fuse"):
        errors.add_faults(faults)
        errors.add_faults([("readlink", errno.EIO, "/proc/9/fd/1", 1)])
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["readlink of /proc/7/fd/1"]
    assert tally.counts() == {("readlink", errno.EIO): 3}


def test_the_tally_counts_from_many_threads_at_once(tally: errors.Tally) -> None:
    def count() -> None:
        for _ in range(1000):
            tally.add("listdir", errno.EIO, "/proc/1/fd")

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tally.counts() == {("listdir", errno.EIO): 8000}
