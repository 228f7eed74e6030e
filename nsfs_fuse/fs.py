"""The FUSE side: pyfuse3 Operations over registry snapshots.

Handlers read the published snapshot and never wait on a sweep, with two
exceptions the contract asks for: a lookup of a well-formed name the snapshot
lacks first reads what the caller could have got it from (its own process and
mount table, in a worker thread), and listing the root first makes sure the
caller's own namespaces (a few readlinks) are in the index. The only /proc files
read here are the caller's own, to learn who is asking.

Inodes are derived, not stored: an entry's directory is `serial * SLOTS` and its
files (files.py, one row each) follow it. Serials are never reused, so a stale inode simply finds no entry
(ENOENT), and `forget` has nothing to keep track of. A file whose content differs
between readers (`holders`, `owner_uid`) also carries, above READER_SHIFT, a number
for the kind of reader asking (user and pid namespace, and the namespaces it is in):
the kernel keeps a size and, for sendfile and splice, cached pages per inode, so each
kind of reader gets inodes of its own, with its own size, and never another's bytes.

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
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, ParamSpec, Protocol, TypeVar

import pyfuse3
from pyfuse3 import EntryAttributes, FileInfo, FUSEError, RequestContext

from . import discovery, errors, kernel
from .files import BY_NAME, BY_SLOT, SLOT_OF, SLOTS, EntryFile, files_of
from .model import Creds, Entry, NsKey, Snapshot, parse_ns_name
from .registry import Registry
from .visibility import (
    Caller,
    Ptrace,
    View,
    Views,
    caller_confined,
    caller_pidns,
    caller_userns,
    map_uid,
)

log = logging.getLogger("nsfs")

ROOT: Final = pyfuse3.ROOT_INODE
NAME_MAX: Final = 255
# Seconds the kernel may keep an entry directory's attributes; see _entry_attr.
DIR_ATTR_TIMEOUT: Final = 1.0
# Inode bits above this number the kind of reader a per-reader file was looked up by.
READER_SHIFT: Final = 40
_ENTRY_BITS: Final = (1 << READER_SHIFT) - 1  # an inode without its kind of reader
# Files' contents as last stated to the kernel, kept for the open and fstat that follow a lookup
# (Statements): past this many, or this many bytes, the least recently stated go, unless open.
STATED_KEPT: Final = 256
STATED_BYTES: Final = 8 << 20


_P = ParamSpec("_P")
_T = TypeVar("_T")

# A kind of reader: what a per-reader file's content depends on (Request.kind).
Kind = tuple[NsKey | None, NsKey | None, frozenset[str], Caller | None]
# What a Request works out of the caller alone, the same against any snapshot (Request.renewed).
_OF_THE_CALLER: Final = ("own", "pidns", "caller")


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


class Finder(Protocol):
    """Reads a caller's own holdings into the registry (follow.Finder)."""

    async def own(self, tid: int) -> None:
        """Read the process of thread `tid`: it is in a namespace the index lacks."""

    async def look(self, tid: int, uid: int) -> None:
        """Read what thread `tid` of user `uid` could have learned a name from: its process, the
        mount tables that changed. A user's lookups of unknown names are paced."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request's caller and what it may see, against one snapshot: the `Reading` files use.

    A caller sees its view (visibility.py) and, whatever its user namespace owns, the
    namespaces it is in itself: its own /proc/self/ns links (read only when a name is
    not in the view).
    """

    pid: int
    snapshot: Snapshot
    view: View
    daemon_pid: int  # the `ns` links point into this process's fds
    daemon_pidns: NsKey | None  # the pid namespace holder pids are numbered in
    _memo: dict[str, Any] = field(default_factory=dict)  # what this request worked out once

    def sees(self, key: NsKey | None) -> bool:
        return key is not None and self.sees_name(key.name)

    def sees_name(self, name: str) -> bool:
        return self.view.sees_name(name) or name in self.own()

    def own(self) -> frozenset[str]:
        """The names of the namespaces the caller is in."""
        return self._once("own", lambda: frozenset(s.key.name for s in discovery.caller_sightings(self.pid)))

    def pidns(self) -> NsKey | None:
        """The caller's pid namespace: whose pids it understands."""
        return self._once("pidns", lambda: caller_pidns(self.pid))

    def renewed(self, snapshot: Snapshot, view: View) -> Request:
        """The same caller against a newer snapshot, keeping what was read of the caller itself."""
        kept: dict[str, Any] = {name: self._memo[name] for name in _OF_THE_CALLER if name in self._memo}
        return Request(self.pid, snapshot, view, self.daemon_pid, self.daemon_pidns, kept)

    def _once(self, name: str, work_out: Callable[[], _T]) -> _T:
        """`work_out()`, worked out once per request: each is a few reads of the caller's /proc."""
        if name not in self._memo:
            self._memo[name] = work_out()
        value: _T = self._memo[name]
        return value

    def listing(self) -> list[Entry]:
        """The root directory for this caller: its view, and its own namespaces."""
        extra = [e for name in self.own() if not self.view.sees_name(name) and (e := self.snapshot.entries.get(name))]
        if not extra:
            return list(self.view.listing)
        return sorted((*self.view.listing, *extra), key=lambda e: (e.key.inode, e.key.type))

    def uid(self, kuid: int) -> int | None:
        return map_uid(self.pid, kuid)

    def caller(self) -> Caller | None:
        """What the kernel asks of the calling thread before it lets it read another process
        (visibility.Ptrace); None if it is gone or cannot be identified."""
        return self._once("caller", self._read_caller)

    def _read_caller(self) -> Caller | None:
        try:
            status = discovery.read_status(f"/proc/{self.pid}/status") if self.pid > 0 else None
        except errors.Skip:  # judged: a caller that cannot be read is one that cannot be identified
            return None
        if status is None or self.view.userns is None:
            return None
        fsuid, fsgid, euid = status.uids[3], status.gids[3], status.uids[1]
        return Caller(status.tgid, fsuid, fsgid, euid, status.caps, self.view.userns, caller_confined(self.pid))

    def reads(self, pid: int, creds: Creds | None) -> bool:
        """Whether the kernel would let the caller read process `pid`'s /proc/PID/ns and fd."""
        ptrace: Ptrace = self._once("ptrace", lambda: Ptrace(self.caller(), self.snapshot))
        return ptrace.reads(pid, creds)

    def kind(self) -> Kind:
        """What a per-reader file's content depends on: the caller's user and pid namespaces,
        the namespaces it is in, and what decides which processes it may read (its process
        among them: a process may always read itself). See files.EntryFile.per_reader."""
        return self.view.userns, self.pidns(), self.own(), self.caller()

    def pin_path(self, pin: int) -> str | None:
        """The daemon's fd `pin` as the caller's /proc shows it: through the daemon's pid in
        the caller's pid namespace. None where the daemon has none (the caller's /proc
        cannot show it, and another process's fd of that number is not this namespace)."""
        daemon = self._pid_translator()(self.daemon_pid)
        return None if daemon is None else f"/proc/{daemon}/fd/{pin}"

    def holders(self, entry: Entry) -> str:
        holders = self.snapshot.holders.get(entry.name)
        return "" if holders is None else holders.render(_HolderReader(self, self._pid_translator()))

    def _pid_translator(self) -> Callable[[int], int | None]:
        return self._once("pids", self._translator)

    def _translator(self) -> Callable[[int], int | None]:
        """Host pid -> the caller's pid for it, or None if the caller's pid namespace lacks it."""
        pidns = self.pidns()
        if pidns is None:
            return lambda pid: None
        if pidns == self.daemon_pidns:
            return lambda pid: pid
        entry = self.snapshot.get(pidns)
        if entry is None or entry.pin is None:
            return lambda pid: None
        pin = entry.pin

        def translate(pid: int) -> int | None:
            try:
                translated = kernel.pid_in_pidns(pin, pid)
            except OSError as exc:
                # ESRCH: not in the caller's pid namespace; ENOTTY: a kernel before 6.11; EBADF:
                # the pin was closed since this request took its snapshot (the namespace went).
                # Anything else is judged: that holder's line is left out, not the whole file.
                if exc.errno != errno.ENOTTY:
                    errors.judge(exc, "pid_in_pidns", pid)
                return None
            return translated if translated > 0 else None

        return translate


