"""Process events (fork, exec, exit, credential changes) from the kernel's proc connector,
folded into the registry: each process they name is read again, in batches.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
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


class Sweeps(Protocol):
    """What events need of the sweeps (service.Refresher)."""

    interval: float
    following_events: bool

    async def rescan(self) -> None: ...


class ProcessEvents:
    """Process events folded into the registry: each named process is read again."""

    def __init__(self, registry: Registry, rereads: Rereads) -> None:
        self._registry = registry
        self._rereads = rereads

    async def follow(self, sweeps: Sweeps) -> None:
        """Read fork, exec and exit events until cancelled.

        Without them (no proc connector, or a daemon outside the initial pid and
        user namespaces) the sweeps are all there is, and the log says so once.
        """
        try:
            sock = kernel.proc_events()
        except OSError as exc:
            log.warning("process events unavailable (%s): sweeping every %g s instead", exc.strerror, sweeps.interval)
            return
        with sock:
            # Outside the initial pid and user namespaces the kernel accepts the
            # subscription and sends nothing: see one event arrive before relying on them.
            if not await _events_arrive(sock):
                log.warning("process events unavailable (none arrive): sweeping every %g s instead", sweeps.interval)
                return
            sweeps.following_events = True
            log.info("following process events")
            try:
                await self._follow(sock, sweeps)
            finally:
                sweeps.following_events = False

    async def _follow(self, sock: socket.socket, sweeps: Sweeps) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(sock)
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
                    continue  # only threads came and went (trio's own workers among them)
                # A process that came and went unread (a shell loop's `stat`) is gone: noted
                # as such without reading it, so that no late sweep read brings it back.
                gone = {pid for pid in ended if not self._registry.knows(pid)}
                await step("reading processes", functools.partial(self._rereads.apply, pids - gone, gone))


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
