"""Following the kernel's list of namespaces: what is new since the last look, when it is
handed over, and a kernel without listns. The list here is a sorted list of ids, as listns gives
them; the real call is exercised in the 7.3 guest (tests/test_entries.py)."""

from __future__ import annotations

import errno
from collections.abc import Iterable

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from nsfs_fuse import errors
from nsfs_fuse.listed import AGAIN_AFTER, PAGE, ListedNamespaces
from nsfs_fuse.model import Listing, NsKey
from nsfs_fuse.options import parse_args
from nsfs_fuse.tasks import Alarm


class Kernel:
    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.ids = sorted(ids)
        self.calls: list[tuple[int, int]] = []
        self.fail: int | None = None

    def listns(self, after: int, count: int) -> list[int]:
        self.calls.append((after, count))
        if self.fail is not None:
            raise OSError(self.fail, "listns")
        return [i for i in self.ids if i > after][:count]


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def key_of(ns_id: int) -> NsKey:
    return NsKey("net", 4026530000 + ns_id)


class Registry:
    """Knows the ids in `known`; fails to pin those in `faulty` (handed back, as Registry.listed
    does); a read holds those in `held` (the others are pinned `unseen`)."""

    def __init__(self, known: Iterable[int] = (), faulty: Iterable[int] = (), held: Iterable[int] = ()) -> None:
        self.known = set(known)
        self.faulty = set(faulty)
        self.held = set(held)
        self.given: list[list[int]] = []

    def knows_id(self, ns_id: int) -> bool:
        return ns_id in self.known

    def listed(self, listed: Iterable[tuple[int, bytes]]) -> Listing:
        ids = [i for i, _handle in listed]
        self.given.append(ids)
        pinned = [i for i in ids if i not in self.faulty]
        self.known |= set(pinned)
        return Listing(
            unseen=[key_of(i) for i in pinned if i not in self.held], again=[i for i in ids if i in self.faulty]
        )


def following(kernel: Kernel, clock: Clock, registry: Registry | None = None) -> ListedNamespaces:
    return ListedNamespaces(registry=registry or Registry(), clock=clock, listns=kernel.listns)


def test_ids_listed_while_no_process_event_is_gathering_are_handed_over_at_once_and_once() -> None:
    kernel, clock = Kernel([1, 2, 3]), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    assert listed.ready()
    assert listed.take() == [1, 2, 3]
    assert not listed.ready() and listed.take() == []
    kernel.ids += [7]
    assert listed.look() and listed.take() == [7]
    assert listed.look() and listed.take() == []
    assert kernel.calls[-1] == (7, PAGE)  # only what lies above the last id seen is asked for


def test_ids_listed_while_a_batch_of_process_events_gathers_wait_until_it_is_read() -> None:
    kernel, clock = Kernel([1]), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    listed.events_gathering()
    kernel.ids += [4, 5]
    assert listed.look()
    assert listed.take() == [1]  # listed before the batch began: its events cannot name it
    assert not listed.ready() and listed.take() == []
    listed.events_read()
    listed.events_gathering()  # the next batch, at once
    kernel.ids += [9]
    assert listed.look()
    assert listed.take() == [4, 5]  # the batch they waited for was read; 9 waits for the next
    listed.events_read()
    assert listed.take() == [9]


def test_a_long_list_is_read_a_page_at_a_time() -> None:
    kernel, clock = Kernel(range(1, 2 * PAGE + 6)), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    assert [after for after, _ in kernel.calls] == [0, PAGE, 2 * PAGE]
    assert listed.take() == list(range(1, 2 * PAGE + 6))


def test_a_page_exactly_full_asks_once_more_and_takes_none_as_the_end() -> None:
    kernel, clock = Kernel(range(1, PAGE + 1)), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    assert kernel.calls == [(0, PAGE), (PAGE, PAGE)]


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP])
def test_a_kernel_without_listns_ends_the_task(code: int) -> None:
    kernel, clock = Kernel([1]), Clock()
    kernel.fail = code
    assert not following(kernel, clock).look()


def test_a_fault_is_counted_and_the_next_look_goes_on_from_the_last_id() -> None:
    kernel, clock = Kernel([1, 2]), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    kernel.fail = errno.EIO
    before = errors.TALLY.counts().get(("listns", errno.EIO), 0)
    assert listed.look()
    assert errors.TALLY.counts()[("listns", errno.EIO)] == before + 1
    kernel.fail = None
    kernel.ids += [5]
    assert listed.look()
    assert listed.take() == [1, 2, 5]


