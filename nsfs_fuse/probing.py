"""When the daemon probes: suspended namespaces once the kernel has finished releasing what
the daemon let go of (Prober), what only the probe keeps again every REPROBE_EVERY, and the
closing of released pins' fd numbers (Retirer). What a probe does is the registry's
(`Registry.confirm`); docs/design.md, "Pins and the probe", says why.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Final

import trio

from . import kernel
from .registry import Registry
from .suspended import SHARED_SLOT
from .tasks import Alarm, step, trio_time

# Between dropping the daemon's references on a namespace and probing it
# (registry._suspend): three RCU grace periods, then a little longer. After one, a
# namespace whose last process had just exited still opened by handle in 10 of 10
# tries; after three, in none on an idle machine but 1 of 10 with 5,000 processes
# running; after three and 50 ms, in none (about 100 ms in all).
GRACE_PERIODS: Final = 3
AFTER_GRACE: Final = 0.05

# How often what only the probe keeps (an fd in flight, say) is probed again: at the same
# moments of the wall clock in every nsfs daemon (a multiple of suspended.SHARED_SLOT), a
# little before one, so that beside other daemons all of them let go of a namespace they
# all keep for one shared probe (suspended.shared_probe_time).
REPROBE_EVERY: Final = 0.5
REPROBE_LEAD: Final = 0.03


class Prober:
    """Probes suspended namespaces once their time has come and the kernel has finished
    releasing what the daemon let go of; suspends again, every REPROBE_EVERY, what only the
    probe keeps. Sleeps until the registry suspends something (it rings `alarm`), a
    suspended namespace's time comes, or a reprobe is due."""

    def __init__(self, registry: Registry, alarm: Alarm) -> None:
        self._registry = registry
        self.alarm = alarm

    async def run(self) -> None:
        next_reprobe = _next_reprobe()
        while True:
            due = self._registry.probe_due()
            wake = next_reprobe if self._registry.has_unseen() else math.inf
            if due is not None:
                wake = min(wake, trio_time(due))
            if wake > trio.current_time():
                await self.alarm.wait(wake)
            if trio.current_time() >= next_reprobe:
                next_reprobe = _next_reprobe()
                if self._registry.has_unseen():
                    await step("reprobe", self._registry.reprobe)
            due = self._registry.probe_due()
            if due is not None and due <= time.monotonic():
                upto, began = self._registry.suspensions, time.monotonic()
                await trio.to_thread.run_sync(kernel.grace_periods, GRACE_PERIODS)
                await trio.sleep(AFTER_GRACE)
                await step("probe", functools.partial(self._registry.confirm, upto, began))


def _next_reprobe() -> float:
    """The next reprobe (trio's clock): REPROBE_LEAD before a multiple of REPROBE_EVERY on the
    wall clock, the same moments in every daemon of the machine."""
    assert REPROBE_EVERY % SHARED_SLOT == 0, "reprobes fall on the shared slots"
    wall = time.time()
    at = (math.floor(wall / REPROBE_EVERY) + 1) * REPROBE_EVERY - REPROBE_LEAD
    if at <= wall:
        at += REPROBE_EVERY
    return trio.current_time() + at - wall


class Retirer:
    """Closes the fd numbers of released pins once they have been retired long enough
    (pins.RETIRE_SECONDS). Sleeps until the registry retires one (`alarm`) or one is due."""

    def __init__(self, registry: Registry, alarm: Alarm) -> None:
        self._registry = registry
        self.alarm = alarm

    async def run(self) -> None:
        await self.alarm.wait(trio.current_time())  # from here on no ring is lost
        while True:
            due = self._registry.retired_due()
            if due is None:
                await self.alarm.wait()
                continue
            await trio.sleep(max(0.0, due - time.monotonic()))
            await step("closing retired pins", self._registry.close_retired)
