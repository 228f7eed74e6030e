"""What the daemon knows, as plain values: namespaces, their holders, entries, snapshots.

Nothing here touches the kernel, /proc or FUSE: discovery produces these values,
the registry keeps them, the filesystem shows them (docs/design.md, "Layers").

Holder kinds live in one table, `KINDS`: the order `holders` lists them in, the
fields of their line, and which callers may see that line. Adding a kind is one
row here and one sightings function in discovery. A holder that names a process
carries what the kernel asks before it lets a caller read that process (`Creds`).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from .mountinfo import escape, unescape

# The eight namespace types, in the order lsns and the kernel document them.
NS_TYPES: Final[tuple[str, ...]] = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")

# Only pid and user namespaces have parents (NS_GET_PARENT gives EINVAL for the rest).
HIERARCHICAL: Final[frozenset[str]] = frozenset({"pid", "user"})

# "net:[4026531833]": what readlink of /proc/PID/ns/net or of an fd on it prints.
# Digits only, no sign, no leading zeros (the kernel prints %u), at most 10 digits.
_NAME_RE: Final = re.compile(r"(cgroup|ipc|mnt|net|pid|time|user|uts):\[([1-9][0-9]{0,9})\]")


class NsKey(NamedTuple):
    """A namespace as the kernel names it: type and nsfs inode number."""

    type: str
    inode: int

    @property
    def name(self) -> str:
        return f"{self.type}:[{self.inode}]"


@functools.lru_cache(maxsize=512)
def parse_ns_name(text: str) -> NsKey | None:
    """The key for a kernel namespace name, or None if `text` is not one exactly.

    Cached: a scan parses the same few names over and over (every process names
    its eight namespaces, and most processes share them). Small on purpose: under
    churn a large cache fills with the names of namespaces long dead.
    """
    match = _NAME_RE.fullmatch(text)
    if match is None:
        return None
    inode = int(match.group(2))
    if inode > 0xFFFFFFFF:
        return None
    return NsKey(match.group(1), inode)


# -- holders ------------------------------------------------------------------


class HolderKind(enum.StrEnum):
    """What keeps a namespace alive; the value is the first word of its `holders` line."""

    PROCESS = "process"
    TASK = "task"
    FOR_CHILDREN = "for-children"
    FD = "fd"
    SOCKET = "socket"
    MOUNT = "mount"
    OWNER_OF = "owner-of"
    PARENT_OF = "parent-of"
    UNSEEN = "unseen"


class Audience(enum.Enum):
    """Which callers may see a holder's line."""

    PROCESS = (
        "callers whose pid namespace has the process (and the thread, for a task) and that the kernel"
        " lets read its /proc/PID/ns and /proc/PID/fd"
    )
    NAMESPACE = "callers that may see the namespace the line names"
    EVERYONE = "every caller that sees the entry"


class Creds(NamedTuple):
    """What the kernel asks of a process before it lets a caller read its /proc/PID/ns and
    /proc/PID/fd (ptrace read access, PTRACE_MODE_READ_FSCREDS), as /proc shows it from
    outside. Uids and gids as the daemon's user namespace numbers them.

    Part of every holder that names a process, so that a change of credentials is a
    change of the read (docs/design.md, "Who sees what").
    """

    uids: tuple[int, int, int]  # real, effective, saved
    gids: tuple[int, int, int]
    permitted: int  # its permitted capabilities: a caller without CAP_SYS_PTRACE over it needs them all
    owner: int  # who owns its /proc/PID/fd (mode 0500): the effective uid if dumpable, a root if not
    userns: NsKey | None  # its user namespace: CAP_SYS_PTRACE there lets a caller read it
    # None if it is dumpable. Otherwise (or where /proc cannot tell) the user namespace in
    # which the kernel also asks for CAP_SYS_PTRACE: the one it last exec'd in, which /proc
    # does not show; taken to be its own when its /proc files' owner is that namespace's
    # root, else the daemon's (the top), so that a doubt shows less.
    undumpable: NsKey | None


