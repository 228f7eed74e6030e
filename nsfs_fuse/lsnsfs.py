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
import json
import os
import pwd
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, NoReturn

from . import __version__, errors, kernel, mountinfo
from .model import NS_TYPES, NsKey
from .mounted import DEFAULT_MOUNT, Listed, comm_of, events_socket, read_entries, summary, summary_words
from .shown import cell, dot_label, json_text

PROG = "lsnsfs"
COLUMNS = ("NS", "TYPE", "NPROCS", "PID", "USER", "HOLDERS", "COMMAND")
# With -t net, lsns adds NETNSID and NSFS after USER, and so does lsnsfs.
NET_COLUMNS = ("NS", "TYPE", "NPROCS", "PID", "USER", "NETNSID", "NSFS", "HOLDERS", "COMMAND")
_RIGHT = frozenset({"NS", "NPROCS", "PID", "NETNSID"})  # numbers, aligned right as lsns does


class Failure(Exception):
    """One line on stderr, and this exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Row:
    """One namespace as lsns shows it, plus what holds it."""

    ns: int
    type: str
    nprocs: int
    pid: int | None  # the lowest pid in it, as the reader's pid namespace numbers it
    user: str | None  # that process's user
    command: str | None  # that process's command line
    holders: tuple[str, ...]
    # With -t net (NetIds), for a network namespace: the id the reader's network namespace
    # gives it ("unassigned" if none), and where it is bind-mounted in the reader's mount
    # namespace: lsns's NETNSID and NSFS (-J: one path a line).
    netnsid: str | None = None
    nsfs: tuple[str, ...] = ()

    def cells(self) -> dict[str, str]:
        """The table's cells, each escaped as lsns escapes it (shown.cell): one line whatever
        a process put in its command line or name, or a path."""
        blank = "-"
        return {
            "NS": str(self.ns),
            "TYPE": self.type,
            "NPROCS": str(self.nprocs),
            "PID": blank if self.pid is None else str(self.pid),
            "USER": cell(self.user or blank),
            "NETNSID": self.netnsid or blank,
            "NSFS": ",".join(cell(path) for path in self.nsfs) or blank,
            "HOLDERS": cell(summary(self.holders) or blank),
            "COMMAND": cell(self.command or blank),
        }

    def as_json(self, net: bool = False) -> dict[str, Any]:
        """lsns -J's fields, with its names and types (`netnsid` and `nsfs` too if `net`, as
        lsns -J -t net), then `holders`: the file's lines. Text as it is, but for bytes that
        are not UTF-8 (shown.json_text): the output is valid JSON whatever they hold."""
        fields: dict[str, Any] = {
            "ns": self.ns,
            "type": self.type,
            "nprocs": self.nprocs,
            "pid": self.pid,
            "user": _json_or_none(self.user),
        }
        if net:
            fields |= {"netnsid": self.netnsid, "nsfs": json_text("\n".join(self.nsfs)) or None}
        holders = [json_text(line) for line in self.holders]
        return fields | {"command": _json_or_none(self.command), "holders": holders}


def _json_or_none(text: str | None) -> str | None:
    return None if text is None else json_text(text)


# What USER and COMMAND need of a process: its uid and command line (None if it is gone).
ProcessFacts = Callable[[int], tuple[int, str] | None]


def row_of(entry: Listed, facts: ProcessFacts) -> Row:
    pids = entry.process_pids()
    pid = min(pids) if pids else None
    user = command = None
    if pid is not None:
        found = facts(pid)
        if found is not None:
            uid, command = found
            user = user_name(uid)
        command = command or comm_of(entry.holders, pid)
    return Row(entry.key.inode, entry.key.type, len(pids), pid, user, command, entry.holders)


def proc_facts(pid: int) -> tuple[int, str] | None:
    """A process's uid and command line (empty if it has none: a kernel thread), read from
    the reader's /proc as ps and lsns do."""
    return _proc_facts(f"/proc/{pid}")


@errors.or_default("proc_read", None)
def _proc_facts(path: str) -> tuple[int, str] | None:
    uid = os.stat(path).st_uid
    with open(f"{path}/cmdline", "rb") as f:
        return uid, command_line(f.read(CMDLINE_READ))


# lsns reads this much of /proc/PID/cmdline (BUFSIZ) and drops the last byte read.
CMDLINE_READ = 8192


def command_line(raw: bytes) -> str:
    """The command line lsns shows for /proc/PID/cmdline's `raw` bytes: the NULs between the
    arguments as spaces, the last byte read dropped (the final NUL; of a longer command line,
    its 8,192nd byte), and bytes that are not UTF-8 kept as lone surrogates, for each output
    to escape its way (shown.py)."""
    return raw[:CMDLINE_READ][:-1].replace(b"\0", b" ").decode("utf-8", "surrogateescape")


