"""The registry's bookkeeping and probe, over fake pins: which namespaces it keeps, how it
probes those nothing is found holding, and the holders it publishes."""

from __future__ import annotations

import errno
import itertools
import time
from collections.abc import Callable, Iterable

from nsfs_fuse.errors import Skip
from nsfs_fuse.model import Creds, Holder, HolderKind, Listing, NsKey, Opened, ProcessRead, Sighting, parse_ns_name
from nsfs_fuse.registry import Registry

USER0, PID0, NET0 = NsKey("user", 1), NsKey("pid", 2), NsKey("net", 3)
USER1, USER2 = NsKey("user", 10), NsKey("user", 11)  # USER2 is a child of USER1
PID1, PID2 = NsKey("pid", 20), NsKey("pid", 21)  # PID2 is a child of PID1
NET1, UTS1 = NsKey("net", 30), NsKey("uts", 31)
HOST_MNT, OTHER_MNT = NsKey("mnt", 4), NsKey("mnt", 5)

# key -> (owner, parent), as NS_GET_USERNS and NS_GET_PARENT would answer
TREE: dict[NsKey, tuple[NsKey | None, NsKey | None]] = {
    USER0: (None, None),
    PID0: (USER0, None),
    NET0: (USER0, None),
    USER1: (USER0, USER0),
    USER2: (USER1, USER1),
    PID1: (USER1, PID0),
    PID2: (USER2, PID1),
    NET1: (USER2, None),
    UTS1: (USER1, None),
    HOST_MNT: (USER0, None),
    OTHER_MNT: (USER0, None),
}


def above(key: NsKey) -> set[NsKey]:
    """Every owner and parent up from `key`: what it keeps alive in the kernel."""
    found: set[NsKey] = set()
    stack = [r for r in TREE[key] if r is not None]
    while stack:
        if (k := stack.pop()) not in found:
            found.add(k)
            stack.extend(r for r in TREE[k] if r is not None)
    return found


class FakePins:
    """Pins as the registry sees them; `alive` is what something no scan sees still holds."""

    def __init__(self, alive: Iterable[NsKey] = ()) -> None:
        self.alive = set(alive)
        self.open_pins: dict[int, NsKey] = {}
        self.suspended: set[int] = set()
        self.probed: list[NsKey] = []
        self._fds = itertools.count(100)
        self.room = True
        self.freed_at_once = False
        self.handles = True  # False: a kernel before 6.18, no nsfs file handles
        self.listed_opens: list[NsKey] = []  # what open_listed was asked to open
        self.faults: set[NsKey] = set()  # open_listed fails on these as on a fault

    def open(self, key: NsKey, sightings: list[Sighting], known: Callable[[NsKey], bool]) -> list[Opened]:
        opened: list[Opened] = []

        def describe(k: NsKey) -> None:
            owner, parent = TREE[k]
            for relative in (owner, parent):
                if relative is not None and not known(relative) and all(o.key != relative for o in opened):
                    describe(relative)
            fd = next(self._fds)
            self.open_pins[fd] = k
            handle = k.name.encode() if self.handles else None
            opened.append(Opened(k, fd, handle, k.inode, owner, parent, 0 if k.type == "user" else None))

        describe(key)
        return opened

    def open_listed(self, handle: bytes, known: Callable[[NsKey], bool]) -> tuple[NsKey | None, list[Opened]]:
        """As listns gives them: `handle` opens while the namespace is alive (or pinned); those
        in `faults` fail as a fault would."""
        key = parse_ns_name(handle.decode())
        assert key is not None
        self.listed_opens.append(key)
        if key in self.faults:
            raise Skip("open_by_handle", key.name, errno.EMFILE, answered=False)
        if not self._alive(key) and key not in self.open_pins.values():
            return None, []
        return key, [] if known(key) else self.open(key, [], known)

    def reopen(self, handle: bytes) -> int | None:
        return None

    def suspend(self, pin: int | None) -> None:
        assert pin is not None and pin in self.open_pins and pin not in self.suspended
        self.suspended.add(pin)

    def resume(self, name: str, pin: int | None, handle: bytes) -> tuple[bool, int | None]:
        assert pin in self.suspended
        key = self.open_pins[pin]
        assert key.name == name == handle.decode()
        self.probed.append(key)
        self.suspended.discard(pin)
        if self._alive(key):
            return True, pin
        del self.open_pins[pin]
        return False, None

    def gone(self, handle: bytes) -> bool:
        """The first look, right after suspending: unless `freed_at_once`, the kernel is
        still releasing what was dropped, and every namespace still opens."""
        key = parse_ns_name(handle.decode())
        assert key is not None
        return self.freed_at_once and not self._alive(key)

    def close(self, pin: int | None) -> None:
        if pin is not None:
            del self.open_pins[pin]
            self.suspended.discard(pin)

    def close_retired(self) -> None:
        pass

    def retired_due(self) -> float | None:
        return None

    def _alive(self, key: NsKey) -> bool:
        return key in self.alive or any(key in above(k) for k in self.alive)

    def pinned(self) -> set[NsKey]:
        """What the daemon holds a reference on: pins not suspended."""
        return {key for fd, key in self.open_pins.items() if fd not in self.suspended}


