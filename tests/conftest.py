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

from nsfs_fuse.readers.mounted import events_socket
from tests.support.daemon import Daemon, running_daemon
from tests.support.features import FEATURES, has
from tests.support.procs import Procs

UNIT = Path(__file__).parent / "unit"  # pure tests: no root, no /dev/fuse
LACKS = "this kernel lacks "  # how a test left out for a missing kernel feature is skipped


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(feature): runs only where the kernel has it (tests/support/features.py)")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Any test outside tests/unit mounts the real filesystem: without root and /dev/fuse, refuse
    to run. A test marked `needs(FEATURE)` is left out, and says why, where the running kernel
    lacks FEATURE (probed at the first ask); where it has it, the test runs like any other."""
    for item in items:
        for mark in item.iter_markers("needs"):
            (feature,) = mark.args
            if feature not in FEATURES:
                raise pytest.UsageError(f"{item.nodeid}: unknown kernel feature {feature!r}")
            if not has(feature):
                item.add_marker(pytest.mark.skip(reason=f"{LACKS}{feature}: {FEATURES[feature]}"))
    if all(item.path.is_relative_to(UNIT) for item in items):
        return
    problems = []
    if os.geteuid() != 0:
        problems.append("the tests must run as root (tests/unit alone need not)")
    if not os.path.exists("/dev/fuse"):
        problems.append("/dev/fuse is missing")
    if problems:
        raise pytest.UsageError("cannot run the FUSE tests: " + "; ".join(problems))


def _left_out(reporter: pytest.TerminalReporter) -> tuple[list[pytest.TestReport], list[pytest.TestReport]]:
    """The skipped tests: (those this kernel lacks a feature for, any other)."""
    lacking: list[pytest.TestReport] = []
    other: list[pytest.TestReport] = []
    for report in reporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        (lacking if reason.startswith(f"Skipped: {LACKS}") else other).append(report)
    return lacking, other


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a test that did not run: fail the session rather than pass quietly,
    unless the running kernel lacks what it needs."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _left_out(reporter)[1] and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which tests this kernel could not run, and what it lacks."""
    lacking, _ = _left_out(terminalreporter)
    if lacking:
        terminalreporter.section(f"left out on Linux {os.uname().release}: the kernel lacks what they need")
        for report in lacking:
            assert isinstance(report.longrepr, tuple)
            terminalreporter.line(f"{report.nodeid}: {str(report.longrepr[2]).removeprefix('Skipped: ' + LACKS)}")


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
        # The events sockets of daemons mounted in it, which one killed outright leaves behind.
        sockets = Path(events_socket(str(path.resolve()))).with_suffix("")
        for socket in sockets.parent.glob(f"{sockets.name}-*.events"):
            socket.unlink(missing_ok=True)


@pytest.fixture
def nsfs(public_dir: Path, procs: Procs) -> Iterator[Daemon]:
    """A daemon mounted on a temporary directory, refreshing every INTERVAL seconds."""
    with running_daemon(public_dir / "mnt") as daemon:
        yield daemon


@pytest.fixture
def baseline(nsfs: Daemon) -> int:
    """The daemon's fd count before the test makes anything."""
    return nsfs.fd_count()
