"""Who is asking, and what they may see.

The rule (docs/design.md, "Who sees what"): an entry is visible to a caller iff its anchor,
the namespace itself for a user namespace and its owning user namespace
otherwise, is the caller's user namespace or a descendant of it. So root in the
initial user namespace sees everything and a container sees its own subtree: the
same scope in which the kernel answers NS_GET_USERNS and NS_GET_PARENT rather
than EPERM.

A view is worked out once per (snapshot, user namespace) and reused by every
request until the next snapshot: requests cost a dict lookup, not a table walk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import errors
from .kernel import OVERFLOW_UID
from .model import Entry, NsKey, Snapshot, parse_ns_name


@dataclass(frozen=True, slots=True)
class View:
    """The entries one user namespace may see in one snapshot, in listing order."""

    userns: NsKey | None
    names: frozenset[str]
    listing: tuple[Entry, ...]

    def sees(self, key: NsKey | None) -> bool:
        return key is not None and key.name in self.names


NOTHING = View(userns=None, names=frozenset(), listing=())


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
    """Apply the visibility rule for a caller in `userns` to the whole snapshot."""
    caller = snapshot.get(userns)
    if caller is None:
        # Not in the index: nothing in it can descend from a namespace it lacks.
        return View(userns, frozenset(), ())
    children: dict[NsKey, list[NsKey]] = {}
    for entry in snapshot.entries.values():
        if entry.key.type == "user" and entry.parent is not None:
            children.setdefault(entry.parent, []).append(entry.key)
    allowed: set[NsKey] = set()
    stack = [userns]
    while stack:
        key = stack.pop()
        if key not in allowed:
            allowed.add(key)
            stack.extend(children.get(key, ()))
    # An entry whose owner is out of the daemon's reach belongs to the top.
    top_sees_orphans = caller.parent is None
    listing = tuple(
        sorted(
            (
                e
                for e in snapshot.entries.values()
                if (e.anchor in allowed if e.anchor is not None else top_sees_orphans)
            ),
            key=lambda e: (e.key.inode, e.key.type),
        )
    )
    return View(userns, frozenset(e.name for e in listing), listing)


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
