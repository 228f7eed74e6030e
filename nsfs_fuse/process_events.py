"""Process events (fork, exec, exit, credential changes) from the kernel's proc connector,
folded into the registry: each process they name is read again, in batches.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Final, Protocol

import trio

from . import kernel
from .registry import Registry
from .rereads import Rereads
from .tasks import step

log = logging.getLogger(__name__)

# Events are read until the socket is empty or this many processes are named,
# then those processes are read again in one batch.
MAX_BATCH: Final = 1024

# After the first event of a batch, events are let gather this long: a process that
# forks, execs and exits within it (a shell loop's `stat`, say) costs one read of a pid
# that is gone, not three reads of a live one, and a burst is one batch. Measured at
# 5,000 processes with a loop of `stat` on a plain directory (100 processes a second):
# root's ls -l of the mount took 1.8x its idle time with 10 ms, 1.1x with 50 ms, as on
# a do-nothing FUSE filesystem.
GATHER: Final = 0.05

# What one recv of the proc connector's socket takes at most: many events at once.
RECV_SIZE: Final = 65536
# The initial network namespace, where the proc connector answers: kthreadd's (pid 2 of the host's
# pid namespace, which the daemon reads: hostPID in a DaemonSet), as every kernel thread's is.
HOST_NET: Final = "/proc/2/ns/net"


class Sweeps(Protocol):
    """What events need of the sweeps (service.Refresher)."""

    interval: float
    following_events: bool

    async def rescan(self) -> None: ...


class Batches(Protocol):
    """Who is told when a batch of events begins to gather and when it has been read
    (listed.py: a namespace listed meanwhile waits for the batch, which may name its holder)."""

    def events_gathering(self) -> None: ...

    def events_read(self) -> None: ...


class NoOne:
    def events_gathering(self) -> None:
        pass

    def events_read(self) -> None:
        pass


class ProcessEvents:
    """Process events folded into the registry: each named process is read again."""

    def __init__(self, registry: Registry, rereads: Rereads, batches: Batches | None = None) -> None:
        self._registry = registry
        self._rereads = rereads
        self._batches = batches or NoOne()

    async def follow(self, sweeps: Sweeps) -> None:
        """Read fork, exec and exit events until cancelled.

        Without them (no proc connector, or a daemon outside the initial pid and
        user namespaces) the sweeps are all there is, and the log says so once.
        """
        sock, why = await _subscribed()
        if sock is None:
            log.warning("process events unavailable (%s): sweeping every %g s instead", why, sweeps.interval)
            return
        with sock:
            sweeps.following_events = True
            log.info("following process events")
            try:
                await self._follow(sock, sweeps)
            finally:
                sweeps.following_events = False
                self._batches.events_read()  # no batch is gathering any longer

    async def _follow(self, sock: socket.socket, sweeps: Sweeps) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(sock)
                self._batches.events_gathering()
                await trio.sleep(GATHER)
                pids: set[int] = set()
                started: set[int] = set()  # forked, or started a thread: read again later too
                ended: set[int] = set()
                try:
                    while len(pids) < MAX_BATCH:
                        for what, pid, tgid in kernel.parse_proc_events(sock.recv(RECV_SIZE)):
                            if what == kernel.PROC_EVENT_FORK:
                                started.add(tgid)
                            if pid == tgid:
                                pids.add(pid)
                                if what == kernel.PROC_EVENT_EXIT:
                                    ended.add(pid)
                                else:
                                    ended.discard(pid)  # a pid used again after its exit
                            elif what == kernel.PROC_EVENT_EXIT and self._registry.has_tasks(tgid):
                                pids.add(tgid)  # a thread that held a namespace alone may be the one exiting
                            elif what in kernel.CREDENTIAL_EVENTS:
                                pids.add(tgid)  # who may read its holder lines follows its credentials
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        log.error("reading process events failed (%s): sweeping instead", exc.strerror)
                        return
                    log.warning("process events lost (%s): sweeping now", exc.strerror)  # a sweep catches up
                    nursery.start_soon(sweeps.rescan)
                self._rereads.follow_up(started - ended, ended)
                if not pids:
                    self._batches.events_read()  # a thread came: it may have made a namespace alone
                    continue  # only threads came and went (trio's own workers among them)
                # A process that came and went unread (a shell loop's `stat`) is gone: noted
                # as such without reading it, so that no late sweep read brings it back.
                gone = {pid for pid in ended if not self._registry.knows(pid)}
                await step("reading processes", functools.partial(self._rereads.apply, pids - gone, gone))
                self._batches.events_read()


async def _events_arrive(sock: socket.socket, patience: float = 1.0) -> bool:
    """Whether the exit of a child of ours shows up on `sock` within `patience` seconds."""
    try:
        child = await trio.lowlevel.open_process(["true"])
    except OSError:
        return False
    await child.wait()
    with trio.move_on_after(patience):
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                events = kernel.parse_proc_events(sock.recv(RECV_SIZE))
            except BlockingIOError:
                continue
            except OSError:  # ENOBUFS: what was lost may have been it
                return False
            if any(what == kernel.PROC_EVENT_EXIT and pid == child.pid for what, pid, _tgid in events):
                return True
    return False


async def _subscribed(host: str = HOST_NET) -> tuple[socket.socket | None, str]:
    """The proc connector's socket, once an event was seen to arrive on it; else None and why.

    The connector serves the initial network namespace only: elsewhere it refuses, or takes the
    subscription and sends nothing. So a daemon in a network namespace of its own (a
    container's, a pod's without hostNetwork) subscribes from `host`'s: the initial one, where
    the kernel's own threads are. Outside the initial pid and user namespaces nothing arrives either
    way, and sweeps are all there is."""
    # In a network namespace of its own a socket of its own hears nothing: the host's alone.
    elsewhere = _elsewhere(host)
    opener = functools.partial(_in_network_of, host, kernel.proc_events) if elsewhere else kernel.proc_events
    try:
        sock = await trio.to_thread.run_sync(opener)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    # See one event arrive before relying on them.
    if not await _events_arrive(sock):
        sock.close()
        return None, "none arrive"
    if elsewhere:
        log.info("process events from the host's network namespace (this daemon is in one of its own)")
    return sock, ""


def _in_network_of(host: str, open_socket: Callable[[], socket.socket]) -> socket.socket:
    """`open_socket()` in the network namespace `host` names, from a thread that enters it and
    ends there (the socket stays in that namespace; nothing else moves)."""
    opened: list[socket.socket] = []
    failed: list[OSError] = []

    def enter() -> None:
        try:
            fd = os.open(host, os.O_RDONLY | os.O_CLOEXEC)
            try:
                kernel.setns(fd, kernel.CLONE_FLAGS["net"])
            finally:
                os.close(fd)
            opened.append(open_socket())
        except OSError as exc:
            failed.append(exc)

    entering = threading.Thread(target=enter, name="nsfs-events", daemon=True)
    entering.start()
    entering.join()
    if failed:
        raise failed[0]
    return opened[0]


def _elsewhere(host: str) -> bool:
    """Whether this daemon's network namespace is not `host`'s."""
    try:
        return os.stat("/proc/self/ns/net").st_ino != os.stat(host).st_ino
    except OSError:
        return False
