"""Fixtures: a real nsfs mount per test, and the processes a test starts.

These tests need root and /dev/fuse, and they never skip: a machine that
cannot run them fails them, so a green run always means the filesystem ran.
tests/unit holds the pure tests, which need neither.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Daemon, Procs, running_daemon

UNIT = Path(__file__).parent / "unit"  # pure tests: no root, no /dev/fuse


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Any test outside tests/unit mounts the real filesystem: without root and /dev/fuse, refuse to run."""
    if all(item.path.is_relative_to(UNIT) for item in items):
        return
    problems = []
    if os.geteuid() != 0:
        problems.append("the tests must run as root (tests/unit alone need not)")
    if not os.path.exists("/dev/fuse"):
        problems.append("/dev/fuse is missing")
    if problems:
        raise pytest.UsageError("cannot run the FUSE tests: " + "; ".join(problems))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a test that did not run: fail the session rather than pass quietly."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def procs() -> Iterator[Procs]:
    started = Procs()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A temporary directory every user can traverse, as /run is: callers in user
    namespaces run as other uids and cannot enter pytest's private tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="nsfs-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def nsfs(public_dir: Path, procs: Procs) -> Iterator[Daemon]:
    """A daemon mounted on a temporary directory, refreshing every INTERVAL seconds."""
    with running_daemon(public_dir / "mnt") as daemon:
        yield daemon


@pytest.fixture
def baseline(nsfs: Daemon) -> int:
    """The daemon's fd count before the test makes anything."""
    return nsfs.fd_count()
