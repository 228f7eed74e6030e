"""The registry's bookkeeping and probe, over fake pins: which namespaces it keeps, in what order
it probes those nothing is found holding, and the holders it publishes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from nsfs_fuse.model import Holder, HolderKind, NsKey, Opened, ProcessRead, Sighting
from nsfs_fuse.registry import Registry

USER0, PID0, NET0 = NsKey("user", 1), NsKey("pid", 2), NsKey("net", 3)
USER1, USER2 = NsKey("user", 10), NsKey("user", 11)  # USER2 is a child of USER1
PID1, PID2 = NsKey("pid", 20), NsKey("pid", 21)  # PID2 is a child of PID1
NET1, UTS1 = NsKey("net", 30), NsKey("uts", 31)
HOST_MNT = NsKey("mnt", 4)  # not pinned: only the name of a table

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
}


class FakePins:
    """Pins as the registry sees them; `alive` is what something no scan sees still holds."""

    def __init__(self, alive: Iterable[NsKey] = ()) -> None:
        self.alive = set(alive)
        self.open_pins: dict[int, NsKey] = {}
        self.probed: list[NsKey] = []
        self._fds = itertools.count(100)
        self.room = True

    def open(self, key: NsKey, sightings: list[Sighting], known: Callable[[NsKey], bool]) -> list[Opened]:
        opened: list[Opened] = []

        def describe(k: NsKey) -> None:
            owner, parent = TREE[k]
            for relative in (owner, parent):
                if relative is not None and not known(relative) and all(o.key != relative for o in opened):
                    describe(relative)
            fd = next(self._fds)
            self.open_pins[fd] = k
            opened.append(Opened(k, fd, k.name.encode(), None, owner, parent, 0 if k.type == "user" else None))

        describe(key)
        return opened

    def reopen(self, handle: bytes) -> int | None:
        return None

    def probe(self, name: str, pin: int | None, handle: bytes) -> tuple[bool, int | None]:
        key = self.open_pins.pop(pin) if pin is not None else None
        assert key is not None and key.name == name
        self.probed.append(key)
        if key not in self.alive:
            return False, None
        fd = next(self._fds)
        self.open_pins[fd] = key
        return True, fd

    def close(self, pin: int | None) -> None:
        if pin is not None:
            del self.open_pins[pin]

    def pinned(self) -> set[NsKey]:
        return set(self.open_pins.values())


def read(pid: int, at: float, *keys: NsKey, kind: HolderKind = HolderKind.PROCESS) -> ProcessRead:
    holder = Holder(kind, pid, text="sh") if kind is HolderKind.PROCESS else Holder(kind, pid, 5)
    return ProcessRead(pid, at, tuple(Sighting(k, f"/proc/{pid}/ns/{k.type}", holder) for k in keys))


INITIAL = (USER0, PID0, NET0)


def world(pins: FakePins) -> Registry:
    """pid 1 in the initial namespaces; pid 50 in the nested ones."""
    registry = Registry(pins)
    registry.update([read(1, 1.0, *INITIAL), read(50, 1.0, USER2, PID2, NET1, UTS1)])
    return registry


def names(registry: Registry) -> set[str]:
    return set(registry.snapshot.entries)


def test_owners_and_parents_are_kept_with_what_is_held() -> None:
    pins = FakePins()
    registry = world(pins)
    assert names(registry) == {k.name for k in TREE}
    assert pins.pinned() == set(TREE)
    assert pins.probed == []


def test_leaves_are_probed_first_then_pid_then_user_namespaces_deepest_first() -> None:
    pins = FakePins()
    registry = world(pins)
    assert registry.update([ProcessRead(50, 2.0)]) is False  # pid 50 is gone
    assert set(pins.probed[:2]) == {NET1, UTS1}
    assert pins.probed[2:] == [PID2, PID1, USER2, USER1]
    assert names(registry) == {k.name for k in INITIAL}
    assert pins.pinned() == set(INITIAL)


class Reader:
    def sees_name(self, name: str) -> bool:
        return True

    def pid(self, host_pid: int) -> int | None:
        return host_pid


def holders(registry: Registry, key: NsKey) -> str:
    return registry.snapshot.holders[key.name].render(Reader())


def test_what_the_probe_finds_alive_is_kept_as_unseen_with_everything_above_it() -> None:
    pins = FakePins(alive={PID2})
    registry = world(pins)
    assert registry.update([ProcessRead(50, 2.0)]) is True
    assert set(pins.probed) == {NET1, UTS1, PID2}  # PID2's pin keeps PID1, USER2, USER1 alive
    assert names(registry) == {k.name for k in (*INITIAL, PID2, PID1, USER2, USER1)}
    assert holders(registry, PID2) == "unseen\n"
    assert holders(registry, PID1) == "parent-of pid:[21]\n"
    assert holders(registry, USER2) == "owner-of pid:[21]\n"
    assert registry.has_unseen()

    pins.alive.clear()  # the fd in flight was closed
    registry.reprobe()
    assert names(registry) == {k.name for k in INITIAL}
    assert not registry.has_unseen()


def test_a_namespace_another_daemon_pins_is_released_without_a_probe() -> None:
    pins = FakePins(alive={NET1, USER2, USER1})  # the other daemon's pin keeps NET1 and its owners alive
    registry = world(pins)
    other_daemon = ProcessRead(70, 1.5, (), frozenset({NET1}))
    registry.update([other_daemon, ProcessRead(50, 2.0)])
    assert set(pins.probed) == {UTS1, PID2, PID1}  # NET1 and what is above it: the scan's word is final
    assert names(registry) == {k.name for k in INITIAL}


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


def test_a_sweep_drops_processes_it_did_not_find_and_replaces_bind_mounts() -> None:
    pins = FakePins()
    registry = world(pins)
    mount = Sighting(NET1, "/proc/1/root/run/netns/a", Holder(HolderKind.MOUNT, text="/run/netns/a", ns=HOST_MNT.name))
    registry.update([read(1, 3.0, *INITIAL)])
    registry.end_sweep({HOST_MNT: [mount]}, started=2.0)  # pid 50 was last read before the sweep began
    assert names(registry) == {k.name for k in (*INITIAL, NET1, USER2, USER1)}
    assert holders(registry, NET1) == "mount /run/netns/a mnt:[4]\n"
    registry.end_sweep({HOST_MNT: []}, started=4.0)
    assert NET1.name not in names(registry)


def test_a_mount_table_read_again_replaces_only_its_own_mounts() -> None:
    pins = FakePins()
    registry = world(pins)
    other_mnt = NsKey("mnt", 5)
    in_host = Sighting(NET1, "/proc/1/root/a", Holder(HolderKind.MOUNT, text="/a", ns=HOST_MNT.name))
    in_other = Sighting(NET1, "/proc/9/root/b", Holder(HolderKind.MOUNT, text="/b", ns=other_mnt.name))
    assert registry.update_mounts(HOST_MNT, [in_host]) is False
    assert registry.update_mounts(other_mnt, [in_other]) is False
    registry.update([ProcessRead(50, 2.0)])  # NET1 is held by its mounts alone from here on
    first = registry.snapshot.entries[NET1.name]
    assert holders(registry, NET1) == "mount /a mnt:[4]\nmount /b mnt:[5]\n"
    registry.update_mounts(HOST_MNT, [])
    assert holders(registry, NET1) == "mount /b mnt:[5]\n"
    assert registry.snapshot.entries[NET1.name] is first  # never released meanwhile
    registry.end_sweep({HOST_MNT: []}, started=1.5)  # the other table was not read: it holds nothing
    assert NET1.name not in names(registry)


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
