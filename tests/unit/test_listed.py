"""Following the kernel's list of namespaces: what is new since the last look, how long it
waits, and a kernel without listns. The list here is a sorted list of ids, as listns gives
them; the real call is exercised in the 7.3 guest (tests/test_entries.py)."""

from __future__ import annotations

import errno
from collections.abc import Iterable

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from nsfs_fuse import errors
from nsfs_fuse.listed import LIST_EVERY, PAGE, SETTLE, ListedNamespaces
from nsfs_fuse.options import parse_args


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


def following(kernel: Kernel, clock: Clock) -> ListedNamespaces:
    return ListedNamespaces(registry=None, clock=clock, listns=kernel.listns)  # type: ignore[arg-type]


def test_new_ids_wait_before_they_are_handed_over_and_each_is_handed_over_once() -> None:
    kernel, clock = Kernel([1, 2, 3]), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    assert listed.due() == []  # a new process's namespaces are read through its events meanwhile
    clock.now += SETTLE / 2
    kernel.ids += [7]
    assert listed.look()
    clock.now += SETTLE / 2
    assert listed.due() == [1, 2, 3]
    clock.now += SETTLE / 2
    assert listed.due() == [7]
    assert listed.look() and listed.due() == []
    assert kernel.calls[-1] == (7, PAGE)  # only what lies above the last id seen is asked for


def test_a_long_list_is_read_a_page_at_a_time() -> None:
    kernel, clock = Kernel(range(1, 2 * PAGE + 6)), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    assert [after for after, _ in kernel.calls] == [0, PAGE, 2 * PAGE]
    clock.now += SETTLE
    assert listed.due() == list(range(1, 2 * PAGE + 6))


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
    clock.now += SETTLE
    assert listed.due() == [1, 2, 5]


@given(st.lists(st.lists(st.integers(1, 3 * PAGE), max_size=2 * PAGE), max_size=6))
def test_every_id_made_is_handed_over_once_in_order(batches: list[list[int]]) -> None:
    kernel, clock = Kernel(), Clock()
    listed = following(kernel, clock)
    taken: list[int] = []
    top = 0
    for batch in batches:  # ids only grow: each batch is made after the last
        new = sorted({top + i for i in batch})
        kernel.ids += new
        top = max([top, *new])
        assert listed.look()
        clock.now += SETTLE
        taken += listed.due()
    assert taken == kernel.ids


def test_the_option_nolistns_turns_it_off() -> None:
    assert parse_args(["/run/namespaces"]).listns
    assert not parse_args(["/run/namespaces", "-o", "ro,nolistns"]).listns


def test_the_next_look_is_when_a_wait_ends_or_the_period_since_the_last_look() -> None:
    kernel, clock = Kernel(), Clock()
    listed = following(kernel, clock)
    assert listed.look()
    assert listed.next_look() == clock.now + LIST_EVERY  # nothing waits
    clock.now += 0.01
    kernel.ids += [3]
    assert listed.look()
    assert listed.next_look() == clock.now + min(SETTLE, LIST_EVERY)
    clock.now += SETTLE
    assert listed.due() == [3]
    assert listed.next_look() == clock.now - SETTLE + LIST_EVERY


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
