"""The signal table (every signal has a decision, and the README says it), the log file's reopening,
and signals raised in this process reaching a trio loop: before it runs, and while it does."""

from __future__ import annotations

import logging
import logging.handlers
import re
import signal
import sys
from pathlib import Path

import pytest
import trio

from nsfs_fuse.signals import ACTIONS, LEFT, Action, Signals, name, reopen

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_signal_is_handled_or_left_alone_for_a_stated_reason() -> None:
    everything = set(signal.valid_signals())  # every number but the C library's own (32, 33)
    assert not set(ACTIONS) & set(LEFT)
    assert set(ACTIONS) | set(LEFT) == everything, sorted(everything - set(ACTIONS) - set(LEFT))


def test_the_readme_table_says_what_each_signal_does() -> None:
    section = README.read_text().split("### Signals\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (`SIG.*?) \| (.*?) \|$", section, re.MULTILINE)
    documented: dict[str, str] = {}
    for signals, what in rows:
        for word in re.findall(r"`(SIG[A-Z0-9]+)`", signals):
            documented[word] = what.split()[0].rstrip(",:")
    wanted = {"unmounts": Action.END, "reopens": Action.REOPEN, "ignored": Action.IGNORE}
    named = {name(n): action for n, action in ACTIONS.items() if not signal.SIGRTMIN < n < signal.SIGRTMAX}
    assert {word: wanted.get(what) for word, what in documented.items() if what in wanted} == named
    left = {word for word, what in documented.items() if what not in wanted}
    assert left == {signal.Signals(signum).name for signum in LEFT}


@pytest.mark.parametrize(
    ("signum", "expected"),
    [
        (signal.SIGTERM, "SIGTERM"),
        (signal.SIGIO, "SIGIO"),
        (signal.SIGRTMIN, "SIGRTMIN"),
        (signal.SIGRTMIN + 1, "SIGRTMIN+1"),
        (signal.SIGRTMAX - 1, "SIGRTMIN+29"),
        (signal.SIGRTMAX, "SIGRTMAX"),
    ],
)
def test_names_are_those_kill_l_gives(signum: int, expected: str) -> None:
    assert name(signum) == expected


def test_a_log_file_moved_away_is_opened_again_at_its_path(tmp_path: Path) -> None:
    path, moved = tmp_path / "nsfs.log", tmp_path / "nsfs.log.1"
    handler = logging.FileHandler(path)
    record = logging.LogRecord("nsfs", logging.INFO, __file__, 1, "%s", ("before",), None)
    try:
        handler.emit(record)
        path.rename(moved)
        assert reopen(handler) == f"reopened the log file {path}"
        record.args = ("after",)
        handler.emit(record)
    finally:
        handler.close()
    assert (moved.read_text(), path.read_text()) == ("before\n", "after\n")


def test_a_log_file_that_cannot_be_opened_again_keeps_the_old_one(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    path = tmp_path / "logs" / "nsfs.log"
    handler = logging.FileHandler(path)
    try:
        (tmp_path / "logs").rename(tmp_path / "old")
        with pytest.raises(FileNotFoundError):
            reopen(handler)
        handler.emit(logging.LogRecord("nsfs", logging.INFO, __file__, 1, "still here", None, None))
    finally:
        handler.close()
    assert (tmp_path / "old" / "nsfs.log").read_text() == "still here\n"


def test_stderr_and_syslog_have_nothing_to_reopen() -> None:
    assert reopen(logging.StreamHandler(sys.stderr)) == "logging to stderr, nothing to reopen"
    syslog = logging.handlers.SysLogHandler(address=("127.0.0.1", 514))  # UDP: connects nowhere
    try:
        assert reopen(syslog) == "logging to syslog, nothing to reopen"
    finally:
        syslog.close()


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def test_signals_before_the_loop_wait_for_it_and_an_end_terminates_once(caplog: pytest.LogCaptureFixture) -> None:
    signals = Signals()
    terminated: list[bool] = []

    async def main() -> None:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                def terminate() -> None:
                    terminated.append(True)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(signals.follow, terminate)
                await trio.sleep(0.05)  # the loop is idle: the next signal must wake it
                signal.raise_signal(signal.SIGUSR1)
                signal.raise_signal(signal.SIGTERM)
                await trio.sleep_forever()

    with caplog.at_level(logging.DEBUG, logger="nsfs_fuse"), signals.installed():
        signal.raise_signal(signal.SIGUSR1)  # no loop yet: noted, not acted on
        signal.raise_signal(signal.SIGALRM)
        assert caplog.records == []
        signals.mounted = True
        trio.run(main)
        signal.raise_signal(signal.SIGINT)  # the loop is gone: noted, nothing more
    assert terminated == [True]
    assert messages(caplog) == [
        ("INFO", "SIGUSR1: ignored"),
        ("INFO", "SIGALRM: ignored"),
        ("DEBUG", "SIGUSR1: ignored again"),
        ("INFO", "SIGTERM: unmounting"),
    ]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back as it was
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_an_end_before_the_mount_ends_the_loop_as_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    signals = Signals()
    terminated: list[bool] = []

    async def main() -> None:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                def terminate() -> None:
                    terminated.append(True)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(signals.follow, terminate)

    with caplog.at_level(logging.INFO, logger="nsfs_fuse"), signals.installed():
        signal.raise_signal(signal.SIGQUIT)
        signal.raise_signal(signal.SIGINT)
        signals.act()
        trio.run(main)
    assert (signals.ending, terminated) == (signal.SIGQUIT, [True])
    assert messages(caplog) == [("INFO", "SIGQUIT: exiting before mounting"), ("INFO", "SIGINT: already ending")]
