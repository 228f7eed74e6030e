"""Checks before mounting, each failure one line (SetupError): that /proc is this machine's,
that the mountpoint can be mounted on, that every path and address an option names can be
used (the daemon in the background could only log a failure); and the mount's options.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import tempfile

from . import mountinfo
from .options import Args
from .readers.mounted import events_socket


class SetupError(Exception):
    """The mount cannot be made here: printed as one line, exit status 1."""


def _mounts() -> list[mountinfo.Mount]:
    # Lines end at newlines only: a path may hold a \r, which mountinfo leaves as it is.
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return list(mountinfo.parse(f))


def _mounted_at(path: str) -> mountinfo.Mount | None:
    """What is mounted exactly at `path`, if anything is: the last mount there, the one seen."""
    found = None
    for mount in _mounts():
        if mount.mountpoint == path:
            found = mount
    return found


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
    # A whole file system mounted there would be hidden: refused. A directory bind-mounted onto
    # it (its mount's root is that directory, not "/") is a place to mount on: a container's
    # volume is one (the DaemonSet's hostPath /run/namespaces), and the daemon mounts over it.
    mounted = _mounted_at(path)
    if mounted is not None and mounted.root == "/":
        raise SetupError(f"{mountpoint} is already mounted ({mounted.fstype}): umount it first")
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


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc)  # some OSErrors have no errno ("AF_UNIX path too long")


def _check_can_create(path: str, failure: str) -> None:
    """Whether a file can be made in `path`'s directory: one is, with no name, and let go."""
    try:
        with tempfile.TemporaryFile(dir=os.path.dirname(path)):
            pass
    except OSError as exc:
        raise SetupError(f"{failure}: {reason(exc)}") from None


def _check_appendable(path: str, failure: str) -> None:
    """The log is opened for appending, and made if missing (a FIFO needs its reader now)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC))
    except FileNotFoundError:
        _check_can_create(path, failure)
    except OSError as exc:
        raise SetupError(f"{failure}: {reason(exc)}") from None


def _check_replaceable(path: str, failure: str) -> None:
    """The metrics file is written aside in its directory, then renamed over `path`: which
    would take the place of whatever is there, a directory's or a device's too."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SetupError(f"{failure}: {reason(exc)}") from None
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
        raise SetupError(f"{failure}: {reason(exc)}") from None
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
        raise SetupError(f"{failure}: {reason(exc)}") from None


# Asked for auto_unmount, libfuse mounts through this program (looked for in /usr/bin, libfuse's
# directory on Debian, then in PATH), which then stays as the mount's watchdog: when the daemon's
# end of its socket closes without an unmount (SIGKILL, a fault), it unmounts a mount that no
# longer answers. What no signal handler can do. It leaves a mount that answers alone.
WATCHDOG = "fusermount3"


def watchdog_found() -> bool:
    return shutil.which(WATCHDOG, path=os.pathsep.join(["/usr/bin", os.environ.get("PATH", os.defpath)])) is not None


def fuse_options(args: Args, watchdog: bool) -> frozenset[str]:
    options = {"fsname=nsfs", "subtype=nsfs", "ro", "nosuid", "nodev", "noexec", "allow_other"}
    if watchdog:
        options.add("auto_unmount")
    return frozenset(options | args.extra_fuse)
