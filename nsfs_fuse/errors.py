"""The one place that says what an OSError from /proc or nsfs means, and what it costs.

Processes, threads, fds and mounts come and go while the daemon reads them, so
some errors are answers, not faults (docs/design.md, "Errors"):

- gone: the process, thread, fd, mount or namespace is no longer there (or the
  path now leads somewhere else). Normal: skip that item, silently.
- denied: it exists but is not ours to see (a process in the middle of exec, a
  ptrace check the daemon fails). Skip that item too, but say so at debug level:
  a daemon that is denied everything is misconfigured, not looking at an empty
  machine.

Any other errno is a fault, and still costs one item only: it is logged once per
(operation, errno), naming the item, counted (`TALLY`, shown as the metric
`nsfs_errors_total`), and the item is skipped, or kept as it was. A fault never
propagates past its item: a sweep, a lookup, a probe or a listing goes on with
the other items. Where an item is read in several calls (a process: its links,
its fds, its sockets), a fault in one of them is raised as `Skip` to the code that
holds the whole item; a gone or denied answer there is just that part missing.

Errnos that are the documented answer of one particular call (EPERM from
NS_GET_PARENT at the top of the hierarchy, ENOTTY from an ioctl the kernel lacks)
are decided where that call is made, not here. Every call names its operation
with a short, stable name ("readlink", "open_by_handle", "ns_get_userns"): the
log line's and the metric's label.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final, ParamSpec, TypeVar

log = logging.getLogger(__name__)

GONE: Final = frozenset(
    {
        errno.ENOENT,  # exited, fd closed, link not there
        errno.ESRCH,  # exited (pidfd_open, pidfd_getfd, NS_GET_PID_IN_PIDNS)
        errno.ENOTDIR,  # a /proc path whose directory went away under it
        errno.EINVAL,  # readlink of what is no longer a link
        errno.EBADF,  # an fd closed between listing and reading it
        errno.ESTALE,  # a file handle whose namespace is gone
    }
)
DENIED: Final = frozenset({errno.EACCES, errno.EPERM})


class Verdict(enum.Enum):
    GONE = "gone"
    DENIED = "denied"


def verdict(exc: OSError) -> Verdict | None:
    """GONE or DENIED if `exc` is one of those answers; None if it is a fault."""
    if exc.errno in GONE:
        return Verdict.GONE
    if exc.errno in DENIED:
        return Verdict.DENIED
    return None


def errno_name(code: int) -> str:
    """The errno's symbolic name (EIO for 5): the metric's label, the same on every machine."""
    return errno.errorcode.get(code, str(code))


class Tally:
    """Faults counted by (operation, errno), from any thread: what `nsfs_errors_total` shows.

    A sweep's helper process counts its own; `take` hands over what it counted since it
    last did (with the first item of each), for the daemon to `add` to its own tally.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}
        self._unsent: dict[tuple[str, int], tuple[int, str]] = {}  # since `take`: count, first item

    def add(self, op: str, code: int, item: str, times: int = 1) -> bool:
        """Count `times` faults of `op` with errno `code`; True the first time this pair is met."""
        key = (op, code)
        with self._lock:
            first = key not in self._counts
            self._counts[key] = self._counts.get(key, 0) + times
            count, named = self._unsent.get(key, (0, item))
            self._unsent[key] = (count + times, named)
        return first

    def counts(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._counts)

    def take(self) -> list[tuple[str, int, str, int]]:
        """(operation, errno, first item, count) of each fault counted since the last take."""
        with self._lock:
            unsent, self._unsent = self._unsent, {}
        return [(op, code, item, count) for (op, code), (count, item) in unsent.items()]


TALLY: Final = Tally()


def fault(op: str, code: int, item: str, times: int = 1) -> None:
    """Count a fault; the first of each (operation, errno) is logged, naming the item."""
    if TALLY.add(op, code, item, times):
        name = errno_name(code)
        log.warning(
            "%s of %s: %s (%s): skipped, or kept as it was; further %s from %s are only counted",
            op,
            item,
            os.strerror(code),
            name,
            name,
            op,
        )


def add_faults(faults: Iterable[tuple[str, int, str, int]]) -> None:
    """Faults another process counted (`Tally.take`), counted and logged here as if met here."""
    for op, code, item, count in faults:
        fault(op, code, item, count)


def judge(exc: OSError, op: str, item: object) -> Verdict | None:
    """Apply the policy to `exc`, raised by operation `op` on `item`, which its caller skips or
    keeps as it was: gone is silent, denied a debug line, a fault (None) logged once per
    (operation, errno) and counted."""
    found = verdict(exc)
    if found is Verdict.DENIED:
        log.debug("%s of %s: %s: skipped", op, item, exc.strerror)
    elif found is None:
        fault(op, exc.errno or 0, str(item))
    return found


class Skip(Exception):
    """One call made for an item failed: whoever holds the whole item (a process's read, a
    namespace being pinned, a mount table) skips it, or keeps it as it was. Already judged.

    `answered`: the kernel's answer was that this part is not there (gone, denied, or that
    call's documented answer); False for a fault, which costs the whole item.
    """

    def __init__(self, op: str, item: str, code: int, answered: bool) -> None:
        super().__init__(f"{op} of {item}: {os.strerror(code)}")
        self.op = op
        self.item = item
        self.errno = code
        self.answered = answered


def _skip(exc: OSError, op: str, item: object, answers: Collection[int] = ()) -> Skip:
    """`exc` judged, as the Skip to raise; errnos in `answers` are that call's documented
    answers, neither logged nor counted."""
    code = exc.errno or 0
    answered = code in answers or judge(exc, op, item) is not None
    return Skip(op, str(item), code, answered)


@contextlib.contextmanager
def step(op: str, item: object, answers: Collection[int] = ()) -> Iterator[None]:
    """Around one call that is a step of reading or pinning `item`: an OSError becomes Skip."""
    try:
        yield
    except OSError as exc:
        raise _skip(exc, op, item, answers) from None


_P = ParamSpec("_P")
_T = TypeVar("_T")
_D = TypeVar("_D")


def or_default(op: str, default: _D) -> Callable[[Callable[_P, _T]], Callable[_P, _T | _D]]:
    """Decorate a read that is a whole item: it returns `default` on any OSError, judged.

    The first argument names the item.
    """

    def decorate(read: Callable[_P, _T]) -> Callable[_P, _T | _D]:
        @functools.wraps(read)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T | _D:
            try:
                return read(*args, **kwargs)
            except OSError as exc:
                judge(exc, op, args[0] if args else read.__name__)
                return default

        return wrapper

    return decorate


def or_skip(op: str, default: _D) -> Callable[[Callable[_P, _T]], Callable[_P, _T | _D]]:
    """Decorate a read that is one part of an item: it returns `default` where that part is
    gone or denied, and raises Skip on a fault, for the holder of the whole item.

    The first argument names the part.
    """

    def decorate(read: Callable[_P, _T]) -> Callable[_P, _T | _D]:
        @functools.wraps(read)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T | _D:
            try:
                return read(*args, **kwargs)
            except OSError as exc:
                failed = _skip(exc, op, args[0] if args else read.__name__)
                if failed.answered:
                    return default
                raise failed from None

        return wrapper

    return decorate
