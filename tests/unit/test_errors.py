"""The error policy: which errnos mean gone, which denied, and what is a fault."""

from __future__ import annotations

import errno
import logging

import pytest

from nsfs_fuse import errors


@pytest.mark.parametrize("code", [errno.ENOENT, errno.ESRCH, errno.ENOTDIR, errno.EINVAL, errno.EBADF, errno.ESTALE])
def test_gone(code: int) -> None:
    assert errors.verdict(OSError(code, "x")) is errors.Verdict.GONE


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_denied(code: int) -> None:
    assert errors.verdict(OSError(code, "x")) is errors.Verdict.DENIED


@pytest.mark.parametrize("code", [errno.EIO, errno.EMFILE, errno.ENOMEM, errno.ENOTTY, errno.EFAULT])
def test_a_fault_is_neither(code: int) -> None:
    assert errors.verdict(OSError(code, "x")) is None


@errors.or_default("fallback")
def read(path: str, code: int) -> str:
    raise OSError(code, f"error {code}")


def test_or_default_skips_gone_silently(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="nsfs"):
        assert read("/proc/1/fd/3", errno.ENOENT) == "fallback"
    assert caplog.records == []


def test_or_default_skips_denied_and_says_so_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="nsfs"):
        assert read("/proc/1/fd/3", errno.EACCES) == "fallback"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.DEBUG, "/proc/1/fd/3: error 13: skipped")]


def test_or_default_lets_faults_through() -> None:
    with pytest.raises(OSError) as raised:
        read("/proc/1/fd/3", errno.EMFILE)
    assert raised.value.errno == errno.EMFILE


def test_or_default_returns_what_the_read_returns() -> None:
    @errors.or_default(None)
    def fine(path: str) -> str:
        return path.upper()

    assert fine("abc") == "ABC"
