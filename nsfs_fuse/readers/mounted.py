"""The mount as its readers see it: entries read back from a mounted directory.

Used by the commands that show the mount (lsnsfs.py): they read only the mount and
the reader's own /proc, so they work unprivileged and inside containers, and show
exactly what the filesystem shows that reader. Nothing here knows the daemon.

A namespace may go while it is being read: an entry whose files vanish is left out,
as it would be from the next `ls`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import errors
from ..model import Container, HolderKind, NsKey, parse_ns_name
from ..mountinfo import unescape

DEFAULT_MOUNT = "/run/namespaces"
EVENTS_DIR = "/run/nsfs"


def events_socket(mountpoint: str) -> str:
    """Where the daemon of the mount at `mountpoint` (an absolute path) serves its events:
    /run/namespaces -> /run/nsfs/run-namespaces.events."""
    return os.path.join(EVENTS_DIR, (mountpoint.strip("/").replace("/", "-") or "-") + ".events")


@dataclass(frozen=True, slots=True)
class Listed:
    """One entry of the mount, as one reader read it."""

    key: NsKey
    holders: tuple[str, ...]  # the lines of its `holders` file, as they are
    containers: tuple[Container, ...] = ()  # its `containers` file
    owner: NsKey | None = None  # its `owner` link, if the reader sees one (read only if asked)
    parent: NsKey | None = None  # its `parent` link, likewise
    owner_uid: int | None = None  # a user namespace's `owner_uid` (read only if asked)

    @property
    def name(self) -> str:
        return self.key.name

    def process_pids(self) -> list[int]:
        """The pids of its `process` lines, in the file's order (ascending)."""
        return [int(line.split(" ", 2)[1]) for line in self.holders if line.startswith("process ")]

    def mount_paths(self, mntns: str) -> list[str]:
        """Where it is bind-mounted in mount namespace `mntns` (a `mnt:[N]` name), unescaped."""
        paths = []
        for line in self.holders:
            kind, _, rest = line.partition(" ")
            path, _, where = rest.rpartition(" ")
            if kind == HolderKind.MOUNT and where == mntns:
                paths.append(unescape(path))
        return paths

    def in_container(self, wanted: str) -> bool:
        """Whether a container it lists is `wanted`: by name, by id or the start of one (as
        engines take a short id), or by its pod (NAMESPACE/NAME)."""
        return any(c.is_(wanted) for c in self.containers)

    def holds(self, pid: int) -> bool:
        """Whether process `pid` holds it in any way: in it, a thread of it, its fd or socket."""
        for line in self.holders:
            kind, _, rest = line.partition(" ")
            if _pid_of(kind, rest) == pid:
                return True
        return False


def _pid_of(kind: str, rest: str) -> int | None:
    if kind not in _PID_KINDS:
        return None
    word = rest.split(" ", 1)[0]
    return int(word) if word.isdigit() else None


_PID_KINDS = frozenset(
    k.value for k in (HolderKind.PROCESS, HolderKind.TASK, HolderKind.FOR_CHILDREN, HolderKind.FD, HolderKind.SOCKET)
)


def summary(holders: Iterable[str]) -> str:
    """What holds a namespace, in short: `kind:count` per kind in the file's order, and a
    `mount:PATH` per bind mount (the path says more than a count), comma-separated.

    `process:3,fd:1,mount:/run/netns/blue`; `unseen`; empty if the reader sees no holder.
    """
    return ",".join(summary_words(holders))


def summary_words(holders: Iterable[str]) -> list[str]:
    """The words of the summary: a picture joins them with spaces, which no word holds (a
    path may hold a comma)."""
    counts: dict[str, int] = {}
    words: list[str] = []
    for line in holders:
        kind, _, rest = line.partition(" ")
        if kind == HolderKind.MOUNT:
            words.append(f"mount:{rest.split(' ', 1)[0]}")  # still escaped: no space in it
        elif kind == HolderKind.UNSEEN:
            words.append("unseen")
        else:
            if kind not in counts:
                words.append(kind)
            counts[kind] = counts.get(kind, 0) + 1
    return [f"{w}:{counts[w]}" if w in counts else w for w in words]


def comm_of(holders: Iterable[str], pid: int) -> str | None:
    """The command name a `process` line gives for `pid`."""
    prefix = f"process {pid} "
    for line in holders:
        if line.startswith(prefix):
            return unescape(line[len(prefix) :])
    return None


def entry_names(mount: str) -> list[NsKey]:
    """The entries of the mount's root, in its order: OSError if it cannot be listed."""
    return [key for name in os.listdir(mount) if (key := parse_ns_name(name)) is not None]


# Readers at once: each file costs a few FUSE requests, and with several in flight the daemon
# never waits for the next one (at 1,100 entries, 4 halve the time one takes).
READERS = 4


def read_entries(
    mount: str, links: bool = False, keys: Iterable[NsKey] | None = None, containers: bool = True
) -> list[Listed]:
    """Every entry of the mount (or those of `keys`), in order, with its holders, its containers
    if `containers`, and its `owner` and `parent` links (and a user namespace's `owner_uid`) if
    `links`. OSError if the mount cannot be listed."""
    chosen = entry_names(mount) if keys is None else list(keys)
    with ThreadPoolExecutor(READERS) as readers:
        found = readers.map(lambda key: _read_one(mount, key, links, containers), chosen)
        return [entry for entry in found if entry is not None]


def _read_one(mount: str, key: NsKey, links: bool, containers: bool) -> Listed | None:
    base = os.path.join(mount, key.name)
    holders = _read_text(os.path.join(base, "holders"))
    if holders is None:  # gone since it was listed
        return None
    found: tuple[Container, ...] = ()
    if containers:
        # Missing (a daemon from before the file, or gone since): no container.
        lines = holder_lines(_read_text(os.path.join(base, "containers")) or "")
        found = tuple(c for line in lines if (c := Container.parse(line)) is not None)
    owner = parent = None
    uid = None
    if links:
        owner = _link(os.path.join(base, "owner"))
        parent = _link(os.path.join(base, "parent")) if key.type in ("pid", "user") else None
        if key.type == "user":
            text = _read_text(os.path.join(base, "owner_uid"))
            uid = int(text) if text is not None and text.strip().isdigit() else None
    return Listed(key, holder_lines(holders), found, owner, parent, uid)


def holder_lines(text: str) -> tuple[str, ...]:
    """The lines of a `holders` file. Split at newlines only: the daemon escapes those in a
    name or path, but not the other characters str.splitlines() would split at (\x0c, \x1c,
    \x85, U+2028, ...), which a process may well have in its name."""
    lines = text.split("\n")
    if lines[-1] == "":  # after the last newline
        lines.pop()
    return tuple(lines)


_CHUNK = 1 << 22


@errors.or_default("read", None)
def _read_text(path: str) -> str | None:
    """The whole file in as few requests as the kernel allows: open, one read (the files report
    their size, so a short read is the end), close. Python's open().read() would add a stat and
    a read at the end: a FUSE request each, and a mount's worth of them shows."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = [os.read(fd, _CHUNK)]
        while len(parts[-1]) == _CHUNK:
            parts.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return b"".join(parts).decode("utf-8", errors="surrogateescape")


@errors.or_default("readlink", None)
def _link(path: str) -> NsKey | None:
    return parse_ns_name(os.path.basename(os.readlink(path)))