def test_only_ids_the_index_lacks_are_pinned_and_a_fault_is_tried_again_later() -> None:
    kernel, clock = Kernel([1, 2, 3, 4]), Clock()
    registry = Registry(known=[2], faulty=[3])
    listed = following(kernel, clock, registry)
    assert listed.look()
    listed._hand_over(listed.take())
    assert registry.given == [[1, 3, 4]]
    registry.faulty.clear()
    clock.now += AGAIN_AFTER / 2
    assert listed.look() and listed.take() == []
    clock.now += AGAIN_AFTER / 2
    assert listed.look() and listed.take() == [3]
    listed._hand_over([3])
    assert registry.given == [[1, 3, 4], [3]]
    listed._hand_over([1, 2, 3, 4])
    assert registry.given == [[1, 3, 4], [3]]  # all known: the registry is not asked


def test_the_likely_holders_are_read_first_and_only_what_no_read_holds_is_searched_for() -> None:
    kernel, clock, registry = Kernel([1, 2, 3, 6]), Clock(), Registry(known=[1], held=[6])
    recent: set[int] = {2}  # what the processes forked lately hold
    asked: list[str] = []

    def read_recent() -> None:
        asked.append("read recent")
        registry.known |= recent

    def search(keys: list[NsKey]) -> None:
        asked.append(f"search {' '.join(k.name for k in keys)}")

    listed = ListedNamespaces(registry, read_recent, search, clock, kernel.listns)
    assert listed.look()
    listed._hand_over(listed.take())
    assert asked == ["read recent", "search net:[4026530003]"]  # 6 was pinned with a holder
    assert registry.given == [[3, 6]]
    asked.clear()
    kernel.ids += [7]
    registry.known.add(7)  # its process's events came first
    assert listed.look()
    listed._hand_over(listed.take())
    assert asked == []  # nothing lacking: nothing read
    kernel.ids += [8]
    recent.add(8)
    assert listed.look()
    listed._hand_over(listed.take())
    assert asked == ["read recent"]  # all held after the read: nothing searched for
    assert registry.given == [[3, 6]]
    kernel.ids += [9]
    registry.held.add(9)
    assert listed.look()
    listed._hand_over(listed.take())
    assert asked == ["read recent", "read recent"]  # pinned, and held: nothing searched for
    assert registry.given == [[3, 6], [9]]


@given(
    st.lists(
        st.tuples(st.lists(st.integers(1, 3 * PAGE), max_size=2 * PAGE), st.sampled_from(["gather", "read", "none"])),
        max_size=8,
    )
)
def test_every_id_made_is_handed_over_once_in_order(batches: list[tuple[list[int], str]]) -> None:
    kernel, clock = Kernel(), Clock()
    listed = following(kernel, clock)
    taken: list[int] = []
    top = 0
    for batch, events in batches:  # ids only grow: each batch is made after the last
        new = sorted({top + i for i in batch})
        kernel.ids += new
        top = max([top, *new])
        if events == "gather":
            listed.events_gathering()
        elif events == "read":
            listed.events_read()
        assert listed.look()
        taken += listed.take()
    listed.events_read()
    taken += listed.take()
    assert taken == kernel.ids


def test_the_option_nolistns_turns_it_off() -> None:
    assert parse_args(["/run/namespaces"]).listns
    assert not parse_args(["/run/namespaces", "-o", "ro,nolistns"]).listns


def test_run_ends_where_the_kernel_has_no_listns() -> None:
    kernel = Kernel([1])
    kernel.fail = errno.ENOSYS
    listed = ListedNamespaces(registry=None, listns=kernel.listns)  # type: ignore[arg-type]

    async def bounded() -> bool:
        with trio.move_on_after(5) as scope:
            await listed.run()
        return scope.cancelled_caught

    assert not trio.run(bounded)  # returned, not cancelled after 5 s
    assert kernel.calls == [(0, PAGE)]


def test_run_hands_over_what_is_made_and_holds_what_a_gathering_batch_may_name() -> None:
    """The looks' thread and the loop together, in real time (generous bounds, no timing asserted)."""
    kernel, registry = Kernel([1]), Registry()
    listed = ListedNamespaces(registry=registry, listns=kernel.listns)

    async def given(ids: list[int]) -> bool:
        with trio.move_on_after(10):
            while ids not in registry.given:
                await trio.sleep(0.01)
            return True
        return False

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listed.run)
            assert await given([1])
            listed.events_gathering()
            kernel.ids += [2]
            await trio.sleep(1)  # twenty looks
            assert registry.given == [[1]]
            listed.events_read()
            assert await given([2])
            kernel.ids += [3]  # no batch: the thread's own look finds it
            assert await given([3])
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert registry.given == [[1], [2], [3]]


def test_an_alarm_rung_before_its_first_wait_is_not_lost() -> None:
    """The looks' thread may find something before the loop first waits."""
    alarm = Alarm()
    alarm.ring()

    async def main() -> bool:
        with trio.move_on_after(5) as scope:
            await alarm.wait()
        return scope.cancelled_caught

    assert not trio.run(main)
