"""The command line of `nsfs`, as mount.fuse3 passes it: the usage, the mount options, and
their checks (UsageError: one line, before anything is mounted)."""

from __future__ import annotations

import math
import os
import pkgutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

# What `-o debug=PART` may name: the daemon's modules, each logging to a logger of its own.
PARTS: Final = frozenset(
    info.name for info in pkgutil.iter_modules(sys.modules[__package__].__path__) if not info.ispkg
) - {"__main__"}

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
                       nolistns           do not follow the kernel's list of
                                          namespaces (listns, Linux 6.19+): only
                                          reads of processes and mount tables find
                                          namespaces (to compare)
                       debug              as -d
                       debug=PART         debug logging of one part of the daemon
                                          (a module: registry, pins, rereads, ...),
                                          in the background too; may be repeated
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


@dataclass
class Args:
    mountpoint: str = ""
    foreground: bool = False
    debug: bool = False
    debug_parts: set[str] = field(default_factory=set)  # modules logging at debug level
    interval: float = 1.0
    sweep_cpu: float = 1.0  # percent
    logfile: str | None = None
    metrics_address: tuple[str, int] | None = None
    metrics_file: str | None = None
    events: str | None = None
    listns: bool = True
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
    elif option == "nolistns":
        args.listns = False
    elif option == "debug":
        args.debug = args.foreground = True
    elif name == "debug" and eq:
        if value not in PARTS:
            raise UsageError(f"debug= names a part of the daemon ({', '.join(sorted(PARTS))}), not {value!r}")
        args.debug_parts.add(value)
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