@dataclass(frozen=True, slots=True)
class _HolderReader:
    """The caller of one `holders` read, as model.Holders.render sees it."""

    request: Request
    pid: Callable[[int], int | None]

    def sees_name(self, name: str) -> bool:
        return self.request.sees_name(name)

    def reads(self, pid: int, creds: Creds | None) -> bool:
        return self.request.reads(pid, creds)


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
        self._kinds: dict[Kind, int] = {}  # of reader
        self._kind_numbers = itertools.count(1)  # never reused
        self._stated = Statements()  # see _content
        self._dir_attrs: dict[int, tuple[Entry, EntryAttributes]] = {}  # by serial: see _dir_attr

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
        inode &= _ENTRY_BITS
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
        changed: the snapshot's holders of that entry (a `holders` file may be thousands of
        lines), the entry, the snapshot's entries (generation); the rest of what it depends on
        is the kind of reader, which the inode of a per-reader file carries."""
        source = (req.snapshot.holders.get(entry.name) if file.name == "holders" else entry, req.snapshot.generation)
        kept = self._stated.get(inode)
        if kept is not None and kept.source[0] is source[0] and kept.source[1] == source[1]:
            content = kept.content
        else:
            content = self._encode(file.content(entry, req))
        self._stated.put(inode, Stated(source, content, self._owner_uid(req.snapshot, entry), entry.first_seen_ns))
        return content

    @staticmethod
    def _encode(content: str | None) -> bytes:
        if content is None:
            raise FUSEError(errno.ENOENT)
        # A mount path's bytes that are not UTF-8 were read as surrogates: back to those bytes.
        return content.encode("utf-8", "surrogateescape")

    def _kind_of(self, req: Request) -> int:
        kind = req.kind()
        number = self._kinds.get(kind)
        if number is None:
            if len(self._kinds) > 4096:
                self._kinds.clear()  # numbers are never reused: a kind seen again gets a new one
            number = self._kinds[kind] = next(self._kind_numbers)
        return number

    def _inode(self, req: Request, entry: Entry, file: EntryFile) -> int:
        inode = entry.serial * SLOTS + SLOT_OF[file.name]
        return inode | self._kind_of(req) << READER_SHIFT if file.per_reader else inode

    def _owner_uid(self, snapshot: Snapshot, entry: Entry) -> int:
        """`ls -l` owner: a user namespace's own creator (as `owner_uid` says); for any other
        namespace, the creator of its owning user namespace. 0 for the initial ones."""
        if entry.key.type == "user":
            return entry.creator_uid if entry.creator_uid is not None else 0
        owner = snapshot.get(entry.owner)
        if owner is not None and owner.creator_uid is not None:
            return owner.creator_uid
        return entry.creator_uid if entry.creator_uid is not None else 0

    # -- attributes ---------------------------------------------------------

    def _attr(self, inode: int, mode: int, size: int, uid: int, mtime_ns: int) -> EntryAttributes:
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
        attr.st_blksize = 4096
        attr.st_blocks = 0
        attr.st_atime_ns = attr.st_ctime_ns = attr.st_mtime_ns = mtime_ns
        return attr

    def _root_attr(self) -> EntryAttributes:
        return self._attr(ROOT, stat.S_IFDIR | 0o555, 0, 0, self._mounted_ns)

    def _dir_attr(self, snapshot: Snapshot, entry: Entry) -> EntryAttributes:
        """An entry's directory: the same for every caller (the kernel maps uid for each) and
        for the entry's life (its owner was indexed before it), so made once per entry. Only
        reachable through a lookup, which is never cached: the kernel may keep these a while."""
        made = self._dir_attrs.get(entry.serial)
        if made is not None and made[0] is entry:
            return made[1]
        attr = self._attr(
            entry.serial * SLOTS, stat.S_IFDIR | 0o555, 0, self._owner_uid(snapshot, entry), entry.first_seen_ns
        )
        attr.attr_timeout = DIR_ATTR_TIMEOUT
        if len(self._dir_attrs) > 2 * len(snapshot.entries) + 1024:  # drop those of entries gone
            self._dir_attrs = {s: kept for s, kept in self._dir_attrs.items() if s in snapshot.by_serial}
        self._dir_attrs[entry.serial] = (entry, attr)
        return attr

    def _entry_attr(self, req: Request, entry: Entry, file: EntryFile | None) -> EntryAttributes:
        if file is None:
            return self._dir_attr(req.snapshot, entry)
        uid = self._owner_uid(req.snapshot, entry)
        inode = self._inode(req, entry, file)
        if file.is_link:
            size = len(self._encode(file.content(entry, req)))
            return self._attr(inode, stat.S_IFLNK | 0o777, size, uid, entry.first_seen_ns)
        size = len(self._content(req, entry, file, inode))
        return self._attr(inode, stat.S_IFREG | 0o444, size, uid, entry.first_seen_ns)

    def _stated_attr(self, inode: int, stated: Stated) -> EntryAttributes:
        return self._attr(inode, stat.S_IFREG | 0o444, len(stated.content), stated.uid, stated.mtime_ns)

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
            return self._dir_attr(req.snapshot, entry)
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
        return self._encode(file.content(entry, req))

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
                base = inode & _ENTRY_BITS
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
        data.f_bsize = data.f_frsize = 4096
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
