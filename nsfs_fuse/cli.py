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
import errno
import logging
import logging.handlers
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from . import __version__, kernel, mountinfo
from .discovery import DAEMON_COMM, FUSE_DEVICE
from .mounted import events_socket
from .shown import cell

if TYPE_CHECKING:  # the service (pyfuse3, trio) is imported only when a daemon starts
    from .service import Config

log = logging.getLogger("nsfs")

USAGE = "usage: nsfs [SOURCE] MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]"
HELP = f"""{USAGE}

Mount a directory that lists every namespace of the machine as TYPE:[INODE].

  -f, --foreground   stay in the foreground and log to stderr
  -d, --debug        foreground with debug logging (same as -o debug)
  -o OPTIONS         comma-separated mount options:
                       interval=SECONDS   pause between full sweeps (default 1)
                       sweep_cpu=PERCENT  most of a core sweeps and fd counts may
                                          use while process events are followed
                                          (default 1)
                       logfile=PATH       log here when in the background (default
                                          syslog, else /var/log/nsfs.log)
                       metrics=[ADDR:]PORT  serve Prometheus metrics at
                                          http://ADDR:PORT/metrics (every address
                                          if no ADDR)
                       metrics_file=PATH  write them to PATH every 10 s (for
                                          node_exporter's textfile collector)
                       events=PATH        serve namespaces coming and going at this
                                          unix socket (lsnsfs --watch; default
                                          /run/nsfs/MOUNTPOINT-WITH-DASHES.events)
                       debug              as -d
                     generic mount options (rw, ro, nosuid, defaults, ...) are
                     accepted; the filesystem is always read-only, nosuid, nodev
  -V, --version      print the version
  -h, --help         print this help

Usually run by mount(8):  mount -t fuse nsfs /run/namespaces
fstab:                    nsfs  /run/namespaces  fuse  defaults  0 0
"""

# Options mount(8), mount.fuse3, systemd or fstab may pass that change nothing here:
# the mount is always read-only, nosuid, nodev and noexec.
GENERIC_OPTIONS = frozenset(
    [
        "rw",
        "ro",
        "defaults",
        "auto",
        "noauto",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "nofail",
        "_netdev",
        "dev",
        "nodev",
        "suid",
        "nosuid",
        "exec",
        "noexec",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "lazytime",
        "nolazytime",
        "sync",
        "async",
        "dirsync",
        "mand",
        "nomand",
        "silent",
        "loud",
        "iversion",
        "noiversion",
        "symfollow",
        "nosymfollow",
        "allow_other",
        "default_permissions",
        "auto_unmount",  # on wherever fusermount3 is (WATCHDOG)
    ]
)
GENERIC_PREFIXES = ("x-", "comment=", "fsname=", "subtype=")

MIN_INTERVAL, MAX_INTERVAL = 0.01, 86400.0
PATH_OPTIONS = frozenset({"logfile", "metrics_file", "events"})  # also the names of Args' fields


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


class SetupError(Exception):
    """The mount cannot be made here: printed as one line, exit status 1."""


@dataclass
class Args:
    mountpoint: str = ""
    foreground: bool = False
    debug: bool = False
    interval: float = 1.0
    sweep_cpu: float = 1.0  # percent
    logfile: str | None = None
    metrics_address: tuple[str, int] | None = None
    metrics_file: str | None = None
    events: str | None = None
    show: str | None = None  # "help" or "version"
    extra_fuse: set[str] = field(default_factory=set)


def _apply_option(args: Args, option: str) -> None:
    name, eq, value = option.partition("=")
    if name == "interval" and eq:
        try:
            interval = float(value)
        except ValueError:
            interval = math.nan
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:  # also false for nan
            raise UsageError(f"interval must be seconds between {MIN_INTERVAL} and {MAX_INTERVAL:g}, not {value!r}")
        args.interval = interval
    elif name == "sweep_cpu" and eq:
        try:
            percent = float(value)
        except ValueError:
            percent = math.nan
        if not 0.1 <= percent <= 100:  # also false for nan
            raise UsageError(f"sweep_cpu must be a percentage between 0.1 and 100, not {value!r}")
        args.sweep_cpu = percent
    elif name in PATH_OPTIONS and eq:
        if not value:
            raise UsageError(f"{name} needs a path")
        # Absolute now: the daemon in the background runs in /, not where it was started.
        setattr(args, name, os.path.abspath(value))
    elif name == "metrics" and eq:
        args.metrics_address = parse_listen(value)
    elif option == "debug":
        args.debug = args.foreground = True
    elif option in GENERIC_OPTIONS or option.startswith(GENERIC_PREFIXES) or option == "":
        pass
    else:
        raise UsageError(f"unknown mount option {option!r}")


