"""A pin's fd number outlives the pin: let go at once, reused only after RETIRE_SECONDS."""

from __future__ import annotations

import errno
import os

import pytest

from nsfs_fuse.pins import RETIRE_SECONDS, Budget, Pins


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def a_pin(budget: Budget) -> int:
    assert budget.take()
    return os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # stands for a namespace fd


def reopen(fd: int) -> int:
    """What following an `ns` link to fd `fd` of this process does."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def test_a_closed_pin_opens_nothing_until_its_number_is_closed() -> None:
    clock, budget = Clock(), Budget(10)
    pins = Pins(0, budget, clock)
    first, second = a_pin(budget), a_pin(budget)
    pins.close(first)
    assert budget.used == 2  # still counted: its number is taken
    with pytest.raises(OSError) as raised:
        reopen(first)
    assert raised.value.errno == errno.ENXIO
    assert pins.retired_due() == clock.now + RETIRE_SECONDS
    clock.now += RETIRE_SECONDS - 0.1
    pins.close(second)
    pins.close_retired()
    assert budget.used == 2  # both numbers still taken
    clock.now += 0.1
    pins.close_retired()
    assert budget.used == 1
    with pytest.raises(OSError) as raised:
        os.fstat(first)
    assert raised.value.errno == errno.EBADF
    with pytest.raises(OSError) as raised:
        reopen(second)
    assert raised.value.errno == errno.ENXIO
    clock.now += RETIRE_SECONDS
    pins.close_retired()
    assert (budget.used, pins.retired_due()) == (0, None)


def test_a_suspended_pin_opens_nothing() -> None:
    clock, budget = Clock(), Budget(10)
    pins = Pins(0, budget, clock)
    pin = a_pin(budget)
    pins.suspend(pin)
    with pytest.raises(OSError) as raised:
        reopen(pin)
    assert raised.value.errno == errno.ENXIO
    assert budget.used == 1
    clock.now += RETIRE_SECONDS
    pins.close(pin)
    clock.now += RETIRE_SECONDS
    pins.close_retired()
    assert (budget.used, pins.retired_due()) == (0, None)
