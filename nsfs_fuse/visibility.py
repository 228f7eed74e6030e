"""Who is asking, and what they may see.

The rule (docs/design.md, "Who sees what"): an entry is visible to a caller iff its anchor,
the namespace itself for a user namespace and its owning user namespace
otherwise, is the caller's user namespace or a descendant of it. So every caller
in the initial user namespace (root, and a container that has no user namespace of
its own) sees everything, and a container with one its own subtree: the same scope
in which the kernel answers NS_GET_USERNS and NS_GET_PARENT rather than EPERM.

A view is worked out once per (snapshot, user namespace) and reused by every
request until the next snapshot: requests cost a dict lookup, not a table walk.

Within an entry, a holder line that names a process is shown only to a caller the
kernel would let read that process's /proc/PID/ns and /proc/PID/fd (`Ptrace`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from . import errors
from .kernel import OVERFLOW_UID
from .model import Creds, Entry, NsKey, Snapshot, parse_ns_name

# The capabilities the kernel's checks on reading another process's /proc ask for by name
# (<linux/capability.h>).
CAP_DAC_OVERRIDE: Final = 1
CAP_DAC_READ_SEARCH: Final = 2
CAP_SYS_PTRACE: Final = 19
_DAC: Final = 1 << CAP_DAC_OVERRIDE | 1 << CAP_DAC_READ_SEARCH


class View:
    """The entries one user namespace may see in one snapshot.

    Which user namespaces are the caller's (its own and those below it) is worked out
    once per snapshot from the snapshot's user namespaces alone; whether it sees a name
    is then one look-up, and the listing, in order, is worked out when something lists.
    A request that looks up one name never pays for the whole table.
    """

    __slots__ = ("_allowed", "_entries", "_listing", "_top", "userns")

    def __init__(
        self,
        userns: NsKey | None,
        entries: Mapping[str, Entry] | None = None,
        allowed: frozenset[NsKey] = frozenset(),
        top: bool = False,
    ) -> None:
        self.userns = userns
        self._entries: Mapping[str, Entry] = {} if entries is None else entries
        self._allowed = allowed  # the user namespaces whose entries it sees
        self._top = top  # it also sees entries whose owner is out of the daemon's reach
        self._listing: tuple[Entry, ...] | None = None

    def sees(self, key: NsKey | None) -> bool:
        return key is not None and self.sees_name(key.name)

    def sees_name(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and self._sees(entry)

    def _sees(self, entry: Entry) -> bool:
        anchor = entry.anchor
        return anchor in self._allowed if anchor is not None else self._top

    @property
    def listing(self) -> tuple[Entry, ...]:
        """What it sees, in listing order."""
        if self._listing is None:
            seen = (e for e in self._entries.values() if self._sees(e))
            self._listing = tuple(sorted(seen, key=lambda e: (e.key.inode, e.key.type)))
        return self._listing


NOTHING = View(userns=None)


class Views:
    """Per-snapshot cache of views, keyed by the caller's user namespace."""

    def __init__(self) -> None:
        self._generation = -1
        self._views: dict[NsKey, View] = {}

    def get(self, snapshot: Snapshot, userns: NsKey | None) -> View:
        if userns is None:
            return NOTHING
        if snapshot.generation != self._generation:
            self._generation = snapshot.generation
            self._views = {}
        view = self._views.get(userns)
        if view is None:
            view = self._views[userns] = compute_view(snapshot, userns)
        return view


def compute_view(snapshot: Snapshot, userns: NsKey) -> View:
    """Apply the visibility rule for a caller in `userns` to `snapshot`: costs what its user
    namespaces number."""
    caller = snapshot.get(userns)
    if caller is None:
        # Not in the index: nothing in it can descend from a namespace it lacks.
        return View(userns)
    children: dict[NsKey, list[NsKey]] = {}
    for entry in snapshot.users.values():
        if entry.parent is not None:
            children.setdefault(entry.parent, []).append(entry.key)
    allowed: set[NsKey] = set()
    stack = [userns]
    while stack:
        key = stack.pop()
        if key not in allowed:
            allowed.add(key)
            stack.extend(children.get(key, ()))
    # An entry whose owner is out of the daemon's reach belongs to the top.
    return View(userns, snapshot.entries, frozenset(allowed), top=caller.parent is None)


def _caller_ns(pid: int, nstype: str) -> NsKey | None:
    if pid <= 0:  # the kernel could not map the caller into the daemon's pid namespace
        return None
    link = _readlink(f"/proc/{pid}/ns/{nstype}")  # None: exited mid-request, so it sees nothing
    key = None if link is None else parse_ns_name(link)
    return key if key is not None and key.type == nstype else None


@errors.or_default("readlink", None)
def _readlink(path: str) -> str | None:
    return os.readlink(path)


@errors.or_default("uid_map_read", None)
def _read_text(path: str) -> str | None:
    with open(path, encoding="ascii") as f:
        return f.read()


def caller_userns(pid: int) -> NsKey | None:
    """The user namespace of the thread making a request; None if it cannot be told."""
    return _caller_ns(pid, "user")


def caller_pidns(pid: int) -> NsKey | None:
    """The pid namespace of the thread making a request: whose pids it understands."""
    return _caller_ns(pid, "pid")