def parse_listen(text: str) -> tuple[str, int]:
    """`PORT`, `ADDR:PORT` or `[ADDR6]:PORT` -> (address, port); every address if none given."""
    address, colon, port = text.rpartition(":")
    if not colon:
        address = ""
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"metrics must be [ADDRESS:]PORT with a port between 1 and 65535, not {text!r}")
    return address or "0.0.0.0", int(port)


def parse_args(argv: Sequence[str]) -> Args:
    args = Args()
    positional: list[str] = []
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            args.show = "help"
        elif word in ("-V", "--version"):
            args.show = "version"
        elif word in ("-f", "--foreground"):
            args.foreground = True
        elif word in ("-d", "--debug"):
            args.debug = args.foreground = True
        elif word.startswith("-o"):
            options = word[2:] or next(words, None)
            if options is None:
                raise UsageError("-o needs a list of options")
            for option in options.split(","):
                _apply_option(args, option.strip())
        elif word == "--":
            positional.extend(words)
        elif word.startswith("-") and word != "-":
            raise UsageError(f"unknown argument {word!r}")
        else:
            positional.append(word)
    if args.show:
        return args
    if not positional:
        raise UsageError("no mountpoint given")
    if len(positional) > 2:
        raise UsageError(f"too many arguments: {' '.join(positional)}")
    args.mountpoint = positional[-1]  # a SOURCE before it, if any, is only a label
    if not args.mountpoint:  # realpath("") would be the current directory
        raise UsageError("the mountpoint is an empty path")
    return args


def _mounts() -> list[mountinfo.Mount]:
    # Lines end at newlines only: a path may hold a \r, which mountinfo leaves as it is.
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return list(mountinfo.parse(f))


def _mounted_at(path: str) -> str | None:
    """The fstype mounted exactly at `path`, if anything is."""
    return next((m.fstype for m in _mounts() if m.mountpoint == path), None)


def _filesystem_of(path: str) -> str | None:
    """The fstype of the mount `path` (absolute, no symlinks) is on: the longest mountpoint
    above it, the last one mounted there."""
    found, length = None, -1
    for mount in _mounts():
        above = path == mount.mountpoint or path.startswith(mount.mountpoint.rstrip("/") + "/")
        if above and len(mount.mountpoint) >= length:
            found, length = mount.fstype, len(mount.mountpoint)
    return found


def check_proc_is_ours() -> None:
    """SetupError unless /proc numbers processes as this process's pid namespace does.

    FUSE names each caller by its pid in the daemon's pid namespace, and the daemon reads the
    caller's namespaces from /proc/PID: under another pid namespace's /proc that pid is some
    other process, and the caller would be shown what that process may see.
    """
    try:
        shown = int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        shown = None
    if shown != os.getpid():
        raise SetupError(
            "/proc is not this pid namespace's: callers could not be told apart"
            " (mount a proc for it, as unshare --pid --fork --mount-proc does)"
        )


