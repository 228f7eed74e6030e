"""Which mount tables the registry follows: every held mount namespace's, through a reader.

A mount namespace's table is read when it is first followed and again whenever the
kernel flags a change (mount_tables.py, seen here as a `TableStore`); what it holds goes to
`Holdings` as that namespace's bind mounts. A reader holds its mount namespace, so it
is closed before the namespace is suspended, and the table is followed again if the
probe finds the namespace alive.

Bookkeeping only, under the registry's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Iterable
from typing import Protocol

from .holdings import Holdings
from .model import NsKey, Sighting

log = logging.getLogger(__name__)


class TableStore(Protocol):
    """What following needs of tables.Tables: readers hold their mount namespace too."""

    def __contains__(self, mnt: NsKey) -> bool: ...

    def watch(self, mnt: NsKey, members: Iterable[int], pin: int | None) -> list[Sighting] | None: ...

    def changed(
        self, members: Callable[[NsKey], Iterable[int]], pin: Callable[[NsKey], int | None]
    ) -> list[tuple[NsKey, list[Sighting]]]: ...

    def close(self, mnt: NsKey) -> None: ...

    @property
    def started(self) -> list[int]:
        """Helper processes started since last looked at (the list is emptied here)."""


class Following:
    def __init__(self, tables: TableStore | None, holdings: Holdings, pin_of: Callable[[NsKey], int | None]) -> None:
        self._readers = tables  # None: no table is followed (unit tests)
        self._holdings = holdings
        self._pin_of = pin_of
        self._unfollowed: set[NsKey] = set()  # pinned mount namespaces whose table is not followed

    def pinned(self, key: NsKey) -> None:
        """`key` was just pinned: its table is to be followed, if it is a mount namespace."""
        if key.type == "mnt":
            self._unfollowed.add(key)

    def forget(self, key: NsKey) -> None:
        """`key` is released: nothing to follow."""
        self._unfollowed.discard(key)

    def stop(self, key: NsKey) -> None:
        """Close the reader of `key`'s table, if any: it holds the namespace too."""
        if self._readers is not None and key in self._readers:
            self._readers.close(key)
            self._unfollowed.add(key)

    def refresh(self) -> None:
        """Read again the followed tables that changed."""
        if self._readers is None:
            return
        for mnt, mounts in self._readers.changed(self._holdings.members, self._pin_of):
            log.debug("the mount table of %s changed: %d nsfs mounts", mnt.name, len(mounts))
            self._holdings.mount_table(mnt, mounts)
        self._disown_helpers()

    def follow(self, suspended: Container[NsKey]) -> None:
        """Follow the table of every mount namespace something holds (but those `suspended`)."""
        if self._readers is None:
            return
        tried: set[NsKey] = set()
        held = self._holdings.keys()
        while todo := [k for k in self._unfollowed if k in held and k not in tried and k not in suspended]:
            for mnt in todo:
                tried.add(mnt)
                mounts = self._readers.watch(mnt, self._holdings.members(mnt), self._pin_of(mnt))
                if mounts is not None:
                    self._unfollowed.discard(mnt)
                    self._holdings.mount_table(mnt, mounts)  # may pin more mount namespaces: hence the loop
        self._disown_helpers()

    def _disown_helpers(self) -> None:
        """The daemon's helpers hold nothing. An event may have read one before the scanner
        knew it for ours: a read of nothing, newer than that, replaces it."""
        assert self._readers is not None
        now = time.monotonic()
        for pid in self._readers.started:
            self._holdings.disown(pid, now)
        self._readers.started.clear()