@dataclass(frozen=True, slots=True)
class Container:
    """The workload a process belongs to: a container (a pod's among them) or a systemd service.

    Found from what the host shows (workloads.py): the process's cgroup, or the monitor that
    started it, then the engine's own state for the name and pod."""

    # docker, containerd, cri-o, podman, runc, lxc, systemd-nspawn, systemd; kubernetes for a
    # pod's container whose engine's state was not found
    engine: str
    id: str  # the engine's id (a unit's name, for systemd)
    name: str = ""  # "" where the engine's state could not be read
    pod: str = ""  # "NAMESPACE/NAME" of a Kubernetes pod; "" where there is none

    def line(self) -> str:
        """Its line in a `containers` file: engine, id, then name and pod where known, escaped
        as `holders` escapes (an unknown name before a known pod is "-")."""
        words = [self.engine, self.id]
        if self.name or self.pod:
            words.append(self.name or "-")
        if self.pod:
            words.append(self.pod)
        return " ".join(escape(word) for word in words)

    @staticmethod
    def parse(line: str) -> Container | None:
        """The container a `containers` line names (`line`'s inverse); None if it names none."""
        words = [unescape(word) for word in line.split(" ")]
        if not 2 <= len(words) <= 4:
            return None
        engine, id_, *rest = words
        pod = rest[1] if len(rest) == 2 else ""
        name = "" if not rest or (pod and rest[0] == "-") else rest[0]
        return Container(engine, id_, name, pod)

    @property
    def label(self) -> str:
        """How a listing names it in one word: NAME (or the id's first 12 characters, as engines
        shorten it, where the name is not known), after its pod's NAMESPACE/NAME if it has one."""
        name = self.name or self.id[:12]
        return f"{self.pod}/{name}" if self.pod else name

    def is_(self, wanted: str) -> bool:
        """Whether `wanted` names it: its name, its id or the start of it, or its pod."""
        return bool(wanted) and (wanted in (self.name, self.id, self.pod) or self.id.startswith(wanted))


class Holder(NamedTuple):
    """One thing that holds one namespace. Which fields a kind uses is in its KINDS row."""

    kind: HolderKind
    pid: int = 0  # the process (host pid)
    num: int = 0  # a thread id (task) or an fd number (fd, socket)
    text: str = ""  # a command name (process, task), a mountpoint (mount) or the fd's link (socket: "socket:[N]")
    ns: str = ""  # a mount's mount namespace, or the namespace owned (owner-of, parent-of)
    creds: Creds | None = None  # kinds whose audience is PROCESS: the process's (the thread's, for a task)
    container: Container | None = None  # kinds whose audience is PROCESS: the process's workload, if any


class Field(enum.Enum):
    """A word of a holders line after the kind, and how it is shown to a caller."""

    PID = "pid"  # Holder.pid, as the caller's pid namespace numbers it
    TID = "tid"  # Holder.num, a thread id, as the caller's pid namespace numbers it
    NUM = "num"  # Holder.num as it is (an fd number)
    TEXT = "text"  # Holder.text, escaped
    NS = "ns"  # Holder.ns


@dataclass(frozen=True, slots=True)
class KindRow:
    audience: Audience
    fields: tuple[Field, ...]
    # A process or thread being in the namespace: process events follow it. A namespace
    # with no such holder is re-verified holder by holder (docs/design.md, "Freshness").
    membership: bool = False


_F = Field
# The order of this table is the order `holders` lists kinds in.
KINDS: Final[Mapping[HolderKind, KindRow]] = {
    HolderKind.PROCESS: KindRow(Audience.PROCESS, (_F.PID, _F.TEXT), membership=True),
    HolderKind.TASK: KindRow(Audience.PROCESS, (_F.PID, _F.TID, _F.TEXT), membership=True),
    HolderKind.FOR_CHILDREN: KindRow(Audience.PROCESS, (_F.PID,), membership=True),
    HolderKind.FD: KindRow(Audience.PROCESS, (_F.PID, _F.NUM)),
    HolderKind.SOCKET: KindRow(Audience.PROCESS, (_F.PID, _F.NUM)),
    HolderKind.MOUNT: KindRow(Audience.NAMESPACE, (_F.TEXT, _F.NS)),
    HolderKind.OWNER_OF: KindRow(Audience.NAMESPACE, (_F.NS,)),
    HolderKind.PARENT_OF: KindRow(Audience.NAMESPACE, (_F.NS,)),
    HolderKind.UNSEEN: KindRow(Audience.EVERYONE, ()),
}
_RANK: Final = {kind: rank for rank, kind in enumerate(KINDS)}

UNSEEN: Final = Holder(HolderKind.UNSEEN)


class Reader(Protocol):
    """Who reads a holders file: what it may see, and how its pid namespace numbers pids."""

    def sees_name(self, name: str) -> bool: ...

    def pid(self, host_pid: int) -> int | None:
        """`host_pid` in the reader's pid namespace; None if it is not there."""

    def reads(self, pid: int, creds: Creds | None) -> bool:
        """Whether the kernel would let the reader read /proc/PID/ns and /proc/PID/fd of process
        `pid` (host pid) with credentials `creds` (None: unknown, so no)."""


