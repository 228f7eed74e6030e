"""What the filesystem stated each regular file as: the kernel holds a file's size from a
lookup until it is stated again, so the open and fstat that follow must give those bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Files' contents as last stated to the kernel, kept for the open and fstat that follow a lookup
# (Statements): past this many, or this many bytes, the least recently stated go, unless open.
STATED_KEPT: Final = 256
STATED_BYTES: Final = 8 << 20


@dataclass(frozen=True, slots=True)
class Stated:
    """A regular file's content as last stated to the kernel, in a lookup's, a listing's or a
    getattr's attributes: the kernel holds that size for the inode until it is stated again,
    and copies (sendfile, splice, cp) stop there, so the open and fstat that follow must give
    these very bytes, even once the namespace is gone."""

    source: tuple[object, int]  # what it was worked out from (NsFs._content), and the generation
    content: bytes
    uid: int
    mtime_ns: int


class Statements:
    """The Stated of each regular file inode (per-reader ones carry their kind of reader),
    least recently stated first. Those of open files stay; the rest go past the limits."""

    def __init__(self) -> None:
        self._by_inode: dict[int, Stated] = {}
        self._bytes = 0
        self._open: dict[int, int] = {}  # inode -> how many opens of it are not released

    def get(self, inode: int) -> Stated | None:
        return self._by_inode.get(inode)

    def put(self, inode: int, stated: Stated) -> None:
        """`stated` is what `inode` was just stated as (also when it was so already)."""
        before = self._by_inode.pop(inode, None)
        self._bytes += len(stated.content) - (0 if before is None else len(before.content))
        self._by_inode[inode] = stated
        for old in list(self._by_inode):
            if len(self._by_inode) <= STATED_KEPT and self._bytes <= STATED_BYTES:
                break
            if old != inode and old not in self._open:
                self._bytes -= len(self._by_inode.pop(old).content)

    def opened(self, inode: int) -> None:
        self._open[inode] = self._open.get(inode, 0) + 1

    def released(self, inode: int) -> None:
        if self._open.get(inode, 0) > 1:
            self._open[inode] -= 1
        else:
            self._open.pop(inode, None)
