"""`nsfs [SOURCE] MOUNTPOINT [-f] [-d] [-o OPTIONS]`: check, mount, go to the background.

This is how mount.fuse3 runs us for both `mount -t fuse nsfs DIR` (no source)
and `mount -t fuse.nsfs nsfs DIR` (source first), with `-o` carrying whatever
mount(8) and fstab said. Bad input gets one line on stderr and a non-zero exit,
before anything is mounted.

Without -f the command returns only once the mount answers: the daemon runs in
a child, which reports "ready" (or why it failed) over a pipe, and the parent
then stats the mountpoint, which only succeeds once requests are being served.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from . import __version__, kernel
from .checks import WATCHDOG, SetupError, check_can_mount, check_paths, fuse_options, reason, watchdog_found
from .daemons import DAEMON_COMM, FUSE_DEVICE
from .options import HELP, USAGE, Args, UsageError, parse_args
from .readers.shown import cell

if TYPE_CHECKING:  # the service (pyfuse3, trio) is imported only when a daemon starts
    from .service import Config

log = logging.getLogger(__name__)
# Every module logs to a logger of its own (getLogger(__name__)) under the package's, which
# has the handler: `-o debug=PART` raises one part's alone.
PACKAGE_LOG: Final = logging.getLogger(__package__)


def config(mountpoint: str, args: Args) -> Config:
    from .service import Config

    watchdog = watchdog_found()
    if not watchdog:
        log.warning("no %s (Debian's fuse3): if this daemon is killed, %s stays mounted, dead", WATCHDOG, mountpoint)
    return Config(
        mountpoint,
        args.interval,
        args.sweep_cpu / 100,
        fuse_options(args, watchdog),
        args.metrics_address,
        args.metrics_file,
        args.events,
        args.listns,
    )


# Where the log goes in the background when neither -o logfile nor a syslog socket says.
FALLBACK_LOG = "/var/log/nsfs.log"
_FILE_FORMAT = logging.Formatter("%(asctime)s nsfs[%(process)d]: %(levelname)s: %(message)s")


def notify(state: str) -> None:
    """Tell a service manager that started us with Type=notify (sd_notify(3)'s protocol: one
    datagram to $NOTIFY_SOCKET, "@" standing for the abstract namespace). Nothing otherwise."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):
        return
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), target)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", address, exc.strerror)


# syslog(3)'s priorities, which the journal reads from "<N>" at the start of a line.
_PRIORITIES: Final = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """Each line begins with its record's priority, as sd-daemon(3) says, so that the journal
    files warnings as warnings (`journalctl -u nsfs -p warning`); a traceback's lines too."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITIES.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def _stderr_is_the_journal() -> bool:
    """systemd says which stream is the journal's in $JOURNAL_STREAM (device:inode)."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        stream = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (stream.st_dev, stream.st_ino) == (device, inode)


def _say_error(message: str) -> None:
    """The one line a failure to start ends with, on stderr (as an error, in the journal):
    one line whatever a path it names holds, its control characters escaped as lsnsfs does."""
    line = cell(message)
    print(f"<3>{line}" if _stderr_is_the_journal() else line, file=sys.stderr)


def _setup_logging(args: Args, handler: logging.Handler | None = None) -> None:
    """Log to `handler` (the background's, opened before the fork), else to stderr."""
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        formatter = _JournalFormatter if _stderr_is_the_journal() else logging.Formatter
        handler.setFormatter(formatter("nsfs: %(levelname)s: %(message)s"))
    PACKAGE_LOG.handlers[:] = [handler]
    PACKAGE_LOG.setLevel(logging.DEBUG if args.debug else logging.INFO)
    PACKAGE_LOG.propagate = False
    for part in args.debug_parts:
        logging.getLogger(f"{__package__}.{part}").setLevel(logging.DEBUG)


def _background_handler(args: Args) -> logging.Handler:
    """Where the background daemon logs: -o logfile, else syslog, else FALLBACK_LOG. Opened
    by the command, so that a log it cannot open is its one line, not the child's traceback."""
    if args.logfile:
        try:
            handler: logging.Handler = logging.FileHandler(args.logfile)
        except OSError as exc:
            raise SetupError(f"cannot log to {args.logfile}: {reason(exc)}") from None
        handler.setFormatter(_FILE_FORMAT)
        return handler
    if os.path.exists("/dev/log"):
        try:
            handler = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
        except OSError:  # a socket nobody reads any more
            return _file_handler(FALLBACK_LOG)
        handler.setFormatter(logging.Formatter("nsfs[%(process)d]: %(message)s"))
        return handler
    return _file_handler(FALLBACK_LOG)


def _file_handler(path: str) -> logging.Handler:
    try:
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:  # a read-only /var/log: nowhere left to say it
        return logging.NullHandler()
    handler.setFormatter(_FILE_FORMAT)
    return handler


def _daemon(args: Args, mountpoint: str, report: int) -> int:
    """The background child: serve, reporting readiness or failure on `report`."""

    reported = False

    def ready() -> None:
        nonlocal reported
        os.write(report, b"ready\n")
        os.close(report)
        reported = True  # its number may be another fd's from now on

    try:
        os.setsid()
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        from .service import serve

        serve(config(mountpoint, args), ready)
    except Exception as exc:
        log.exception("daemon failed")
        if not reported:
            with contextlib.suppress(OSError):
                os.write(report, f"cannot mount {mountpoint}: {exc}\n".encode())
        return 1
    return 0


def _background(args: Args, mountpoint: str) -> int:
    handler = _background_handler(args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            _setup_logging(args, handler)
            status = _daemon(args, mountpoint, write_end)
        finally:
            # Whatever happens in the child ends here: the command says it in one line, and
            # no traceback reaches the terminal it was started from.
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.readline().decode(errors="replace").strip()
    if message != "ready":
        os.waitpid(pid, 0)
        raise SetupError(message or f"the daemon exited before {mountpoint} was ready")
    try:
        os.stat(mountpoint)  # answered only once the daemon serves requests
    except OSError as exc:
        # The daemon died after mounting: leave no dead mount behind.
        subprocess.run(["umount", "--lazy", mountpoint], check=False, capture_output=True)
        raise SetupError(f"{mountpoint} does not answer: {exc.strerror}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.show == "help":
            print(HELP, end="")
            return 0
        if args.show == "version":
            print(f"nsfs {__version__}")
            return 0
        if args.debug:
            args.extra_fuse.add("debug")
        mountpoint = check_can_mount(args.mountpoint)
        check_paths(args, mountpoint)
        # Other daemons recognise us by this name, our root credentials and an open /dev/fuse,
        # and do not count our pins as holders (daemons.is_nsfs_daemon): from before the
        # first scan pins anything until the process ends.
        kernel.set_process_name(DAEMON_COMM)
        _fuse_mark = os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        kernel.raise_fd_limit()
        kernel.limit_malloc_arenas(1)
        if not args.foreground:
            return _background(args, mountpoint)
        from .service import serve

        _setup_logging(args)
        try:
            serve(config(mountpoint, args), lambda: notify("READY=1"))
        except (OSError, RuntimeError) as exc:
            raise SetupError(f"cannot mount {mountpoint}: {exc}") from None
        finally:
            notify("STOPPING=1")
        return 0
    except UsageError as exc:
        _say_error(f"nsfs: {exc} ({USAGE[7:]})")
        return 2
    except SetupError as exc:
        _say_error(f"nsfs: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
