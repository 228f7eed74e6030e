"""The FUSE side: pyfuse3 Operations over registry snapshots.

Handlers read the published snapshot and never wait on a sweep, with two
exceptions the contract asks for: a lookup of a well-formed name the snapshot
lacks first reads what the caller could have got it from (its own process and
mount table, in a worker thread), and listing the root first makes sure the
caller's own namespaces (a few readlinks) are in the index. The only /proc files
read here are the caller's own, to learn who is asking.

Inodes are derived, not stored (attributes.py): serials are never reused, so a stale
inode simply finds no entry (ENOENT), and `forget` has nothing to keep track of.

Every answer is per caller, so the kernel must cache nothing that differs
between callers: entry timeouts are 0 (each path walk asks who is calling),
attribute timeouts are 0 except for entry directories, whose attributes are the
same for everyone, files are opened with direct_io, and listings and file
contents are fixed when the caller opens them (readdir and read carry no
request context). `ls -l` makes three path walks per entry (statx and two ACL
getxattrs): three LOOKUPs, and no GETATTR. docs/design.md, "The filesystem".
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, NoReturn, ParamSpec, Protocol, TypeVar

import pyfuse3
from pyfuse3 import EntryAttributes, FileInfo, FUSEError, RequestContext

from .attributes import BLOCK_SIZE, ENTRY_BITS, Directories, Inodes, attributes, encode, owner_uid
from .files import BY_NAME, BY_SLOT, SLOTS, EntryFile, files_of
from .model import Entry, NsKey, Snapshot, parse_ns_name
from .registry import Registry
from .requests import Request
from .statements import Stated, Statements
from .visibility import (
    Views,
    caller_pidns,
    caller_userns,
)

log = logging.getLogger(__name__)

ROOT: Final = pyfuse3.ROOT_INODE
NAME_MAX: Final = 255


_P = ParamSpec("_P")
_T = TypeVar("_T")


class Finder(Protocol):
    """Reads a caller's own holdings into the registry (lookups.MissReads)."""

    async def own(self, tid: int) -> None:
        """Read the process of thread `tid`: it is in a namespace the index lacks."""

    async def look(self, tid: int, uid: int) -> None:
        """Read what thread `tid` of user `uid` could have learned a name from: its process, the
        mount tables that changed. A user's lookups of unknown names are paced."""


