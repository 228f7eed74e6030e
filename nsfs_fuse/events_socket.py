"""Namespaces coming and going, pushed to whoever follows them over a unix socket.

The kernel has no event for a namespace's birth or death; the daemon knows both the
moment its listing changes. A client connects to the daemon's socket (`lsnsfs
--watch`) and reads lines:

    = net:[4026531840]                  listed when it connected (one line each, first)
    + net:[4026532290] podman:web       listed since
    - net:[4026532290] podman:web       no longer listed

After the name, a word ENGINE:LABEL for each container holding it as the client would read
it from its `containers` file when it was listed (the label as lsnsfs's CONTAINER column
shows it, escaped: [POD_NAMESPACE/POD_NAME/]NAME, or the id's start if the name is not known).

Each client sees what its listing of the mount would show (visibility.py): the daemon
identifies it by SO_PEERCRED, as FUSE identifies a caller. A namespace whose inode is
reused by a new one goes and comes back (`-` then `+`). A client that reads slowly is
sent the difference between what it was last sent and what is listed now, so it never
holds up the daemon or another client, and it never gets stale lines. That difference is
worked out from the entries that changed since (`Registry.listed_since`), so a client
costs what changes, not what the machine holds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Final

import trio

from .discovery import caller_sightings
from .model import Container, Entry, NsKey, Snapshot
from .mountinfo import escape
from .registry import Registry
from .requests import Request
from .tasks import Alarm
from .visibility import Views, caller_pidns, caller_userns

log = logging.getLogger(__name__)
# What a client sends is read and dropped (it has nothing to say): this much at a time.
CLIENT_READ: Final = 4096

MAX_WATCHERS = 128  # connections past this get one line saying so, and are closed
_UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True, slots=True, order=True)
class _Shown:
    """An entry as a client was told of it: ordered as the listing is."""

    inode: int
    type: str
    serial: int  # a recycled inode is a new entry
    containers: str = field(default="", compare=False)  # " ENGINE:LABEL" for each, as the client saw them

    @staticmethod
    def of(entry: Entry) -> _Shown:
        return _Shown(entry.key.inode, entry.key.type, entry.serial)

    @property
    def name(self) -> str:
        return f"{self.type}:[{self.inode}]"

    @property
    def line(self) -> str:
        return f"{self.name}{self.containers}\n"


def container_word(container: Container) -> str:
    """ENGINE:LABEL, as an events line names a container (see the module's doc)."""
    return escape(f"{container.engine}:{container.label}")


@contextlib.contextmanager
def listening(path: str) -> Iterator[socket.socket]:
    """The listening socket at `path`, which everyone may connect to (what each client is told
    is filtered for it); a stale one, left by a killed daemon, is replaced. Removed on exit.
    RuntimeError, saying where, if it cannot be made."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError as exc:
        raise RuntimeError(f"cannot serve events at {path}: {exc.strerror or exc}") from None
    with sock:
        try:
            sock.bind(path)
            os.chmod(path, 0o666)
            sock.listen(16)
        except OSError as exc:  # "AF_UNIX path too long" has no strerror
            raise RuntimeError(f"cannot serve events at {path}: {exc.strerror or exc}") from None
        try:
            yield sock
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _remove_stale(path: str) -> None:
    """Remove a socket at `path`, and nothing else: -o events=/etc/passwd used to unlink it."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise FileExistsError(errno.EEXIST, "it exists and is not a socket")
    except FileNotFoundError:
        return
    os.unlink(path)


class EventsSocket:
    """Serves the socket: one task per client, woken when the listing changes."""

    def __init__(self, registry: Registry, listener: socket.socket, alarm: Alarm) -> None:
        self._registry = registry
        self._listener = listener
        self._views = Views()
        self._changed = trio.Event()  # set, and replaced, each time the listing changes
        self._clients = 0
        self._pid = os.getpid()  # whose fds a Request's `ns` links would name
        self._pidns = caller_pidns(self._pid)
        self.alarm = alarm  # rung by the registry (any thread) when the listing changes

    async def run(self) -> None:
        listener = trio.socket.from_stdlib_socket(self._listener)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._relay)
            while True:
                try:
                    conn, _ = await listener.accept()
                except OSError as exc:  # out of fds, say: the mount matters more; try again soon
                    log.warning("events: cannot accept a client: %s", exc.strerror)
                    await trio.sleep(1)
                    continue
                nursery.start_soon(self._serve, conn)

    async def _relay(self) -> None:
        while True:
            await self.alarm.wait()
            changed, self._changed = self._changed, trio.Event()
            changed.set()

    async def _serve(self, conn: trio.socket.SocketType) -> None:
        stream = trio.SocketStream(conn)
        self._clients += 1
        try:
            if self._clients > MAX_WATCHERS:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"! too many clients follow this mount\n")
                return
            await self._follow_until_closed(stream, _peer_pid(conn))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went
        except Exception:
            # A bug costs this client its connection, never the daemon its mount.
            log.exception("events: a client failed")
        finally:
            self._clients -= 1
            with contextlib.suppress(OSError):
                await stream.aclose()

    async def _follow_until_closed(self, stream: trio.SocketStream, pid: int) -> None:
        """Follow for the client until it closes its end. A client that went (its end closed
        before a send) is normal; whatever else failed is raised as itself, not as a group."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._until_closed, stream, nursery.cancel_scope)
                await self._follow(stream, pid)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except* Exception as group:
            raise group.exceptions[0] from None

    async def _follow(self, stream: trio.SocketStream, pid: int) -> None:
        userns = caller_userns(pid)
        own = frozenset(s.key.name for s in caller_sightings(pid)) if userns is not None else frozenset()
        snapshot = self._registry.snapshot
        shown = self._with_containers(self._shown(snapshot, userns, own).values(), pid, snapshot, userns)
        await stream.send_all("".join(f"= {s.line}" for s in sorted(shown.values())).encode())
        while True:
            await self._changed.wait()
            before, snapshot = snapshot, self._registry.snapshot
            gone, new = self._difference(before, snapshot, shown, userns, own)
            gone = [shown.pop(s.name) for s in gone]  # as the client was told of them
            added = self._with_containers(new, pid, snapshot, userns)
            shown.update(added)
            lines = [f"- {s.line}" for s in sorted(gone)] + [f"+ {s.line}" for s in sorted(added.values())]
            if lines:
                await stream.send_all("".join(lines).encode())

    def _difference(
        self, before: Snapshot, now: Snapshot, shown: dict[str, _Shown], userns: NsKey | None, own: frozenset[str]
    ) -> tuple[list[_Shown], list[_Shown]]:
        """What a client shown `shown` (as of `before`) no longer sees in `now`, and what it sees
        anew: worked out from the entries that changed in between, unless a user namespace is
        among them (what a client may see then changes beyond them) or they are no longer kept."""
        changed = self._registry.listed_since(before.generation, now.generation)
        if changed is None or any(name.startswith("user:") for name in changed):
            listed = self._shown(now, userns, own)
            return [s for n, s in shown.items() if listed.get(n) != s], [
                s for n, s in listed.items() if shown.get(n) != s
            ]
        view = self._views.get(now, userns)
        gone, new = [], []
        for name in changed:
            entry = now.entries.get(name)
            then = shown.get(name)
            if entry is not None and (view.sees_name(name) or name in own):
                latest = _Shown.of(entry)
                if latest != then:
                    new.append(latest)
                    if then is not None:
                        gone.append(then)
            elif then is not None:
                gone.append(then)
        return gone, new

    def _with_containers(
        self, shown: Iterable[_Shown], pid: int, snapshot: Snapshot, userns: NsKey | None
    ) -> dict[str, _Shown]:
        """`shown`, each with the containers the client would read in its `containers` file."""
        request = Request(pid, snapshot, self._views.get(snapshot, userns), self._pid, self._pidns)
        found = {}
        for s in shown:
            holders = snapshot.holders.get(s.name)
            containers = () if holders is None else holders.containers(request.holder_reader())
            found[s.name] = replace(s, containers="".join(f" {container_word(c)}" for c in containers))
        return found

    def _shown(self, snapshot: Snapshot, userns: NsKey | None, own: frozenset[str]) -> dict[str, _Shown]:
        view = self._views.get(snapshot, userns)
        entries = list(view.listing) + [e for n in own if not view.sees_name(n) and (e := snapshot.entries.get(n))]
        return {e.name: _Shown.of(e) for e in entries}

    @staticmethod
    async def _until_closed(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """Clients only listen: anything they send is ignored, and their end of file ends them."""
        while await stream.receive_some(CLIENT_READ):
            pass
        scope.cancel()


def _peer_pid(conn: trio.socket.SocketType) -> int:
    """The client's pid in the daemon's pid namespace (0 if it has none there: it sees nothing)."""
    pid, _uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(pid)