def read(pid: int, at: float, *keys: NsKey, kind: HolderKind = HolderKind.PROCESS) -> ProcessRead:
    holder = Holder(kind, pid, text="sh") if kind is HolderKind.PROCESS else Holder(kind, pid, 5)
    return ProcessRead(pid, at, tuple(Sighting(k, f"/proc/{pid}/ns/{k.type}", holder) for k in keys))


INITIAL = (USER0, PID0, NET0, HOST_MNT)


class FakeTables:
    """Followed mount tables as the registry sees them; `set` changes one, as the kernel would flag."""

    def __init__(self) -> None:
        self.content: dict[NsKey, list[Sighting]] = {}
        self.followed: set[NsKey] = set()
        self.flagged: set[NsKey] = set()
        self.started: list[int] = []

    def set(self, mnt: NsKey, mounts: list[Sighting]) -> None:
        self.content[mnt] = mounts
        self.flagged.add(mnt)

    def __contains__(self, mnt: NsKey) -> bool:
        return mnt in self.followed

    def watch(self, mnt: NsKey, members: Iterable[int], pin: int | None) -> list[Sighting] | None:
        self.followed.add(mnt)
        return list(self.content.get(mnt, []))

    def changed(
        self, members: Callable[[NsKey], Iterable[int]], pin: Callable[[NsKey], int | None]
    ) -> list[tuple[NsKey, list[Sighting]]]:
        found = [(mnt, list(self.content.get(mnt, []))) for mnt in self.flagged if mnt in self.followed]
        self.flagged.clear()
        return found

    def close(self, mnt: NsKey) -> None:
        self.followed.discard(mnt)


def world(pins: FakePins, tables: FakeTables | None = None, on_suspend: Callable[[], None] = lambda: None) -> Registry:
    """pid 1 in the initial namespaces; pid 50 in the nested ones."""
    registry = Registry(pins, tables, on_suspend=on_suspend)
    registry.update([read(1, 1.0, *INITIAL), read(50, 1.0, USER2, PID2, NET1, UTS1)])
    return registry


def names(registry: Registry) -> set[str]:
    return set(registry.snapshot.entries)


def test_owners_and_parents_are_kept_with_what_is_held() -> None:
    pins = FakePins()
    registry = world(pins)
    assert names(registry) == {k.name for k in TREE if k != OTHER_MNT}
    assert pins.pinned() == set(TREE) - {OTHER_MNT}
    assert pins.probed == []


def drain(registry: Registry) -> int:
    """Confirm what is suspended until nothing is (a parent is suspended once its last
    child is gone); how many rounds that took."""
    rounds = 0
    while registry.has_suspended():
        registry.confirm(registry.suspensions)
        rounds += 1
    return rounds


def test_what_lost_its_last_holder_is_suspended_then_probed_once_the_kernel_let_go() -> None:
    pins = FakePins()
    registry = world(pins)
    registry.update([ProcessRead(50, 2.0)])  # pid 50 is gone
    nested = {USER1, USER2, PID1, PID2, NET1, UTS1}
    # What it held directly is suspended at once; their owners and parents wait for them.
    assert pins.pinned() == set(INITIAL) | {USER1, USER2, PID1}
    assert names(registry) == {k.name for k in TREE if k != OTHER_MNT}  # still listed until probed
    assert registry.has_suspended() and pins.probed == []
    assert drain(registry) == 3  # leaves, then USER2 and PID1, then USER1
    assert set(pins.probed) == nested and len(pins.probed) == len(nested)
    assert names(registry) == {k.name for k in INITIAL}
    assert pins.pinned() == set(INITIAL)