class NetIds:
    """lsns's NETNSID and NSFS, as the reader would see them: the id its own network namespace
    gives each network namespace, asked of the kernel through an fd on it (the shown process's
    ns link, or one of its bind mounts, which anyone may open), and where it is bind-mounted
    in the reader's mount namespace. No id where the reader can open neither, or where the
    kernel will not say (no rtnetlink in a sandbox, say), as lsns leaves it blank."""

    def __init__(self) -> None:
        try:
            self._sock: socket.socket | None = kernel.rtnetlink()
        except OSError:
            self._sock = None
        self._mntns = _readlink("/proc/self/ns/mnt")

    def __enter__(self) -> NetIds:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._sock is not None:
            self._sock.close()

    def fill(self, row: Row, entry: Listed) -> Row:
        if row.type != "net":
            return row
        paths = entry.mount_paths(self._mntns)
        return replace(row, netnsid=self._id(row, paths), nsfs=tuple(paths))

    def _id(self, row: Row, paths: list[str]) -> str | None:
        if self._sock is None:
            return None
        through = ([f"/proc/{row.pid}/ns/net"] if row.pid is not None else []) + paths
        for path in through:
            fd = _open(path)
            if fd is None:
                continue
            try:
                if os.fstat(fd).st_ino != row.ns:
                    continue  # the pid is another process's by now
                nsid = kernel.netnsid(self._sock, fd)
            except OSError:
                return None  # the kernel will not say: blank, as lsns
            finally:
                os.close(fd)
            return "unassigned" if nsid == kernel.NSID_NOT_ASSIGNED else str(nsid)
        return None


@errors.or_default("readlink", "")
def _readlink(path: str) -> str:
    return os.readlink(path)


@errors.or_default("open", None)
def _open(path: str) -> int | None:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def rows_of(entries: Sequence[Listed], net: bool) -> list[Row]:
    """A row per entry; with NETNSID and NSFS if `net` (-t net)."""
    rows = [row_of(e, proc_facts) for e in entries]
    if not net:
        return rows
    with NetIds() as ids:
        return [ids.fill(row, entry) for row, entry in zip(rows, entries, strict=True)]


_users: dict[int, str] = {}


def user_name(uid: int) -> str:
    if uid not in _users:
        try:
            _users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _users[uid] = str(uid)
    return _users[uid]


# -- output -------------------------------------------------------------------


def table(rows: Sequence[Row], headings: bool = True, ns_cells: Sequence[str] | None = None, net: bool = False) -> str:
    """The columns aligned as lsns aligns them (NETNSID and NSFS too if `net`); `ns_cells`
    replaces the NS column (a tree)."""
    columns = NET_COLUMNS if net else COLUMNS
    cells = [row.cells() for row in rows]
    if ns_cells is not None:
        for cell, ns in zip(cells, ns_cells, strict=True):
            cell["NS"] = ns
    lines = [dict(zip(columns, columns, strict=True))] if headings else []
    lines += cells
    widths = {c: max(len(line[c]) for line in lines) for c in columns}
    right = _RIGHT - {"NS"} if ns_cells is not None else _RIGHT
    *padded, last = columns
    out = []
    for line in lines:
        words = [line[c].rjust(widths[c]) if c in right else line[c].ljust(widths[c]) for c in padded]
        # The last column as it is, as lsns prints it: not padded, nor stripped of the spaces
        # a command line may end with.
        out.append(" ".join([*words, line[last]]) + "\n")
    return "".join(out)


def as_json(rows: Iterable[Row], net: bool = False) -> str:
    return json.dumps({"namespaces": [row.as_json(net) for row in rows]}, indent=3) + "\n"


def as_json_tree(depths: Sequence[int], rows: Sequence[Row], net: bool = False) -> str:
    """lsns -J -T's shape: each namespace with the namespaces it owns as its `children`."""
    top: list[dict[str, Any]] = []
    levels = [top]
    nodes = []
    for depth, row in zip(depths, rows, strict=True):
        del levels[depth + 1 :]
        node = row.as_json(net)
        levels[depth].append(node)
        levels.append(node.setdefault("children", []))
        nodes.append(node)
    for node in nodes:
        if not node["children"]:
            del node["children"]
    return json.dumps({"namespaces": top}, indent=3) + "\n"


@dataclass(frozen=True, slots=True)
class Placed:
    """An entry's place in the tree: its depth, and its NS cell with the tree drawn in front."""

    entry: Listed
    depth: int
    drawn: str


