"""The fd budget pins and mount-table readers share: counted, refused past its size, said once."""

from __future__ import annotations

import logging

import pytest

from nsfs_fuse.pins import FD_RESERVE, Budget, budget


def test_the_budget_leaves_the_reserve_under_the_soft_limit() -> None:
    assert budget(1024, unlimited=-1) == 1024 - FD_RESERVE
    assert budget(10, unlimited=-1) == 0
    assert budget(-1, unlimited=-1) == 1 << 30


def test_fds_are_taken_and_given_back(caplog: pytest.LogCaptureFixture) -> None:
    fds = Budget(3)
    assert fds.take() and fds.take(2)
    assert not fds.room
    with caplog.at_level(logging.WARNING, logger="nsfs_fuse"):
        assert not fds.take()
        assert not fds.take()
    assert len(caplog.records) == 1 and "fd limit reached (3 fds hold namespaces)" in caplog.records[0].getMessage()
    fds.give(2)
    assert fds.room and fds.used == 1
    assert not fds.take(3)
    assert fds.take(2) and fds.used == 3