def test_what_the_kernel_freed_at_once_is_released_without_waiting_for_the_probe() -> None:
    pins = FakePins(alive={NET1})  # an fd no scan saw holds NET1 (and so USER2, USER1)
    pins.freed_at_once = True
    woken: list[bool] = []
    registry = world(pins, on_suspend=lambda: woken.append(True))
    registry.update([ProcessRead(50, 2.0)])
    # The first look found PID2 and UTS1 gone, then PID1 (its last child gone): released
    # now. NET1 still opened: suspended, and the prober told.
    assert names(registry) == {k.name for k in (*INITIAL, NET1, USER2, USER1)}
    assert pins.probed == [] and woken == [True]
    drain(registry)
    assert holders(registry, NET1) == "unseen\n"
    assert pins.pinned() == set(INITIAL) | {NET1, USER2, USER1}


def test_confirm_probes_only_what_was_suspended_before_its_wait_began() -> None:
    pins = FakePins()
    registry = world(pins)
    registry.update([ProcessRead(50, 2.0)])
    upto = registry.suspensions
    registry.update([read(60, 2.0, NET0)])  # nothing new to suspend
    registry.update([ProcessRead(1, 2.0)])  # pid 1 goes too: the initial namespaces, suspended later
    registry.confirm(upto)
    assert PID0 not in pins.probed  # suspended later: not probed yet
    assert PID0.name in names(registry) and registry.has_suspended()
    drain(registry)
    assert names(registry) == {NET0.name, USER0.name}  # pid 60 still holds NET0, and so its owner


class Reader:
    def sees_name(self, name: str) -> bool:
        return True

    def pid(self, host_pid: int) -> int | None:
        return host_pid

    def reads(self, pid: int, creds: Creds | None) -> bool:
        return True


def holders(registry: Registry, key: NsKey) -> str:
    return registry.snapshot.holders[key.name].render(Reader())


def test_what_the_probe_finds_alive_is_kept_as_unseen_with_everything_above_it() -> None:
    pins = FakePins(alive={PID2})
    registry = world(pins)
    registry.update([ProcessRead(50, 2.0)])
    drain(registry)
    assert names(registry) == {k.name for k in (*INITIAL, PID2, PID1, USER2, USER1)}
    assert holders(registry, PID2) == "unseen\n"
    assert holders(registry, PID1) == "parent-of pid:[21]\n"
    assert holders(registry, USER2) == "owner-of pid:[21]\n"
    assert registry.has_unseen()

    pins.alive.clear()  # the fd in flight was closed
    registry.reprobe()
    assert holders(registry, PID2) == "unseen\n"  # until the probe says otherwise
    drain(registry)
    assert names(registry) == {k.name for k in INITIAL}
    assert not registry.has_unseen()


class Clock:
    """time.monotonic, as far as the registry's shared probe times go."""

    def __init__(self) -> None:
        self.now = 100.0

    def shared_due(self) -> float:
        return self.now + 0.3


def test_a_namespace_another_daemon_pins_waits_for_the_shared_probe() -> None:
    pins = FakePins(alive={NET1, USER2, USER1})  # the other daemon's pin keeps NET1 and its owners alive
    clock = Clock()
    registry = Registry(pins, FakeTables(), shared_due=clock.shared_due)
    registry.update([read(1, 1.0, *INITIAL), read(50, 1.0, USER2, PID2, NET1, UTS1)])
    other_daemon = ProcessRead(70, 1.5, (), frozenset({NET1}))
    registry.update([other_daemon, ProcessRead(50, 2.0)])
    # Dropped at once, listed until probed, and not probed before the shared moment:
    # the other daemon lets go of it by then, or its pin would answer the probe.
    assert NET1 not in pins.pinned() and NET1.name in names(registry)
    assert registry.probe_due() == float("-inf")  # the others (PID2, UTS1) are probed as usual
    while (due := registry.probe_due()) is not None and due <= clock.now:
        registry.confirm(registry.suspensions, began=clock.now)  # PID2 and UTS1, then PID1
    assert set(pins.probed) == {PID2, UTS1, PID1}
    assert registry.probe_due() == clock.now + 0.3
    pins.alive.clear()  # the other daemon dropped its pin too
    clock.now += 0.3
    registry.confirm(registry.suspensions, began=clock.now)
    assert NET1 in pins.probed
    drain(registry)
    assert names(registry) == {k.name for k in INITIAL}