def holder_line(holder: Holder, reader: Reader) -> str | None:
    """The line `reader` sees for `holder`, or None if it may not see it."""
    row = KINDS[holder.kind]
    if row.audience is Audience.NAMESPACE and not reader.sees_name(holder.ns):
        return None
    pid = reader.pid(holder.pid) if row.audience is Audience.PROCESS else None
    if row.audience is Audience.PROCESS and (pid is None or not reader.reads(holder.pid, holder.creds)):
        return None  # outside the reader's pid namespace, or /proc would not show it the process
    words = [holder.kind.value]
    for field in row.fields:
        if field is Field.PID:
            words.append(str(pid))
        elif field is Field.TID:
            if (tid := reader.pid(holder.num)) is None:  # the thread is not in it
                return None
            words.append(str(tid))
        elif field is Field.NUM:
            words.append(str(holder.num))
        elif field is Field.TEXT:
            words.append(escape(holder.text))
        else:
            words.append(holder.ns)
    return " ".join(words)


def _holder_order(holder: Holder) -> tuple[int, int, int, str, str]:
    return (_RANK[holder.kind], holder.pid, holder.num, holder.text, holder.ns)


class Holders:
    """What holds one namespace, as of one snapshot: put in order only when someone reads it.

    An initial namespace has a holder per process; sorting thousands of them every time a
    process comes or goes would cost more than following it. Its direct holders come as
    the registry keeps them, immutable maps from each source (a pid, a mount namespace) to
    what that source holds: taking them costs nothing, however many there are.
    """

    __slots__ = ("_direct", "_parts", "_sorted")

    def __init__(
        self, parts: tuple[tuple[Holder, ...], ...] = (), direct: tuple[Mapping[Any, tuple[Holder, ...]], ...] = ()
    ) -> None:
        self._parts = parts
        self._direct = direct  # maps from a source (a pid, a mount namespace) to what it holds
        self._sorted: tuple[Holder, ...] | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Holders) and self._parts == other._parts and self._direct == other._direct

    def __hash__(self) -> int:
        return hash((self._parts, tuple(len(d) for d in self._direct)))

    def __iter__(self) -> Iterator[Holder]:
        """Every holder, in no order (a holder may come twice)."""
        for part in self._parts:
            yield from part
        for direct in self._direct:
            for part in direct.values():
                yield from part

    def kinds(self) -> set[HolderKind]:
        return {h.kind for h in self}

    def ordered(self) -> tuple[Holder, ...]:
        """Each holder once, in KINDS order, then by pid and number."""
        if self._sorted is None:
            self._sorted = tuple(sorted(set(self), key=_holder_order))
        return self._sorted

    def render(self, reader: Reader) -> str:
        """The `holders` file as `reader` sees it: one line per holder it may see."""
        lines = (holder_line(h, reader) for h in self.ordered())
        return "".join(f"{line}\n" for line in lines if line is not None)

    def containers(self, reader: Reader) -> list[Container]:
        """The containers of the holders `reader` may see (a container is shown only with a
        holder of it the reader may see), each once, by engine, pod, name and id."""
        found: set[Container] = set()
        for holder in self:  # in no order: the result is sorted, and thousands of holders need not be
            if holder.container is not None and holder.container not in found and holder_line(holder, reader):
                found.add(holder.container)
        return sorted(found, key=lambda c: (c.engine, c.pod, c.name, c.id))


# -- what discovery finds -----------------------------------------------------


class Sighting(NamedTuple):
    """A namespace, one holder of it, and a path that opens it while that holder lasts."""

    key: NsKey
    path: str  # for a socket, its fd: the namespace is opened through it (discovery.open_namespace)
    holder: Holder


@dataclass(frozen=True, slots=True)
class ProcessRead:
    """Everything one process holds, as read at one moment.

    A later read of the same pid replaces an earlier one whole, so a recycled pid
    or a process that exec'd, closed an fd or exited is never mixed with what was
    there before. An empty read is a process that is gone. A failed read found out
    nothing for sure (a fault, not an answer: errors.py): what was kept of the process
    stays, as of `read_at`.
    """

    pid: int
    read_at: float  # time.monotonic() before the first read: of two reads, the later one wins
    sightings: tuple[Sighting, ...] = ()  # process, task, for-children, fd and socket holders
    daemon_pins: frozenset[NsKey] = frozenset()  # another nsfs daemon's fds: its pins, not holders
    mnt: NsKey | None = None  # the process's mount namespace
    exiting: bool = False  # a zombie: it still holds its pid and user namespaces until reaped
    failed: bool = False  # a fault while reading it: nothing else here is meaningful


