"""After a lookup of a name the index lacks: reading what the caller could have got the name
from (its own process, the mount tables that changed), paced per user. Never the whole machine.
"""

from __future__ import annotations

import time
from typing import Final

import trio

from . import discovery
from .registry import Registry
from .rereads import Rereads

# Lookups of names the index lacks that one user may have looked into per second. At
# 5,000 processes, with a loop of made-up lookups, 20 cost the daemon 14.8% of a core
# above idle; 5, 12.4-13.0% (the loop's floors: 3.5-4.0% following its processes,
# 6.7-7.1% on a pyfuse3 filesystem that does nothing).
MISSES_PER_SECOND: Final = 5
# Callers (users, processes) remembered for pacing before the ones whose time has passed are dropped.
REMEMBERED: Final = 4096


class MissReads:
    """After a lookup miss: read what the caller could have got the name from, and nothing else.

    That is its own process (ns links, threads, fds, sockets) and the mount tables
    that changed. One caller at a time; a process is read again for a lookup only
    after ten times what its last read cost.

    A loop of lookups of made-up names would keep the daemon looking as fast as it
    can: a user's misses are looked into at most MISSES_PER_SECOND times a second;
    the others are answered at once from what is known. Never by waiting: the kernel
    runs one LOOKUP or READDIR of a directory at a time unless the filesystem said
    FUSE_PARALLEL_DIROPS at INIT, and pyfuse3 with libfuse 3.14 or 3.17 never says it
    (INIT reply flags 0x4040b039: libfuse 3.14 sets it in conn.want and never copies it
    into the reply, which pyfuse3 cannot reach). So while one caller's lookup in the root
    waits, every other caller's lookups and `ls` of the root wait too: two 1 s lookups
    of different names take 2 s, and root's `ls -l` took 1.7-2.5x its time while a loop
    of sleeping misses ran (answered at once, 0.7-1.4x). A look into a process (a few
    ms) is such a wait as well, hence few of them.
    """

    def __init__(self, rereads: Rereads, registry: Registry) -> None:
        self._rereads = rereads
        self._registry = registry
        self._limiter = trio.CapacityLimiter(1)
        self._not_before: dict[int, float] = {}  # pid -> when a lookup may read it again
        self._turn: dict[int, float] = {}  # uid -> when its next miss may be looked into

    async def own(self, tid: int) -> None:
        """The calling thread is in a namespace the index lacks: read its process, always."""
        await trio.to_thread.run_sync(self._read, tid, limiter=self._limiter)

    async def look(self, tid: int, uid: int) -> None:
        """Read what thread `tid` of user `uid` could have learned a name from, if it is the
        user's turn."""
        now = trio.current_time()
        if now < self._turn.get(uid, now):
            return  # not its turn: answered from what is known, at once
        if len(self._turn) > REMEMBERED:
            self._turn = {u: t for u, t in self._turn.items() if t > now}
        self._turn[uid] = now + 1 / MISSES_PER_SECOND
        await trio.to_thread.run_sync(self._look, tid, limiter=self._limiter)

    def _read(self, tid: int) -> None:
        if (pid := discovery.process_of(tid)) is not None:
            self._rereads.apply([pid])

    def _look(self, tid: int) -> None:
        pid = discovery.process_of(tid)
        now = time.monotonic()
        if pid is None or now < self._not_before.get(pid, 0.0):
            return
        cpu = time.thread_time()
        self._registry.refresh_tables()  # a bind mount made just now: its table's change may be on its way
        self._rereads.apply([pid])
        if len(self._not_before) > REMEMBERED:
            self._not_before = {p: t for p, t in self._not_before.items() if t > now}
        self._not_before[pid] = now + 10 * (time.thread_time() - cpu)
