"""What each signal does to the daemon (README, "Signals"), and how it reaches the FUSE loop.

A signal whose default action ends a process must never end the daemon with its mount in
place: the kernel would keep the mount, dead ("Transport endpoint is not connected"), until
someone unmounted it. So from the start of `service.serve` every such signal that can be
caught has a handler, chosen per signal as daemons do:

- END: what a service manager, a terminal or the kernel sends to say "stop" (SIGTERM,
  SIGINT, SIGQUIT; SIGXCPU, which comes before the SIGKILL of an exhausted CPU limit;
  SIGPWR, which says the power is failing). The daemon unmounts, closes every pin and
  exits 0.
- REOPEN: SIGHUP, which logrotate sends after moving the log file away: the log file is
  opened again at its path.
- IGNORE: signals with no use here (SIGUSR1, SIGALRM, the real-time signals, ...). The
  first of each number is logged, later ones only at debug level: something sending one
  in a loop must not fill the log, and one line is enough to see that it arrives and
  does nothing.

The handler only notes the signal; the daemon acts on it in ordinary code (`Signals.act`),
never inside the handler, which may run in the middle of a logging call. Before the FUSE
loop runs, serve() acts on what arrived at two points (after the first sweep, and as the
loop starts); in the loop, a task waits for them (`Signals.follow`). A process killed by
what cannot be caught (SIGKILL, a fault) is the mount's watchdog's to clean up (cli.py,
`WATCHDOG`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import logging.handlers
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Final

import trio

log = logging.getLogger(__name__)


class Action(enum.Enum):
    END = "end"
    REOPEN = "reopen"
    IGNORE = "ignore"


_REALTIME: Final = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)

ACTIONS: Final[dict[int, Action]] = {
    **dict.fromkeys(
        [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGXCPU, signal.SIGPWR],
        Action.END,
    ),
    signal.SIGHUP: Action.REOPEN,
    **dict.fromkeys(
        [
            signal.SIGUSR1,
            signal.SIGUSR2,
            signal.SIGALRM,
            signal.SIGVTALRM,
            signal.SIGPROF,
            signal.SIGIO,
            signal.SIGSTKFLT,
            *_REALTIME,
        ],
        Action.IGNORE,
    ),
}

# The signals left as they are, and why (tests/unit/test_signals.py checks that every signal
# is either here or in ACTIONS).
LEFT: Final[dict[int, str]] = {
    signal.SIGKILL: "cannot be caught",
    signal.SIGSTOP: "cannot be caught",
    # A fault of this process: its state cannot be trusted to unmount, and a handler that
    # returned would run the faulting instruction again. The watchdog unmounts.
    **dict.fromkeys(
        [signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS],
        "a fault: the process dies, the watchdog unmounts",
    ),
    signal.SIGPIPE: "ignored by Python: the write fails with EPIPE instead",
    signal.SIGXFSZ: "ignored by Python: the write fails with EFBIG instead",
    **dict.fromkeys([signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH], "ignored by default"),
    **dict.fromkeys([signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU], "stops the daemon until SIGCONT"),
}


def name(signum: int) -> str:
    """SIGTERM, SIGRTMIN+3: the name kill -l gives, for the log."""
    if signal.SIGRTMIN < signum < signal.SIGRTMAX:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
    return signal.Signals(signum).name


def reopen(handler: logging.Handler) -> str:
    """Open `handler`'s log file again at its path, if it writes to one; what was done, for the log.

    Raises OSError if the file cannot be opened: the handler keeps the file it had.
    """
    if isinstance(handler, logging.FileHandler):
        path = handler.baseFilename
        stream = open(path, "a", encoding=handler.encoding, errors=handler.errors)  # noqa: SIM115
        old = handler.setStream(stream)  # under the handler's lock: no line is cut in two
        if old is not None:
            old.close()
        return f"reopened the log file {path}"
    if isinstance(handler, logging.handlers.SysLogHandler):
        return "logging to syslog, nothing to reopen"
    if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
        return "logging to stderr, nothing to reopen"
    return "no log file to reopen"


class Signals:
    """The daemon's signal handlers, and what it does about each signal that arrived."""

    def __init__(self) -> None:
        self._arrived: deque[int] = deque()  # noted by the handler, not yet acted on
        self._token: trio.lowlevel.TrioToken | None = None  # the loop's, once `follow` runs
        self._wake = trio.Event()
        self._told: set[int] = set()  # ignored signals logged at info level already
        self._terminate: Callable[[], None] | None = None
        self.mounted = False  # whether an END unmounts, or ends the daemon before it mounts
        self.ending: int | None = None  # the first END signal, once one was acted on

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        """Handle every signal of ACTIONS in this block (the main thread's, as Python wants)."""
        before = {signum: signal.signal(signum, self._handler) for signum in ACTIONS}
        try:
            yield self
        finally:
            for signum, handler in before.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        # Python runs this in the main thread between two bytecodes, wherever that thread is
        # (a logging call, trio's scheduler): note the signal and wake the loop, nothing more.
        self._arrived.append(signum)
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._ring)  # trio allows this in a signal handler

    def _ring(self) -> None:
        self._wake.set()

    def act(self) -> None:
        """Act on every signal that arrived and was not acted on yet."""
        while self._arrived:
            signum = self._arrived.popleft()
            action = ACTIONS[signum]
            if action is Action.END:
                self._end(signum)
            elif action is Action.REOPEN:
                self._reopen(signum)
            else:
                self._ignore(signum)

    async def follow(self, terminate: Callable[[], None]) -> None:
        """Act on signals as they arrive, until cancelled; an END calls `terminate` (once)."""
        self._token = trio.lowlevel.current_trio_token()  # before looking: none is missed
        self._terminate = terminate
        if self.ending is not None:  # acted on before the loop ran
            terminate()
        while True:
            self.act()
            await self._wake.wait()
            self._wake = trio.Event()

    def _end(self, signum: int) -> None:
        if self.ending is not None:
            log.info("%s: already ending", name(signum))
            return
        self.ending = signum
        log.info("%s: %s", name(signum), "unmounting" if self.mounted else "exiting before mounting")
        if self._terminate is not None:
            self._terminate()

    def _reopen(self, signum: int) -> None:
        handlers = logging.getLogger(__package__).handlers  # the daemon's, on the package's logger (cli.py)
        if not handlers:
            log.info("%s: no log file to reopen", name(signum))
        for handler in handlers:
            try:
                done = reopen(handler)
            except OSError as exc:
                path = getattr(handler, "baseFilename", "")
                log.warning(
                    "%s: cannot reopen the log file %s: %s; still writing to the old one",
                    name(signum),
                    path,
                    exc.strerror,
                )
            else:
                log.info("%s: %s", name(signum), done)

    def _ignore(self, signum: int) -> None:
        if signum in self._told:
            log.debug("%s: ignored again", name(signum))
        else:
            self._told.add(signum)
            log.info("%s: ignored", name(signum))