def map_uid(pid: int, kuid: int) -> int | None:
    """`kuid` (a uid of the initial user namespace) as the caller sees it, like NS_GET_OWNER_UID.

    Read from the daemon (in the initial user namespace), /proc/PID/uid_map gives
    each range's outside uids in the initial namespace, whatever the depth.
    None if the caller is gone.
    """
    text = _read_text(f"/proc/{pid}/uid_map")
    if text is None:
        return None
    for line in text.splitlines():
        inside, outside, count = (int(x) for x in line.split())
        if outside <= kuid < outside + count:
            return inside + kuid - outside
    return OVERFLOW_UID


@dataclass(frozen=True, slots=True)
class Caller:
    """What the kernel asks of a calling thread before it lets it read another process's
    /proc/PID/ns and /proc/PID/fd: read per request from its /proc/TID/status. Uids and gids
    as the daemon's user namespace numbers them, as in `model.Creds`."""

    tgid: int  # its process, which may always read itself
    fsuid: int  # the ptrace read check compares the filesystem uid and gid (PTRACE_MODE_FSCREDS)
    fsgid: int
    euid: int  # a user namespace's creator, by effective uid, has every capability in it
    caps: int  # its effective capabilities: a process it may read has none it lacks
    userns: NsKey
    confined: bool = False  # an LSM confines it (caller_confined): it may read no other process, as far as we know


@dataclass(slots=True)
class Ptrace:
    """Whether one caller may read processes' /proc/PID/ns and /proc/PID/fd, as the kernel
    decides (docs/design.md, "Who sees what"), over one snapshot's user namespaces.

    The kernel's ptrace_may_access(PTRACE_MODE_READ_FSCREDS): a process may always read
    itself; otherwise the caller must have CAP_SYS_PTRACE in the process's user namespace, or
    have its filesystem uid and gid be the process's real, effective and saved ones, be in the
    process's user namespace and have in effect every capability the process has permitted
    (cap_ptrace_access_check); and a process that is not dumpable also asks for CAP_SYS_PTRACE
    in the user namespace it last exec'd in. /proc/PID/fd (mode 0500) then wants its owner, or
    CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE. What an LSM refuses on top cannot be read from
    outside: a caller an LSM confines reads no other process here.
    """

    caller: Caller | None
    snapshot: Snapshot
    _capable: dict[NsKey | None, bool] = field(default_factory=dict)  # by user namespace, once each

    def reads(self, pid: int, creds: Creds | None) -> bool:
        """Whether the caller may read process `pid` (host pid) with credentials `creds`."""
        caller = self.caller
        if caller is None or creds is None:
            return False
        if pid == caller.tgid:
            return True
        if caller.confined:
            return False
        if not (self.ptrace_capable(creds.userns) or self._as_an_equal(creds)):
            return False
        if creds.undumpable is not None and not self.ptrace_capable(creds.undumpable):
            return False
        return caller.fsuid == creds.owner or bool(caller.caps & _DAC)

    def _as_an_equal(self, creds: Creds) -> bool:
        """Whether the caller may read a process without CAP_SYS_PTRACE over it: the same ids,
        the same user namespace, and no capability the caller does not have in effect."""
        caller = self.caller
        return (
            caller is not None
            and all(uid == caller.fsuid for uid in creds.uids)
            and all(gid == caller.fsgid for gid in creds.gids)
            and creds.userns == caller.userns
            and creds.permitted & ~caller.caps == 0
        )

    def ptrace_capable(self, userns: NsKey | None) -> bool:
        """Whether the caller has CAP_SYS_PTRACE in `userns`."""
        if userns not in self._capable:
            self._capable[userns] = self._capable_in(userns)
        return self._capable[userns]

    def _capable_in(self, userns: NsKey | None) -> bool:
        """The kernel's cap_capable(): from `userns` up, the caller has the capability in its own
        user namespace if it is effective there, and every capability in a child of its own
        namespace it created (by effective uid), and so in everything below that child. A
        namespace the daemon has no entry for (or above the daemon's reach) grants nothing."""
        caller = self.caller
        key = userns
        while caller is not None and key is not None:
            if key == caller.userns:
                return bool(caller.caps >> CAP_SYS_PTRACE & 1)
            entry = self.snapshot.get(key)
            if entry is None:
                return False
            if entry.parent == caller.userns and entry.creator_uid == caller.euid:
                return True
            key = entry.parent
        return False


# What /proc/TID/attr/current says of a thread no LSM confines: AppArmor's "unconfined",
# SELinux's unconfined_t domain (a context user:role:type:level). Without an LSM that labels
# processes, reading it fails (EINVAL).
_UNCONFINED: Final = frozenset({"unconfined", "unconfined_t"})


def caller_confined(tid: int) -> bool:
    """Whether an LSM (AppArmor, SELinux, Smack) confines the calling thread. Its policy may
    refuse it other processes' /proc/PID/ns that its credentials would allow, and the daemon
    cannot read that policy: so a confined caller is taken to read no other process."""
    return confined(_read_label(f"/proc/{tid}/attr/current"))


def confined(label: str | None) -> bool:
    """Whether an LSM label (None: no LSM labels processes) is a confined one."""
    return label is not None and not _UNCONFINED & {label, *label.split(":")}


@errors.or_default("lsm_label_read", None)
def _read_label(path: str) -> str | None:
    with open(path, "rb") as f:
        label = f.read().rstrip(b"\0\n").decode("utf-8", "replace")
    return label or None
