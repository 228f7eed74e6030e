"""What the filesystem tells the kernel about each inode: its number (an entry's serial, its
file's slot and, for a per-reader file, the kind of reader), owner and attributes.

Inodes are derived, not stored: an entry's directory is `serial * SLOTS` and its files
(files.py, one row each) follow it. A file whose content differs between readers
(`holders`, `owner_uid`) also carries, above READER_SHIFT, a number for the kind of reader
asking: the kernel keeps a size and cached pages per inode, so each kind of reader gets
inodes of its own, with its own size, and never another's bytes.
"""

from __future__ import annotations

import errno
import itertools
import stat
from typing import Final

from pyfuse3 import EntryAttributes, FUSEError

from .files import SLOT_OF, SLOTS, EntryFile
from .model import Entry, Snapshot
from .requests import Kind

# Seconds the kernel may keep an entry directory's attributes (Directories.of).
DIR_ATTR_TIMEOUT: Final = 1.0
# Inode bits above this number the kind of reader a per-reader file was looked up by.
READER_SHIFT: Final = 40
ENTRY_BITS: Final = (1 << READER_SHIFT) - 1  # an inode without its kind of reader
# Kinds of reader numbered before the numbering starts afresh (numbers are never reused).
KINDS_KEPT: Final = 4096
BLOCK_SIZE: Final = 4096


def attributes(inode: int, mode: int, size: int, uid: int, mtime_ns: int) -> EntryAttributes:
    """Attributes no cache keeps (entry and attribute timeouts 0: every answer is per caller)."""
    attr = EntryAttributes()
    attr.st_ino = inode
    attr.generation = 0
    attr.entry_timeout = 0
    attr.attr_timeout = 0
    attr.st_mode = mode
    attr.st_nlink = 2 if stat.S_ISDIR(mode) else 1
    attr.st_uid = uid
    attr.st_gid = uid  # the kernel does not tell the creator's gid; see README
    attr.st_size = size
    attr.st_blksize = BLOCK_SIZE
    attr.st_blocks = 0
    attr.st_atime_ns = attr.st_ctime_ns = attr.st_mtime_ns = mtime_ns
    return attr


def owner_uid(snapshot: Snapshot, entry: Entry) -> int:
    """`ls -l` owner: a user namespace's own creator (as `owner_uid` says); for any other
    namespace, the creator of its owning user namespace. 0 for the initial ones."""
    if entry.key.type == "user":
        return entry.creator_uid if entry.creator_uid is not None else 0
    owner = snapshot.get(entry.owner)
    if owner is not None and owner.creator_uid is not None:
        return owner.creator_uid
    return entry.creator_uid if entry.creator_uid is not None else 0


def encode(content: str | None) -> bytes:
    """A file's content as bytes; ENOENT if the file has none for this caller."""
    if content is None:
        raise FUSEError(errno.ENOENT)
    # A mount path's bytes that are not UTF-8 were read as surrogates: back to those bytes.
    return content.encode("utf-8", "surrogateescape")


class Inodes:
    """Inode numbers of entries' files, per-reader ones numbered by the kind of reader."""

    def __init__(self) -> None:
        self._kinds: dict[Kind, int] = {}
        self._numbers = itertools.count(1)  # never reused

    def of(self, entry: Entry, file: EntryFile, kind: Kind | None) -> int:
        """`file` of `entry`; `kind`, the kind of reader, is needed for a per-reader file only."""
        inode = entry.serial * SLOTS + SLOT_OF[file.name]
        if not file.per_reader:
            return inode
        assert kind is not None
        return inode | self._kind_number(kind) << READER_SHIFT

    def _kind_number(self, kind: Kind) -> int:
        number = self._kinds.get(kind)
        if number is None:
            if len(self._kinds) > KINDS_KEPT:
                self._kinds.clear()  # numbers are never reused: a kind seen again gets a new one
            number = self._kinds[kind] = next(self._numbers)
        return number


class Directories:
    """The attributes of entries' directories: the same for every caller (the kernel maps uid
    for each) and for the entry's life (its owner was indexed before it), so made once per
    entry. Only reachable through a lookup, which is never cached: the kernel may keep these
    a while (DIR_ATTR_TIMEOUT)."""

    def __init__(self) -> None:
        self._made: dict[int, tuple[Entry, EntryAttributes]] = {}  # by serial

    def of(self, snapshot: Snapshot, entry: Entry) -> EntryAttributes:
        made = self._made.get(entry.serial)
        if made is not None and made[0] is entry:
            return made[1]
        uid = owner_uid(snapshot, entry)
        attr = attributes(entry.serial * SLOTS, stat.S_IFDIR | 0o555, 0, uid, entry.first_seen_ns)
        attr.attr_timeout = DIR_ATTR_TIMEOUT
        if len(self._made) > 2 * len(snapshot.entries) + 1024:  # drop those of entries gone
            self._made = {serial: kept for serial, kept in self._made.items() if serial in snapshot.by_serial}
        self._made[entry.serial] = (entry, attr)
        return attr
