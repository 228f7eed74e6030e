"""`lsnsfs`: the mount shown as lsns shows namespaces, as a tree, or as a Graphviz picture.

It reads only the mount and the reader's own /proc (for USER and COMMAND; with
`-t net` also NETNSID, from the kernel, as lsns does), so it works unprivileged and
inside containers, and lists what the mount lists: every namespace the reader may
see, including those no process is in (lsns misses them). Bad input is one line on
stderr and exit status 2; a mount that is not there, or output that cannot be written, 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .. import __version__, kernel, mountinfo
from ..model import NS_TYPES
from .formats import as_json, as_json_tree, dot, limits_table, table, tree_order, with_owners
from .mounted import DEFAULT_MOUNT, events_socket, read_entries
from .rows import proc_facts, rows_of
from .shown import cell

PROG = "lsnsfs"


class Failure(Exception):
    """One line on stderr, and this exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List the namespaces an nsfs mount shows, as lsns does, with what holds each.",
        epilog="HOLDERS: kind:count per kind of holder, and mount:PATH per bind mount (see `holders` in the README). "
        "CONTAINER: the containers and services holding it, as [POD_NAMESPACE/POD_NAME/]NAME.",
    )
    parser.add_argument("-t", "--type", action="append", default=[], metavar="TYPE", help="only namespaces of TYPE")
    parser.add_argument("-p", "--task", type=_pid, metavar="PID", help="only namespaces PID holds in any way")
    parser.add_argument(
        "-C",
        "--container",
        type=_path,
        metavar="NAME",
        help="only namespaces a container holds: by name, id (or its start) or pod (NAMESPACE/NAME)",
    )
    parser.add_argument("-J", "--json", action="store_true", help="JSON, with the fields of lsns -J and `holders`")
    parser.add_argument("-n", "--noheadings", action="store_true", help="no heading line")
    parser.add_argument("-T", "--tree", action="store_true", help="each namespace under its owning user namespace")
    parser.add_argument("--dot", action="store_true", help="the tree as Graphviz source (... | dot -Tsvg > ns.svg)")
    parser.add_argument(
        "--limits",
        action="store_true",
        help="namespaces per type and user against the kernel's limits (ENOSPC past them)",
    )
    parser.add_argument("-w", "--watch", action="store_true", help="follow namespaces coming (+) and going (-)")
    parser.add_argument("--existing", action="store_true", help="with --watch: first those listed now (=)")
    parser.add_argument(
        "--events", type=_path, metavar="SOCKET", help="with --watch: the daemon's socket, if not the mount's own"
    )
    parser.add_argument(
        "-m", "--mount", type=_path, default=DEFAULT_MOUNT, help=f"where nsfs is mounted (default {DEFAULT_MOUNT})"
    )
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"invalid PID argument: {text!r}")
    return int(text)


def _path(text: str) -> str:
    if not text:  # os.path.realpath("") would be the current directory
        raise argparse.ArgumentTypeError("an empty path")
    return text


def _usage_error(message: str) -> NoReturn:
    raise Failure(message, 2)


def check_mount(mount: str) -> str:
    """The mount's absolute path, or Failure saying in one line why it is not an nsfs mount."""
    path = os.path.realpath(mount)
    try:
        # Lines end at newlines only: a path may hold a \r, which mountinfo leaves as it is.
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            fstype = next((m.fstype for m in mountinfo.parse(f) if m.mountpoint == path), None)
    except OSError as exc:
        raise Failure(f"cannot read /proc/self/mountinfo: {exc.strerror}", 1) from None
    if fstype != "fuse.nsfs":
        raise Failure(f"{mount}: not an nsfs mount (mount one with: mount -t fuse nsfs {mount})", 1)
    return path


def run(argv: Sequence[str], out: Callable[[str], object]) -> int:
    parser = _parser()
    parser.error = _usage_error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    for nstype in args.type:
        if nstype not in NS_TYPES:
            raise Failure(f"unknown namespace type: {nstype}", 2)
    if args.watch:
        return watch(args.events or events_socket(os.path.realpath(args.mount)), args.type, args.existing, out)
    mount = check_mount(args.mount)
    links = args.tree or args.dot or args.limits
    try:
        entries = read_entries(mount, links=links, containers=not (args.dot or args.limits))
    except OSError as exc:
        raise Failure(f"{args.mount}: {exc.strerror}", 1) from None
    chosen = [
        e
        for e in entries
        if (not args.type or e.key.type in args.type)
        and (args.task is None or e.holds(args.task))
        and (args.container is None or e.in_container(args.container))
    ]
    net = "net" in args.type  # as lsns: NETNSID and NSFS with -t net
    if args.limits:
        out(limits_table(entries, chosen, kernel.namespace_limits(), not args.noheadings))
    elif args.dot:
        out(dot(with_owners(entries, chosen), proc_facts))
    elif args.tree:
        placed = tree_order(with_owners(entries, chosen))
        rows = rows_of([p.entry for p in placed], net)
        if args.json:
            out(as_json_tree([p.depth for p in placed], rows, net))
        else:
            out(table(rows, not args.noheadings, [p.drawn for p in placed], net))
    else:
        rows = rows_of(chosen, net)
        out(as_json(rows, net) if args.json else table(rows, not args.noheadings, net=net))
    return 0


def watch(path: str, types: Sequence[str], existing: bool, out: Callable[[str], object]) -> int:
    """Print the daemon's lines as they come, one flush each: until it stops (exit 1) or we are
    interrupted."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
        except OSError as exc:
            reason = exc.strerror or exc  # "AF_UNIX path too long" has no strerror
            raise Failure(f"cannot follow events at {path}: {reason} (is nsfs mounted?)", 1) from None
        with sock.makefile("r", encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("!"):
                    raise Failure(line[1:].strip(), 1)
                sign, _, name = line.rstrip("\n").partition(" ")
                if (sign != "=" or existing) and (not types or name.split(":", 1)[0] in types):
                    out(line)
                    _flush()
    raise Failure("the daemon stopped", 1)


class WriteError(Failure):
    """Standard output cannot be written: a full disk, say."""


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise WriteError(f"write error: {exc.strerror or exc}", 1) from None


def _flush() -> None:
    """Flush now, where a failure is one line, rather than at exit, where it is a traceback."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise WriteError(f"write error: {exc.strerror or exc}", 1) from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer then goes nowhere, quietly, at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    if sys.stdout is None:  # started with stdout closed
        print(f"{PROG}: write error: {os.strerror(errno.EBADF)}", file=sys.stderr)
        return 1
    try:
        status = run(sys.argv[1:] if argv is None else argv, _write)
        _flush()
        return status
    except WriteError as exc:
        _drop_stdout()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    except Failure as exc:
        print(cell(f"{PROG}: {exc}"), file=sys.stderr)  # one line, whatever a path it names holds
        return exc.status
    except BrokenPipeError:  # `lsnsfs | head`
        _drop_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