def tree_order(entries: Sequence[Listed]) -> list[Placed]:
    """Depth first from each root, each namespace under the user namespace that owns it, with
    the tree drawn in front of its inode as lsns -T draws it. A root is an entry whose owner
    the reader cannot see (the initial user namespace; a container's own)."""
    by_key = {e.key: e for e in entries}
    children: dict[NsKey, list[Listed]] = {}
    roots = []
    for entry in entries:
        if entry.owner in by_key:
            children.setdefault(entry.owner, []).append(entry)
        else:
            roots.append(entry)
    out: list[Placed] = []

    def walk(entry: Listed, prefix: str, last: bool | None, depth: int) -> None:
        branch = "" if last is None else "└─" if last else "├─"
        out.append(Placed(entry, depth, f"{prefix}{branch}{entry.key.inode}"))
        below = children.get(entry.key, [])
        deeper = prefix + ("" if last is None else "  " if last else "│ ")
        for i, child in enumerate(below):
            walk(child, deeper, i == len(below) - 1, depth + 1)

    for root in roots:
        walk(root, "", None, 0)
    return out


def with_owners(entries: Sequence[Listed], chosen: Iterable[Listed]) -> list[Listed]:
    """`chosen` and the user namespaces above them: the skeleton a tree hangs on."""
    by_key = {e.key: e for e in entries}
    keep: set[NsKey] = set()
    for entry in chosen:
        key: NsKey | None = entry.key
        while key is not None and key in by_key and key not in keep:
            keep.add(key)
            key = by_key[key].owner
    return [e for e in entries if e.key in keep]


def dot(entries: Sequence[Listed], facts: ProcessFacts) -> str:
    """Graphviz source: a node per namespace (user namespaces as ellipses) with what holds it,
    an arrow from each user namespace to what it owns, a dashed one from a pid namespace to
    its children. Written here rather than through a DOT library: labels carry whatever a
    process named itself, and only dot_label quotes every such text right."""
    shown = {e.key for e in entries}
    out = ["digraph namespaces {", "\tgraph [rankdir=LR]", "\tnode [shape=box]"]
    for entry in entries:
        label = dot_label(label_lines(entry, row_of(entry, facts)))
        shape = "ellipse" if entry.key.type == "user" else "box"
        out.append(f"\t{_node_id(entry.key)} [label={label} shape={shape}]")
    for entry in entries:
        if entry.owner in shown:
            out.append(f"\t{_node_id(entry.owner)} -> {_node_id(entry.key)}")
        if entry.key.type == "pid" and entry.parent in shown:
            out.append(f"\t{_node_id(entry.parent)} -> {_node_id(entry.key)} [style=dashed]")
    return "\n".join([*out, "}"]) + "\n"


def label_lines(entry: Listed, row: Row) -> list[str]:
    """A node's label, line by line: the name, what holds it, and the process shown with the
    start of its command line (raw text: dot_label escapes it)."""
    lines = [entry.name, " ".join(summary_words(entry.holders)) or "(no holder seen)"]
    if row.command:
        lines.append(f"{row.pid} {row.command[:LABEL_COMMAND]}")
    return lines


LABEL_COMMAND = 40  # characters of a command line a node shows


def _node_id(key: NsKey) -> str:
    # Not the name itself: "net:[N]" would read as a node and a port in an edge.
    return f"{key.type}_{key.inode}"


# -- the command --------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List the namespaces an nsfs mount shows, as lsns does, with what holds each.",
        epilog="HOLDERS: kind:count per kind of holder, and mount:PATH per bind mount (see `holders` in the README).",
    )
    parser.add_argument("-t", "--type", action="append", default=[], metavar="TYPE", help="only namespaces of TYPE")
    parser.add_argument("-p", "--task", type=_pid, metavar="PID", help="only namespaces PID holds in any way")
    parser.add_argument("-J", "--json", action="store_true", help="JSON, with the fields of lsns -J and `holders`")
    parser.add_argument("-n", "--noheadings", action="store_true", help="no heading line")
    parser.add_argument("-T", "--tree", action="store_true", help="each namespace under its owning user namespace")
    parser.add_argument("--dot", action="store_true", help="the tree as Graphviz source (... | dot -Tsvg > ns.svg)")
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
    links = args.tree or args.dot
    try:
        entries = read_entries(mount, links=links)
    except OSError as exc:
        raise Failure(f"{args.mount}: {exc.strerror}", 1) from None
    chosen = [
        e for e in entries if (not args.type or e.key.type in args.type) and (args.task is None or e.holds(args.task))
    ]
    net = "net" in args.type  # as lsns: NETNSID and NSFS with -t net
    if args.dot:
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