def test_beside_another_daemon_what_only_the_probe_keeps_is_kept() -> None:
    pins = FakePins(alive={NET1})  # an fd in flight holds NET1; the other daemon pins it too
    clock = Clock()
    registry = Registry(pins, FakeTables(), shared_due=clock.shared_due)
    registry.update([read(1, 1.0, *INITIAL), read(50, 1.0, USER2, PID2, NET1, UTS1)])
    registry.update([ProcessRead(70, 1.5, (), frozenset({NET1})), ProcessRead(50, 2.0)])
    drain(registry)
    assert holders(registry, NET1) == "unseen\n"  # no longer released on the scan's word
    assert NET1 in pins.pinned()


def test_an_older_read_never_overwrites_a_newer_one() -> None:
    pins = FakePins()
    registry = world(pins)
    registry.update([ProcessRead(50, 0.5)])  # a sweep's read from before the event's
    assert NET1.name in names(registry)
    assert holders(registry, NET1) == "process 50 sh\n"


def test_a_read_replaces_everything_the_process_held() -> None:
    pins = FakePins()
    registry = world(pins)
    registry.update([read(50, 2.0, USER2, PID2, UTS1), read(60, 2.0, NET1, kind=HolderKind.FD)])
    assert holders(registry, NET1) == "fd 60 5\n"
    assert holders(registry, UTS1) == "process 50 sh\n"


def mount_of(key: NsKey, path: str, mnt: NsKey) -> Sighting:
    return Sighting(key, f"/proc/1/root{path}", Holder(HolderKind.MOUNT, text=path, ns=mnt.name))


def test_a_sweep_drops_processes_it_did_not_find() -> None:
    pins, tables = FakePins(), FakeTables()
    registry = world(pins, tables)
    assert HOST_MNT in tables.followed  # held by pid 1: its table is followed
    tables.set(HOST_MNT, [mount_of(NET1, "/run/netns/a", HOST_MNT)])
    registry.refresh_tables()
    registry.update([read(1, 3.0, *INITIAL)])
    registry.end_sweep(started=2.0)  # pid 50 was last read before the sweep began
    drain(registry)
    assert names(registry) == {k.name for k in (*INITIAL, NET1, USER2, USER1)}
    assert holders(registry, NET1) == "mount /run/netns/a mnt:[4]\n"
    tables.set(HOST_MNT, [])
    registry.refresh_tables()
    drain(registry)
    assert NET1.name not in names(registry)


def test_without_handles_a_parent_held_by_its_child_stays_and_goes_with_it() -> None:
    # No file handles (before Linux 6.18): nothing can be probed, so what is known decides.
    # PID1 is held only as PID2's parent, PID2 only by an fd: a sweep's end keeps both.
    pins = FakePins()
    pins.handles = False
    registry = world(pins)
    registry.update([read(1, 3.0, *INITIAL), read(60, 3.0, PID2, kind=HolderKind.FD)])
    registry.end_sweep(started=2.0)  # the sweep did not find pid 50: its namespaces lost it there
    assert {PID1, PID2, USER1, USER2} <= pins.pinned() and pins.probed == []
    assert holders(registry, PID1) == f"parent-of {PID2.name}\n"
    registry.update([read(1, 4.0, *INITIAL), ProcessRead(60, 4.0)])  # the fd closed: released at once, parents too
    registry.end_sweep(started=3.9)
    assert names(registry) == {k.name for k in INITIAL} and pins.pinned() == set(INITIAL)
    assert pins.probed == []


def test_a_mount_table_read_again_replaces_only_its_own_mounts() -> None:
    pins, tables = FakePins(), FakeTables()
    registry = world(pins, tables)
    registry.update([read(60, 1.5, OTHER_MNT)])
    assert tables.followed == {HOST_MNT, OTHER_MNT}
    tables.set(HOST_MNT, [mount_of(NET1, "/a", HOST_MNT)])
    tables.set(OTHER_MNT, [mount_of(NET1, "/b", OTHER_MNT)])
    registry.refresh_tables()
    registry.update([ProcessRead(50, 2.0)])  # NET1 is held by its mounts alone from here on
    first = registry.snapshot.entries[NET1.name]
    assert holders(registry, NET1) == "mount /a mnt:[4]\nmount /b mnt:[5]\n"
    tables.set(HOST_MNT, [])
    registry.refresh_tables()
    assert holders(registry, NET1) == "mount /b mnt:[5]\n"
    assert registry.snapshot.entries[NET1.name] is first  # never released meanwhile
    tables.set(OTHER_MNT, [])
    registry.refresh_tables()
    drain(registry)
    assert NET1.name not in names(registry)


