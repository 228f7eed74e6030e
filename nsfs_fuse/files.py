"""The files of an entry's directory, as data: one row per file.

Each row says the file's name, whether it is a symlink, when an entry has it for
a given reader, and its content for that reader. The FUSE layer (fs.py) serves
whatever rows there are; adding a file is adding a row (docs/design.md, "The
filesystem"). Nothing here touches the kernel, /proc or FUSE: what depends on
the reader comes through `Reading`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from .model import HIERARCHICAL, Entry, NsKey


class Reading(Protocol):
    """One reader of one snapshot: what it sees, and how it sees uids."""

    def sees(self, key: NsKey | None) -> bool: ...

    def uid(self, kuid: int) -> int | None:
        """A uid of the initial user namespace as the reader sees it; None if the reader is gone."""

    def pin_path(self, pin: int) -> str | None:
        """Where the reader can open the daemon's fd `pin`; None if it cannot."""

    def holders(self, entry: Entry) -> str:
        """The holders file of `entry` as the reader sees it."""

    def containers(self, entry: Entry) -> str:
        """The containers file of `entry` as the reader sees it."""


@dataclass(frozen=True, slots=True)
class EntryFile:
    name: str
    is_link: bool
    present: Callable[[Entry, Reading], bool]
    content: Callable[[Entry, Reading], str | None]  # None: gone while being read (ENOENT)
    # Whether the content differs between readers. Such a file is a different inode for
    # each kind of reader (fs.py): the kernel keeps a file's size and, for sendfile and
    # splice, its pages per inode, and must never give one reader another's.
    per_reader: bool = False
    # Whether the content is worked out from the entry's holders (the snapshot's Holders), which
    # change without the entry: a holder's container named once its engine's state is found.
    from_holders: bool = False


def _always(_entry: Entry, _reading: Reading) -> bool:
    return True


def _link_to(key: NsKey | None) -> str | None:
    return None if key is None else f"../{key.name}"


def _uid(entry: Entry, reading: Reading) -> str | None:
    uid = None if entry.creator_uid is None else reading.uid(entry.creator_uid)
    return None if uid is None else f"{uid}\n"


# In listing order.
FILES: Final[tuple[EntryFile, ...]] = (
    EntryFile("nstype", False, _always, lambda e, _r: f"{e.key.type}\n"),
    EntryFile("owner", True, lambda e, r: r.sees(e.owner), lambda e, _r: _link_to(e.owner)),
    EntryFile(
        "parent",
        True,
        lambda e, r: e.key.type in HIERARCHICAL and r.sees(e.parent),
        lambda e, _r: _link_to(e.parent),
    ),
    EntryFile("owner_uid", False, lambda e, _r: e.creator_uid is not None, _uid, per_reader=True),
    EntryFile("id", False, lambda e, _r: e.ns_id is not None, lambda e, _r: f"{e.ns_id}\n"),
    EntryFile(
        "ns",
        True,
        lambda e, r: e.pin is not None and r.pin_path(e.pin) is not None,
        lambda e, r: None if e.pin is None else r.pin_path(e.pin),
    ),
    EntryFile("holders", False, _always, lambda e, r: r.holders(e), per_reader=True, from_holders=True),
    EntryFile("containers", False, _always, lambda e, r: r.containers(e), per_reader=True, from_holders=True),
)

# An entry's directory is inode serial * SLOTS; its files follow it, in table order.
SLOTS: Final = 16
BY_SLOT: Final[Mapping[int, EntryFile]] = dict(enumerate(FILES, start=1))
SLOT_OF: Final[Mapping[str, int]] = {f.name: slot for slot, f in BY_SLOT.items()}
BY_NAME: Final[Mapping[str, EntryFile]] = {f.name: f for f in FILES}


def files_of(entry: Entry, reading: Reading) -> list[EntryFile]:
    """The files `entry` has for this reader, in listing order."""
    return [f for f in FILES if f.present(entry, reading)]