class Opened(NamedTuple):
    """A namespace just pinned, with what never changes about it (read through the pin)."""

    key: NsKey
    pin: int | None  # None past the fd limit
    handle: bytes | None
    ns_id: int | None
    owner: NsKey | None
    parent: NsKey | None
    creator_uid: int | None


class Listing(NamedTuple):
    """What pinning namespaces the kernel listed (Registry.listed) left to do."""

    unseen: list[NsKey]  # pinned, and no read holds them: a process may be in one all the same
    again: list[int]  # ids whose pinning met a fault: to be tried again


# -- what the filesystem shows ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One pinned namespace. Immutable: a new namespace with a recycled inode gets a new Entry."""

    key: NsKey
    serial: int  # never reused while the daemon runs; FUSE inodes derive from it
    pin: int | None  # the daemon's fd on the namespace; None past the fd limit (no `ns` link then)
    handle: bytes | None  # its nsfs file handle, on kernels that have them
    ns_id: int | None  # NS_GET_ID, on kernels that have it
    owner: NsKey | None  # owning user namespace (None for the initial one)
    parent: NsKey | None  # pid and user namespaces only
    creator_uid: int | None  # user namespaces only: NS_GET_OWNER_UID, a uid of the initial userns
    first_seen_ns: int  # wall clock, for mtime

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def anchor(self) -> NsKey | None:
        """The user namespace that decides who may see this entry."""
        return self.key if self.key.type == "user" else self.owner

    def relations(self) -> list[tuple[NsKey, Holder]]:
        """What this entry adds to the holders of its owner and parent."""
        found = []
        if self.owner is not None:
            kind = HolderKind.PARENT_OF if self.key.type == "user" else HolderKind.OWNER_OF
            found.append((self.owner, Holder(kind, ns=self.name)))
        if self.key.type == "pid" and self.parent is not None:
            found.append((self.parent, Holder(HolderKind.PARENT_OF, ns=self.name)))
        return found


def with_ancestors(entries: Mapping[NsKey, Entry], keys: Iterable[NsKey]) -> set[NsKey]:
    """`keys` (those that are entries) plus every owner and parent up to the initial namespaces:
    what a namespace keeps alive in the kernel."""
    found: set[NsKey] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key in found or (entry := entries.get(key)) is None:
            continue
        found.add(key)
        stack.extend(k for k in (entry.owner, entry.parent) if k is not None)
    return found


def charged_uid(user: NsKey | None, users: Mapping[NsKey, tuple[NsKey | None, int | None]]) -> int:
    """The uid of the top user namespace that the kernel counts a namespace against, for its
    limits (/proc/sys/user/max_*_namespaces: the count goes up through every user namespace
    above): `user` is the namespace's owner (itself, for a user namespace); `users` gives each
    user namespace known its parent and its creator's uid. Below the top, that is the creator
    of the top's child it descends from; a namespace the top owns is counted against whoever
    made it, which no namespace records: taken to be root (0), as making one takes
    CAP_SYS_ADMIN there."""
    uid = 0
    while user is not None and (known := users.get(user)) is not None:
        parent, creator = known
        if parent is None:
            break
        uid = uid if creator is None else creator
        user = parent
    return uid


@dataclass(frozen=True)
class Snapshot:
    """What the filesystem shows, as of one moment. Never changes once published.

    The registry publishes each snapshot from the last by changing what changed (its
    mappings are immutables.Map, which share what did not: publisher.Publisher): a process
    coming or going costs the same with ten entries or ten thousand. Any mapping will do
    here (the readers' side, which imports this module, does without the library).
    """

    entries: Mapping[str, Entry]
    by_serial: Mapping[int, Entry]
    holders: Mapping[str, Holders]  # by entry name
    generation: int  # changes when entries do (not when only holders do): views depend on nothing else
    users: Mapping[str, Entry]  # the user namespaces among `entries`

    def get(self, key: NsKey | None) -> Entry | None:
        return None if key is None else self.entries.get(key.name)

    @staticmethod
    def of(entries: Iterable[Entry], holders: Mapping[str, Holders], generation: int) -> Snapshot:
        by_name = {e.name: e for e in entries}
        users = {n: e for n, e in by_name.items() if e.key.type == "user"}
        return Snapshot(by_name, {e.serial: e for e in by_name.values()}, dict(holders), generation, users)


EMPTY: Final = Snapshot.of((), {}, generation=0)
