"""Who holds what: the direct holders of each namespace, by where they come from.

A source is a process (its pid: what its latest read found) or a mount namespace
(its latest mount table: the bind mounts in it). A new read of a source replaces
everything it held before, whole, so a recycled pid, an exec or an exit is never
mixed with the past; a read older than the last one kept is dropped, so a slow
sweep never overwrites an event's fresher read.

A sweep's reader (sweeps.py) sends only the processes that changed since it last
read them; for the rest it says "the same as my last read of it, as of now" (`touch`).
That holds only while what is kept here is that last read: every pid whose kept read
may differ from it (changed by an event's read, or a sweep's read dropped for a later
one) is `dirty` until the reader is told to forget it (`take_dirty`) and reads it whole.

Bookkeeping only, under the registry's lock. It knows nothing of pins: a sighting
of a namespace is kept only if `pinned` says the namespace is (or could now be)
pinned; what changes is told to `changed`, and a namespace that loses its last
direct holder to `unheld`.

An initial namespace has a holder per process. Each namespace's holders are kept
in immutable maps by source, processes apart from mount tables (immutables.Map, a
hash array mapped trie): a process coming or going changes one in O(log n), and a
snapshot takes the maps as they are, with no copy, so publishing the holders of a
namespace with 20,000 costs what publishing one with 20 does. What is kept of each
process is small (`_Process`): there is one per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping
from dataclasses import dataclass
from itertools import chain

from immutables import Map

from .model import KINDS, Holder, HolderKind, NsKey, ProcessRead, Sighting

Source = int | NsKey

_NO_PROCESSES: Map[int, tuple[Holder, ...]] = Map()
_NO_TABLES: Map[NsKey, tuple[Holder, ...]] = Map()


def _is_member(holders: tuple[Holder, ...]) -> bool:
    return any(KINDS[h.kind].membership for h in holders)


class _Held:
    """The direct holders of one namespace, by source (see the module's doc): processes and
    mount tables apart, since only what processes hold is checked one by one (`loose`), and an
    `ip netns` bind mount is held in every mount namespace copied from the host's since."""

    __slots__ = ("members", "processes", "tables")

    def __init__(self) -> None:
        self.processes: Map[int, tuple[Holder, ...]] = Map()
        self.tables: Map[NsKey, tuple[Holder, ...]] = Map()
        self.members = 0  # sources that are in the namespace (a process, a thread), not just holding it

    def __bool__(self) -> bool:
        return bool(self.processes) or bool(self.tables)

    def by_source(self) -> tuple[Map[int, tuple[Holder, ...]], Map[NsKey, tuple[Holder, ...]]]:
        return self.processes, self.tables

    def put(self, source: Source, holders: tuple[Holder, ...]) -> bool:
        """Whether that changed anything."""
        if isinstance(source, int):
            before = self.processes.get(source)
            if before == holders:
                return False
            self.processes = self.processes.set(source, holders)
        else:
            before = self.tables.get(source)
            if before == holders:
                return False
            self.tables = self.tables.set(source, holders)
        self.members += _is_member(holders) - (before is not None and _is_member(before))
        return True

    def drop(self, source: Source) -> bool:
        """Whether `source` held it."""
        if isinstance(source, int):
            before = self.processes.get(source)
            if before is not None:
                self.processes = self.processes.delete(source)
        else:
            before = self.tables.get(source)
            if before is not None:
                self.tables = self.tables.delete(source)
        if before is None:
            return False
        self.members -= _is_member(before)
        return True


@dataclass(slots=True)
class _Process:
    """What is kept of one process's latest read: little, since there is one per process."""

    read_at: float  # of the read this state came from
    keys: tuple[NsKey, ...]  # what it holds (a tombstone, for a process that is gone, holds nothing)
    found: tuple[object, ...] = ()  # what that read found, as its key and holder pairs, flat (`_found`)
    retry: tuple[Sighting, ...] = ()  # its sightings, kept only while some could not be pinned


def _found(sightings: tuple[Sighting, ...]) -> tuple[object, ...]:
    """Sightings as what decides whether two reads found the same: each key and holder (a
    sighting's path follows from them), in one flat tuple rather than ten sightings and paths."""
    return tuple(chain.from_iterable((s.key, s.holder) for s in sightings))


class Holdings:
    def __init__(
        self,
        pinned: Callable[[NsKey, list[Sighting]], bool],
        changed: Callable[[NsKey], None],
        unheld: Callable[[NsKey], None],
    ) -> None:
        self._pinned = pinned
        self._changed = changed
        self._unheld = unheld
        self._held: dict[NsKey, _Held] = {}
        self._loose: set[NsKey] = set()  # held, but by no process or thread in it
        self._processes: dict[int, _Process] = {}
        self._mounts: dict[NsKey, tuple[NsKey, ...]] = {}  # what each mount table holds, by mount namespace
        self._daemons: dict[int, frozenset[NsKey]] = {}  # other nsfs daemons and what they pin
        self._threaded: set[int] = set()  # processes a thread of which holds a namespace alone
        self._dirty: set[int] = set()  # kept otherwise than the sweep's reader last read them

    # -- what is known ---------------------------------------------------------

    def keys(self) -> KeysView[NsKey]:
        """Every namespace something is known to hold directly."""
        return self._held.keys()

    def direct(self, key: NsKey) -> tuple[Mapping[int, tuple[Holder, ...]], Mapping[NsKey, tuple[Holder, ...]]]:
        """The direct holders of `key`, by source (processes, then mount tables): immutable maps,
        kept as they are by whoever takes them."""
        held = self._held.get(key)
        return (_NO_PROCESSES, _NO_TABLES) if held is None else held.by_source()

    def members(self, mnt: NsKey) -> Iterator[int]:
        """Processes in mount namespace `mnt`."""
        for source, holders in self.direct(mnt)[0].items():
            if any(h.kind is HolderKind.PROCESS for h in holders):
                yield source

    def daemon_pins(self) -> set[NsKey]:
        """What other nsfs daemons pin: their pins are not holders."""
        return set().union(*self._daemons.values())

    def has_tasks(self, pid: int) -> bool:
        """Whether a thread of process `pid` holds a namespace its process is not in."""
        return pid in self._threaded

    def knows(self, pid: int) -> bool:
        """Whether any read of process `pid` came in (one that found it gone among them)."""
        return pid in self._processes

    def loose(self) -> list[tuple[NsKey, Holder]]:
        """What processes hold of namespaces no process or thread is in (their fds and sockets):
        no event says when they go. Costs what those holders number, not what the machine holds,
        nor how many mount tables hold the same namespaces (followed by the kernel's flag)."""
        found: list[tuple[NsKey, Holder]] = []
        for key in self._loose:
            held = self._held[key]
            found.extend((key, h) for holders in held.processes.values() for h in holders)
        return found

    # -- what changes ------------------------------------------------------------

    def read(self, read: ProcessRead, swept: bool = False) -> None:
        """What process `read.pid` holds is now what `read` found, unless a later read came first.
        `swept`: the read comes from the sweep's reader (see the module's docstring)."""
        state = self._processes.get(read.pid)
        if state is not None and state.read_at > read.read_at:
            if swept:
                self._dirty.add(read.pid)  # an event read the process again while this read was on its way
            return
        if read.failed:
            # It says nothing for sure: what was kept stays, as of now, so that a sweep does
            # not take the process for gone. The sweep's reader does not remember such a read
            # (sweeps.Memory), so nothing is dirty for it.
            if state is not None:
                state.read_at = read.read_at
            return
        if swept:
            self._dirty.discard(read.pid)
        found = _found(read.sightings)
        if state is not None and self._same(state, read, found):
            state.read_at = read.read_at  # nothing to do but note the time
            return
        if not swept:
            self._dirty.add(read.pid)
        if read.daemon_pins:
            self._daemons[read.pid] = read.daemon_pins
        else:
            self._daemons.pop(read.pid, None)
        if any(s.holder.kind is HolderKind.TASK for s in read.sightings):
            self._threaded.add(read.pid)
        else:
            self._threaded.discard(read.pid)
        keys = self._replace(read.pid, read.sightings, () if state is None else state.keys)
        whole = len(keys) == len({s.key for s in read.sightings})
        self._processes[read.pid] = _Process(read.read_at, keys, found, () if whole else read.sightings)

    def touch(self, pid: int, read_at: float) -> bool:
        """The sweep's reader found process `pid` at `read_at` as it last read it. False if
        what is kept of it may differ from that read: then it must be read again, now."""
        state = self._processes.get(pid)
        if state is None:
            return False
        if state.read_at > read_at:
            return True  # a later read is kept (if it differs from the reader's, the pid is dirty)
        if pid in self._dirty:
            return False
        state.read_at = read_at
        if state.retry:  # a pin could not be had last time: try again
            self.read(ProcessRead(pid, read_at, state.retry, self._daemons.get(pid, frozenset())), swept=True)
        return True

    def take_dirty(self) -> set[int]:
        """The pids the sweep's reader must forget before its next sweep (and read whole)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def _same(self, state: _Process, read: ProcessRead, found: tuple[object, ...]) -> bool:
        """Whether `read` (which `found` what it found, `_found`) finds what the last read of its
        process found, all of it pinned."""
        return not state.retry and state.found == found and self._daemons.get(read.pid, frozenset()) == read.daemon_pins

    def mount_table(self, mnt: NsKey, mounts: Iterable[Sighting]) -> None:
        """The bind mounts in mount namespace `mnt` are now `mounts`."""
        self._mounts[mnt] = self._replace(mnt, mounts, self._mounts.get(mnt, ()))

    def end_sweep(self, started: float) -> None:
        """Processes no read since `started` found are gone."""
        for pid in [pid for pid, state in self._processes.items() if state.read_at < started]:
            self._replace(pid, (), self._processes.pop(pid).keys)
            self._daemons.pop(pid, None)
            self._threaded.discard(pid)

    def disown(self, pid: int, now: float) -> None:
        """Process `pid` is one of the daemon's helpers: it holds nothing, as of `now`."""
        state = self._processes.pop(pid, None)
        if state is not None:
            self._replace(pid, (), state.keys)
        self._processes[pid] = _Process(now, ())

    def forget(self, key: NsKey) -> None:
        """`key` is dead: it holds nothing and nothing holds it."""
        self._held.pop(key, None)
        self._loose.discard(key)
        self.forget_mounts(key)

    def forget_mounts(self, mnt: NsKey) -> None:
        """The bind mounts of `mnt` are no longer known (those it alone held become unheld)."""
        mounts = self._mounts.pop(mnt, ())
        if mounts:
            self._replace(mnt, (), mounts)

    def clear(self) -> None:
        for table in (self._held, self._processes, self._mounts, self._daemons):
            table.clear()
        self._threaded.clear()
        self._loose.clear()

    def _replace(self, source: Source, sightings: Iterable[Sighting], before: tuple[NsKey, ...]) -> tuple[NsKey, ...]:
        """Make `sightings` all that `source` holds; the keys it holds now."""
        by_key: dict[NsKey, list[Sighting]] = {}
        for sighting in sightings:
            by_key.setdefault(sighting.key, []).append(sighting)
        now: set[NsKey] = set()
        alone: dict[Holder, tuple[Holder, ...]] = {}  # a process is the one holder of its 8 links: one tuple
        for key, found in by_key.items():
            if self._pinned(key, found):
                if len(found) == 1:
                    holders = alone.setdefault(found[0].holder, (found[0].holder,))
                else:
                    holders = tuple(s.holder for s in found)
                self._hold(key, source, holders)
                now.add(key)
        for key in before:
            if key in now:
                continue
            held = self._held.get(key)
            if held is not None and held.drop(source):
                self._changed(key)
                if held:
                    self._note_loose(key, held)
                else:
                    del self._held[key]
                    self._loose.discard(key)
                    self._unheld(key)
        return tuple(now)

    def _hold(self, key: NsKey, source: Source, holders: tuple[Holder, ...]) -> None:
        held = self._held.setdefault(key, _Held())
        if held.put(source, holders):
            self._note_loose(key, held)
            self._changed(key)

    def _note_loose(self, key: NsKey, held: _Held) -> None:
        if held.members:
            self._loose.discard(key)
        else:
            self._loose.add(key)