def test_a_mount_namespace_that_dies_takes_its_bind_mounts_with_it() -> None:
    pins, tables = FakePins(), FakeTables()
    registry = world(pins, tables)
    registry.update([read(60, 1.5, OTHER_MNT)])
    tables.set(OTHER_MNT, [mount_of(NET1, "/b", OTHER_MNT)])
    registry.refresh_tables()
    registry.update([ProcessRead(50, 2.0), ProcessRead(60, 2.0)])  # NET1's mount namespace is left empty
    assert OTHER_MNT not in tables.followed  # its reader closed before its probe: it would hold it
    drain(registry)
    assert {OTHER_MNT.name, NET1.name}.isdisjoint(names(registry))


def test_entries_keep_their_serial_and_the_generation_moves_only_with_entries() -> None:
    pins = FakePins()
    registry = world(pins)
    first = registry.snapshot
    registry.update([read(50, 2.0, USER2, PID2, NET1, UTS1), read(51, 2.0, NET1, kind=HolderKind.FD)])
    assert registry.snapshot.generation == first.generation
    assert registry.snapshot.entries == first.entries
    assert holders(registry, NET1) == "process 50 sh\nfd 51 5\n"


def test_close_releases_every_pin() -> None:
    pins = FakePins()
    registry = world(pins)
    registry.close()
    assert pins.pinned() == set()
    assert names(registry) == set()


def test_a_new_namespace_with_a_suspended_ones_number_is_a_new_entry_with_its_holders() -> None:
    """`ip netns del a; ip netns add a` may give the new namespace the dead one's inode
    number while the dead one waits for its probe: the sighting must not go to the old entry."""
    pins = FakePins()
    registry = world(pins)
    old = registry.snapshot.entries[NET1.name]
    registry.update([read(50, 2.0, USER2, PID2, UTS1)])  # NET1 lost its last holder: suspended
    assert registry.has_suspended()
    registry.update([read(70, 3.0, NET1)])  # a new namespace, same number: the old one is dead
    new = registry.snapshot.entries[NET1.name]
    assert new.serial != old.serial
    assert holders(registry, NET1) == "process 70 sh\n"
    registry.confirm(registry.suspensions)
    assert registry.snapshot.entries[NET1.name] is new
    assert holders(registry, NET1) == "process 70 sh\n"


def test_a_suspended_namespace_held_again_stays_the_same_entry() -> None:
    pins = FakePins()
    registry = world(pins)
    old = registry.snapshot.entries[NET1.name]
    registry.update([read(50, 2.0, USER2, PID2, UTS1)])
    pins.alive.add(NET1)  # something no scan sees held it all along
    registry.update([read(70, 3.0, NET1)])
    assert registry.snapshot.entries[NET1.name] is old
    assert NET1 in pins.pinned()
    assert holders(registry, NET1) == "process 70 sh\n"


def test_a_process_that_exited_unread_is_noted_gone_and_a_late_sweep_read_cannot_bring_it_back() -> None:
    from nsfs_fuse.rereads import Rereads

    pins = FakePins()
    registry = world(pins)
    sweep_read = read(70, time.monotonic(), NET1)  # a sweep read pid 70 before it exited...
    assert not registry.knows(70)
    Rereads(registry, scanner=None, own_pid=0).apply([], gone=[70])  # type: ignore[arg-type]  # ...events saw it go
    assert registry.knows(70)
    registry.update([sweep_read])  # ...and the sweep's read arrives last
    assert "process 70" not in holders(registry, NET1)


def handles(*keys: NsKey) -> list[tuple[int, bytes]]:
    """(id, handle) as listns's ids give them (FakePins gives each the id of its inode number,
    and names it by its name)."""
    return [(k.inode, k.name.encode()) for k in keys]


