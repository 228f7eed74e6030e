"""The floor for `ls -l` over FUSE in Python: a pyfuse3 filesystem that does nothing.

It lists the given names as empty directories and answers each lookup from a
dict, with the same cache settings as nsfs (entries never cached, directory
attributes for a second, no extended attributes), so every request costs what
pyfuse3 and trio cost and nothing more. Run: python -m bench.floorfs MOUNTPOINT NAMES_FILE
"""

from __future__ import annotations

import errno
import stat
import sys

import pyfuse3
import trio


class Floor(pyfuse3.Operations):
    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.inodes = {name.encode(): pyfuse3.ROOT_INODE + 1 + i for i, name in enumerate(names)}

    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.entry_timeout = 0
        attr.attr_timeout = 0 if inode == pyfuse3.ROOT_INODE else 1
        attr.st_mode = stat.S_IFDIR | 0o555
        attr.st_nlink = 2
        return attr

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(inode)

    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        inode = self.inodes.get(name) if parent_inode == pyfuse3.ROOT_INODE else None
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(inode)

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise pyfuse3.FUSEError(errno.EOPNOTSUPP)  # as nsfs answers: `ls -l` stops asking

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        if fh != pyfuse3.ROOT_INODE:
            return
        for index in range(start_id, len(self.names)):
            name = self.names[index]
            if not pyfuse3.readdir_reply(token, name.encode(), self._attr(index + 2), index + 1):
                return


def main() -> None:
    mountpoint, names_file = sys.argv[1:3]
    with open(names_file, encoding="ascii") as f:
        names = f.read().split()
    pyfuse3.init(Floor(names), mountpoint, {"fsname=floorfs", "ro", "allow_other"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