def guarded(handler: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Turn any unexpected exception into EIO: one inside pyfuse3.main would end the daemon."""

    @functools.wraps(handler)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await handler(*args, **kwargs)
        except FUSEError:
            raise
        except Exception:
            log.exception("%s failed", handler.__name__)
            raise FUSEError(errno.EIO) from None

    return wrapper


async def _read_only(*_args: object) -> NoReturn:
    raise FUSEError(errno.EROFS)


class NsFs(pyfuse3.Operations):
    def __init__(self, registry: Registry, finder: Finder) -> None:
        super().__init__()
        self._registry = registry
        self._finder = finder
        self._views = Views()
        self._pid = os.getpid()  # the `ns` links point into this process's fds
        self._pidns = caller_pidns(self._pid)
        self._mounted_ns = time.time_ns()
        self._handles = itertools.count(1)
        self._files: dict[int, tuple[int, bytes]] = {}  # per open: its inode, what it reads
        self._dirs: dict[int, tuple[Request, Sequence[tuple[str, int]]]] = {}
        self._inodes = Inodes()
        self._stated = Statements()  # see _content
        self._directories = Directories()

    # -- who is asking ------------------------------------------------------

    def _request(self, ctx: RequestContext) -> Request:
        return self._against(ctx.pid, self._registry.snapshot, caller_userns(ctx.pid))

    def _against(self, pid: int, snapshot: Snapshot, userns: NsKey | None) -> Request:
        return Request(pid, snapshot, self._views.get(snapshot, userns), self._pid, self._pidns)

    def _renewed(self, req: Request) -> Request:
        """`req` against the newest snapshot (after the finder read something into it)."""
        snapshot = self._registry.snapshot
        return req.renewed(snapshot, self._views.get(snapshot, req.view.userns))

    def _entry(self, req: Request, inode: int) -> tuple[Entry, EntryFile | None]:
        """The visible entry behind `inode`, and which of its files (None: the directory)."""
        inode &= ENTRY_BITS
        entry = req.snapshot.by_serial.get(inode // SLOTS)
        if entry is None or not req.sees_name(entry.name):
            raise FUSEError(errno.ENOENT)
        slot = inode % SLOTS
        if slot == 0:
            return entry, None
        file = BY_SLOT.get(slot)
        if file is None or not file.present(entry, req):
            raise FUSEError(errno.ENOENT)
        return entry, file

    def _content(self, req: Request, entry: Entry, file: EntryFile, inode: int) -> bytes:
        """What regular file `inode` (`file` of `entry`) holds for this caller, as it is stated
        to the kernel from now on (Statements). Worked out again only if what it comes from
        changed: the snapshot's holders of that entry for the files made from them (a `holders`
        file may be thousands of lines; `containers`), else the entry; and the snapshot's entries
        (generation). The rest of what it depends on is the kind of reader, which the inode of a
        per-reader file carries."""
        made_from = req.snapshot.holders.get(entry.name) if file.from_holders else entry
        source = (made_from, req.snapshot.generation)
        kept = self._stated.get(inode)
        if kept is not None and kept.source[0] is source[0] and kept.source[1] == source[1]:
            content = kept.content
        else:
            content = encode(file.content(entry, req))
        self._stated.put(inode, Stated(source, content, owner_uid(req.snapshot, entry), entry.first_seen_ns))
        return content

    # -- attributes ---------------------------------------------------------

    def _root_attr(self) -> EntryAttributes:
        return attributes(ROOT, stat.S_IFDIR | 0o555, 0, 0, self._mounted_ns)

    def _inode(self, req: Request, entry: Entry, file: EntryFile) -> int:
        return self._inodes.of(entry, file, req.kind() if file.per_reader else None)

    def _entry_attr(self, req: Request, entry: Entry, file: EntryFile | None) -> EntryAttributes:
        if file is None:
            return self._directories.of(req.snapshot, entry)
        uid = owner_uid(req.snapshot, entry)
        inode = self._inode(req, entry, file)
        if file.is_link:
            size = len(encode(file.content(entry, req)))
            return attributes(inode, stat.S_IFLNK | 0o777, size, uid, entry.first_seen_ns)
        size = len(self._content(req, entry, file, inode))
        return attributes(inode, stat.S_IFREG | 0o444, size, uid, entry.first_seen_ns)

    @staticmethod
    def _stated_attr(inode: int, stated: Stated) -> EntryAttributes:
        return attributes(inode, stat.S_IFREG | 0o444, len(stated.content), stated.uid, stated.mtime_ns)

    # -- finding names the snapshot lacks ------------------------------------

    async def _include_callers_own(self, req: Request) -> Request:
        """Make sure the caller's own namespaces are indexed: it may have made them just now."""
        if all(name in req.snapshot.entries for name in req.own()):
            return req
        await self._finder.own(req.pid)
        return self._renewed(req)

    async def _find(self, req: Request, key: NsKey, uid: int) -> Request:
        """After a lookup miss: the calling thread's own namespaces, else what its process holds."""
        if key.name in req.own():
            await self._finder.own(req.pid)
        else:
            await self._finder.look(req.pid, uid)
        return self._renewed(req)

    # -- handlers -----------------------------------------------------------

    @guarded
    async def lookup(self, parent_inode: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        if len(name) > NAME_MAX:  # FUSE passes names up to 1024 bytes; statfs says 255
            raise FUSEError(errno.ENAMETOOLONG)
        text = name.decode("ascii", "replace")
        if parent_inode == ROOT:
            # A name a listing gave is the index's own spelling, the one spelling parse_ns_name
            # accepts: found as it is, it needs no parsing (`ls -l` looks up thousands).
            if text not in self._registry.snapshot.entries and parse_ns_name(text) is None:
                raise FUSEError(errno.ENOENT)  # not a name this directory could hold: no need to know who asks
            req = self._request(ctx)
            if req.view.userns is None:
                raise FUSEError(errno.ENOENT)
            # A name the caller may not see is, to it, not in the snapshot: it takes the miss's
            # path, so that no timing tells it from a name that does not exist (README, Who sees what).
            entry = req.snapshot.entries.get(text)
            if entry is None or not req.sees_name(text):
                key = parse_ns_name(text)
                assert key is not None  # a name of the index, or one just parsed
                req = await self._find(req, key, ctx.uid)
                entry = req.snapshot.entries.get(text)
                if entry is None or not req.sees_name(text):
                    raise FUSEError(errno.ENOENT)
            return self._directories.of(req.snapshot, entry)
        req = self._request(ctx)
        entry, file = self._entry(req, parent_inode)
        if file is not None:
            raise FUSEError(errno.ENOTDIR)
        file = BY_NAME.get(text)
        if file is None or not file.present(entry, req):
            raise FUSEError(errno.ENOENT)
        return self._entry_attr(req, entry, file)

    @guarded
    async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
        if inode == ROOT:
            return self._root_attr()
        # A file looked up (and perhaps opened) keeps the size it was stated with, its namespace
        # gone or not: the fstat of an open file must say what that open reads. Only a caller
        # that looked it up, or holds it open, has its inode.
        stated = self._stated.get(inode)
        if stated is not None:
            return self._stated_attr(inode, stated)
        req = self._request(ctx)
        entry, file = self._entry(req, inode)
        return self._entry_attr(req, entry, file)

    @guarded
    async def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        req = self._request(ctx)
        entry, file = self._entry(req, inode)
        if file is None or not file.is_link:
            raise FUSEError(errno.EINVAL)
        return encode(file.content(entry, req))

    @guarded
    async def opendir(self, inode: int, ctx: RequestContext) -> int:
        req = self._request(ctx)
        names: list[tuple[str, int]]
        if inode == ROOT:
            if req.view.userns is not None:
                req = await self._include_callers_own(req)
            names = [(".", ROOT), ("..", ROOT)]
            names.extend((e.name, e.serial * SLOTS) for e in req.listing())
        else:
            entry, file = self._entry(req, inode)
            if file is not None:
                raise FUSEError(errno.ENOTDIR)
            names = [(".", inode), ("..", ROOT)]
            names.extend((f.name, self._inode(req, entry, f)) for f in files_of(entry, req))
        fh = next(self._handles)
        self._dirs[fh] = (req, names)
        return fh

    @guarded
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        req, names = self._dirs[fh]
        for index in range(start_id, len(names)):
            name, inode = names[index]
            if inode == ROOT:
                attr = self._root_attr()
            else:
                base = inode & ENTRY_BITS
                entry = req.snapshot.by_serial[base // SLOTS]
                attr = self._entry_attr(req, entry, BY_SLOT.get(base % SLOTS))
            if not pyfuse3.readdir_reply(token, name.encode(), attr, index + 1):
                return

    @guarded
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    @guarded
    async def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise FUSEError(errno.EROFS)
        req = self._request(ctx)
        entry, file = self._entry(req, inode)
        if file is None or file.is_link:
            raise FUSEError(errno.EISDIR if file is None else errno.ELOOP)
        # What the lookup just before stated (the kernel holds its size), else worked out now.
        stated = self._stated.get(inode)
        content = stated.content if stated is not None else self._content(req, entry, file, inode)
        fh = next(self._handles)
        self._files[fh] = (inode, content)
        self._stated.opened(inode)
        return FileInfo(fh=fh, direct_io=True, keep_cache=False)

    @guarded
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self._files[fh][1][off : off + size]

    @guarded
    async def release(self, fh: int) -> None:
        opened = self._files.pop(fh, None)
        if opened is not None:
            self._stated.released(opened[0])

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """Nothing to do: inodes are derived from serials, not kept in a table."""

    @guarded
    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        """Counts only what the caller may see: the machine's count would tell a container how
        many namespaces the host has, and when it makes more."""
        req = self._request(ctx)
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = BLOCK_SIZE
        data.f_blocks = data.f_bfree = data.f_bavail = 0
        data.f_files = 0 if req.view.userns is None else len(req.listing())
        data.f_ffree = data.f_favail = 0
        data.f_namemax = NAME_MAX
        return data

    @guarded
    async def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        """No extended attributes, ACLs included. Not ENOSYS: after that the kernel answers
        ACL reads itself with ENODATA ("supported, none here"), and `ls -l` asks again for
        every entry, each ask a path walk (a LOOKUP). EOPNOTSUPP makes it stop asking for
        the whole mount after the first."""
        raise FUSEError(errno.EOPNOTSUPP)

    # Everything that would change something. The mount is also read-only, so
    # the kernel normally answers EROFS before asking us.
    setattr = mknod = mkdir = unlink = rmdir = symlink = rename = link = _read_only  # type: ignore[assignment]
    write = create = setxattr = removexattr = _read_only  # type: ignore[assignment]