def test_a_namespace_the_kernel_lists_that_no_read_holds_is_listed_at_once_as_unseen() -> None:
    pins = FakePins(alive={PID2})  # held by what no read sees (an fd in flight)
    registry = Registry(pins, FakeTables())
    registry.update([read(1, 1.0, *INITIAL)])
    # listns lists USER0 too: known, nothing happens to it; PID2 is to be searched for
    assert registry.listed(handles(USER0, PID2)) == Listing(unseen=[PID2], again=[])
    assert names(registry) == {k.name for k in (*INITIAL, PID2, PID1, USER2, USER1)}
    assert holders(registry, PID2) == "unseen\n"
    assert holders(registry, PID1) == "parent-of pid:[21]\n"  # kept by its child, not unseen
    assert holders(registry, USER2) == "owner-of pid:[21]\n"
    assert pins.pinned() == set(INITIAL) | {PID2, PID1, USER2, USER1}
    assert pins.probed == [] and not registry.has_suspended()  # listed without waiting for a probe

    pins.alive.clear()  # its holder let go: the probe judges it as any unseen one
    registry.reprobe()
    drain(registry)
    assert names(registry) == {k.name for k in INITIAL}
    assert not registry.has_unseen()


def test_a_listed_namespace_a_read_then_names_a_holder_of_is_no_longer_unseen() -> None:
    pins = FakePins(alive={NET1})
    registry = Registry(pins, FakeTables())
    registry.update([read(1, 1.0, *INITIAL)])
    assert registry.listed(handles(NET1)) == Listing(unseen=[NET1], again=[])
    assert holders(registry, NET1) == "unseen\n"
    registry.update([read(60, 2.0, NET1, kind=HolderKind.FD)])
    assert holders(registry, NET1) == "fd 60 5\n"
    assert not registry.has_unseen()


def test_what_a_read_named_first_is_not_unseen_when_the_kernel_lists_it() -> None:
    pins = FakePins()
    registry = world(pins)
    before = registry.snapshot
    # OTHER_MNT is dead: its handle no longer opens
    assert registry.listed(handles(*TREE)) == Listing(unseen=[], again=[])
    assert pins.listed_opens == [OTHER_MNT]  # what the index has is never opened
    assert registry.snapshot.entries == before.entries
    assert not registry.has_unseen()
    assert holders(registry, NET1) == "process 50 sh\n"
    assert pins.pinned() == set(TREE) - {OTHER_MNT}


def test_a_child_and_its_parent_listed_together_leave_only_the_child_unseen() -> None:
    for order in ((USER1, USER2, PID1, PID2), (PID2, PID1, USER2, USER1)):
        pins = FakePins(alive={PID2})
        registry = Registry(pins, FakeTables())
        registry.update([read(1, 1.0, *INITIAL)])
        assert registry.listed(handles(*order)) == Listing(unseen=[PID2], again=[]), order
        assert holders(registry, PID2) == "unseen\n", order
        assert holders(registry, PID1) == "parent-of pid:[21]\n", order
        assert holders(registry, USER1) == "owner-of pid:[20]\nparent-of user:[11]\n", order


def test_a_parent_listed_before_its_child_is_unseen_only_until_the_child_is_listed() -> None:
    pins = FakePins(alive={PID2})
    registry = Registry(pins, FakeTables())
    registry.update([read(1, 1.0, *INITIAL)])
    assert registry.listed(handles(PID1)) == Listing(unseen=[PID1], again=[])  # its child not made yet
    assert holders(registry, PID1) == "unseen\n"
    assert registry.listed(handles(PID2)) == Listing(unseen=[PID2], again=[])
    assert holders(registry, PID2) == "unseen\n"
    assert holders(registry, PID1) == "parent-of pid:[21]\n"  # its child keeps it: not unseen


def test_a_listed_namespace_whose_pinning_met_a_fault_is_handed_back_to_be_tried_again() -> None:
    pins = FakePins(alive={NET1})
    registry = Registry(pins, FakeTables())
    registry.update([read(1, 1.0, *INITIAL)])
    pins.faults = {NET1}
    assert registry.listed(handles(NET1, PID0)) == Listing(unseen=[], again=[NET1.inode])
    assert NET1.name not in names(registry)
    pins.faults.clear()
    assert registry.listed(handles(NET1)) == Listing(unseen=[NET1], again=[])
    assert holders(registry, NET1) == "unseen\n"