def check_can_mount(mountpoint: str) -> str:
    """The absolute mountpoint, or SetupError saying in one line why not."""
    if os.geteuid() != 0:
        raise SetupError("must be run as root: only root can read every process's namespaces")
    check_proc_is_ours()
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        raise SetupError(f"cannot open /dev/fuse: {exc.strerror} (is the fuse module loaded?)") from None
    path = os.path.realpath(mountpoint)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SetupError(f"mountpoint {mountpoint} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:  # a FUSE mount whose daemon is gone
            raise SetupError(f"{mountpoint} is a dead mount: run 'umount {mountpoint}' first") from None
        raise SetupError(f"cannot use {mountpoint}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SetupError(f"mountpoint {mountpoint} is not a directory")
    fstype = _mounted_at(path)
    if fstype is not None:
        raise SetupError(f"{mountpoint} is already mounted ({fstype}): umount it first")
    if _filesystem_of(path) == "proc":
        # The daemon reads /proc: mounted over /proc/sys it waited on its own mount for ever,
        # over /proc/1 it hid pid 1 from everyone.
        raise SetupError(f"mountpoint {mountpoint} is on a proc filesystem, which the daemon reads itself")
    return path


def check_paths(args: Args, mountpoint: str) -> None:
    """SetupError, in one line, for a path or address the daemon could not use, found before
    anything is mounted: in the background the daemon could only say so in its log. Each says
    what the daemon itself would say."""
    if args.logfile is not None:
        _check_appendable(args.logfile, f"cannot log to {args.logfile}")
    if args.metrics_file is not None:
        _check_replaceable(args.metrics_file, f"cannot write metrics to {args.metrics_file}")
    events = args.events or events_socket(mountpoint)
    _check_socket_path(events, f"cannot serve events at {events}", make_directory=args.events is None)
    if args.metrics_address is not None:
        address, port = args.metrics_address
        _check_listen(address, port, f"cannot mount {mountpoint}: metrics cannot listen on {address}:{port}")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)  # some OSErrors have no errno ("AF_UNIX path too long")


def _check_can_create(path: str, failure: str) -> None:
    """Whether a file can be made in `path`'s directory: one is, with no name, and let go."""
    try:
        with tempfile.TemporaryFile(dir=os.path.dirname(path)):
            pass
    except OSError as exc:
        raise SetupError(f"{failure}: {_reason(exc)}") from None


def _check_appendable(path: str, failure: str) -> None:
    """The log is opened for appending, and made if missing (a FIFO needs its reader now)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC))
    except FileNotFoundError:
        _check_can_create(path, failure)
    except OSError as exc:
        raise SetupError(f"{failure}: {_reason(exc)}") from None


def _check_replaceable(path: str, failure: str) -> None:
    """The metrics file is written aside in its directory, then renamed over `path`: which
    would take the place of whatever is there, a directory's or a device's too."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SetupError(f"{failure}: {_reason(exc)}") from None
    else:
        if not stat.S_ISREG(st.st_mode):
            raise SetupError(f"{failure}: it is not a regular file, and writing would replace it")
    _check_can_create(path, failure)


# A unix socket's path is at most this many bytes (sun_path, less its final NUL).
_SUN_PATH = 107


def _check_socket_path(path: str, failure: str, make_directory: bool) -> None:
    """The events socket replaces a stale socket, nothing else, and no daemon's live one. Only
    its default directory (/run/nsfs) is made."""
    if len(os.fsencode(path)) > _SUN_PATH:
        raise SetupError(f"{failure}: longer than a unix socket's {_SUN_PATH} bytes")
    try:
        if make_directory:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise SetupError(f"{failure}: {_reason(exc)}") from None
    if st is not None and not stat.S_ISSOCK(st.st_mode):
        raise SetupError(f"{failure}: it exists and is not a socket")
    if st is not None and _answers(path):
        raise SetupError(f"{failure}: another daemon serves it")
    _check_can_create(path, failure)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False  # stale: left by a daemon that was killed
    return True


def _check_listen(address: str, port: int, failure: str) -> None:
    """Bind where the metrics server will (its first address, address reuse on), and let go."""
    try:
        found = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, where = found[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
    except OSError as exc:
        raise SetupError(f"{failure}: {_reason(exc)}") from None


# Asked for auto_unmount, libfuse mounts through this program (looked for in /usr/bin, libfuse's
# directory on Debian, then in PATH), which then stays as the mount's watchdog: when the daemon's
# end of its socket closes without an unmount (SIGKILL, a fault), it unmounts a mount that no
# longer answers. What no signal handler can do. It leaves a mount that answers alone.
WATCHDOG = "fusermount3"


def _watchdog_found() -> bool:
    return shutil.which(WATCHDOG, path=os.pathsep.join(["/usr/bin", os.environ.get("PATH", os.defpath)])) is not None


def fuse_options(args: Args, watchdog: bool) -> frozenset[str]:
    options = {"fsname=nsfs", "subtype=nsfs", "ro", "nosuid", "nodev", "noexec", "allow_other"}
    if watchdog:
        options.add("auto_unmount")
    return frozenset(options | args.extra_fuse)


def config(mountpoint: str, args: Args) -> Config:
    from .service import Config

    watchdog = _watchdog_found()
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
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if args.debug else logging.INFO)
    log.propagate = False


def _background_handler(args: Args) -> logging.Handler:
    """Where the background daemon logs: -o logfile, else syslog, else FALLBACK_LOG. Opened
    by the command, so that a log it cannot open is its one line, not the child's traceback."""
    if args.logfile:
        try:
            handler: logging.Handler = logging.FileHandler(args.logfile)
        except OSError as exc:
            raise SetupError(f"cannot log to {args.logfile}: {_reason(exc)}") from None
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
        # and do not count our pins as holders (discovery.is_nsfs_daemon): from before the
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
