"""The one place that says what an OSError from /proc or nsfs means.

Processes, threads, fds and mounts come and go while the daemon reads them, so
some errors are answers, not faults (docs/design.md, "Errors"):

- gone: the process, thread, fd, mount or namespace is no longer there (or the
  path now leads somewhere else). Normal: skip that item, silently.
- denied: it exists but is not ours to see (a process in the middle of exec, a
  ptrace check the daemon fails). Skip that item too, but say so at debug level:
  a daemon that is denied everything is misconfigured, not looking at an empty
  machine.

Any other errno is a fault and propagates: a handler turns it into EIO and a log
line, a sweep into a log line and the previous snapshot. Errnos that are the
documented answer of one particular call (EPERM from NS_GET_PARENT at the top of
the hierarchy, ENOTTY from an ioctl the kernel lacks) are decided where that call
is made, not here.
"""

from __future__ import annotations

import enum
import errno
import functools
import logging
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

log = logging.getLogger("nsfs")

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


def skippable(exc: OSError, what: str) -> bool:
    """Whether the item `what` that raised `exc` should just be skipped (denied is logged)."""
    found = verdict(exc)
    if found is Verdict.DENIED:
        log.debug("%s: %s: skipped", what, exc.strerror)
    return found is not None


_P = ParamSpec("_P")
_T = TypeVar("_T")
_D = TypeVar("_D")


def or_default(default: _D) -> Callable[[Callable[_P, _T]], Callable[_P, _T | _D]]:
    """Decorate a read of one item: it returns `default` where the item is gone or denied.

    The first argument names the item in the debug line.
    """

    def decorate(read: Callable[_P, _T]) -> Callable[_P, _T | _D]:
        @functools.wraps(read)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T | _D:
            try:
                return read(*args, **kwargs)
            except OSError as exc:
                if skippable(exc, str(args[0]) if args else read.__name__):
                    return default
                raise

        return wrapper

    return decorate
