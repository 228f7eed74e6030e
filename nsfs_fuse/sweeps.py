"""Sweeps: a safety net that reads every process, for what no event or re-read sees.

The daemon's side (Refresher, `sweeper`) runs one every interval, or sooner when process
events were lost; while events flow a sweep is paced to `sweep_cpu` of a core, and
without them sweeps run at full speed. Each sweep reads /proc in a process of its own
(SweepProcess and this module's `main`): the daemon's FUSE loop never waits on them.

A sweep reads every process (`discovery.Scanner.sweep`): seconds of Python at 5,000
processes. In the daemon's process that Python would take turns with the FUSE loop
for the one interpreter lock, and every request made during a sweep would wait. So a
helper process (`python -m nsfs_fuse.sweeps DAEMON_PID NSFS_DEV`) reads, and sends
each chunk of `ProcessRead`s down a pipe; the daemon only folds them into the
registry. The pins stay in the daemon: it opens each namespace itself, through the
paths the reads name, as it would after a read of its own.

A paced sweep is background work: the helper reads at the kernel's idle priority
(SCHED_IDLE), so it only ever uses a CPU nothing else wants, and the FUSE loop and
its callers are never slowed by it. A sweep someone waits for (the first, or after
lost events) runs at normal priority.

Most processes hold at a sweep what they held at the last one, so the helper sends only
the reads that differ from its own last read of the process (`Memory`), and for the
rest the pid and the time it read it: the daemon notes the time (`Registry.touch`)
instead of unpickling and comparing thousands of reads. The daemon tells the helper
which pids to forget first: those whose kept read may differ from the helper's last
(holdings.py, "dirty").

The wire, one sweep at a time: the daemon writes two lines, `idle` or `now` and the
pids of its helpers (never holders), then the pids to forget; the helper answers with
chunks, each a 4-byte little-endian length and a pickle of (the list of ProcessRead
that changed, the list of (pid, read_at) that did not, the faults it met since the last
chunk as `errors.Tally.take` gives them), and a zero length when the sweep is done. The
daemon counts and logs those faults as its own (the helper logs none itself): one tally,
one log line per (operation, errno), whichever process met it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Final, TypeVar

import trio

from . import daemons, discovery, errors, kernel
from .model import ProcessRead
from .registry import Registry
from .tasks import Charges

log = logging.getLogger(__name__)

HELPER_NAME = daemons.HELPER_PREFIX + "sweep"
_LENGTH = struct.Struct("<I")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


Each = Callable[[list[ProcessRead], list[tuple[int, float]]], bool]
# What one chunk carries: reads that changed, (pid, read_at) of the rest, faults (errors.Tally.take).
_Chunk = tuple[list[ProcessRead], list[tuple[int, float]], list[tuple[str, int, str, int]]]
_R = TypeVar("_R")


class Memory:
    """The helper's last read of each process: what lets it send only what changed."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[object, ...]] = {}
        self._seen: set[int] = set()

    def forget(self, pids: Iterable[int]) -> None:
        for pid in pids:
            self._last.pop(pid, None)

    def sort(self, reads: list[ProcessRead]) -> tuple[list[ProcessRead], list[tuple[int, float]]]:
        """`reads` that differ from the last read of their process, and (pid, read_at) of the rest."""
        changed, same = [], []
        for read in reads:
            found = (read.sightings, read.daemon_pins, read.mnt, read.exiting)
            self._seen.add(read.pid)
            if read.failed:  # not what the daemon keeps (it keeps the read before): read whole next time
                self._last.pop(read.pid, None)
                changed.append(read)
            elif self._last.get(read.pid) == found:
                same.append((read.pid, read.read_at))
            else:
                self._last[read.pid] = found
                changed.append(read)
        return changed, same

    def end_sweep(self) -> None:
        """A sweep is done: processes it did not read are gone."""
        self._last = {pid: found for pid, found in self._last.items() if pid in self._seen}
        self._seen = set()


class SweepProcess:
    """The daemon's side: `sweep` as `discovery.Scanner.sweep` does it, read by the helper.

    The helper is started at the first sweep and again after it died or a sweep was
    abandoned (it is killed then: the rest of its sweep is not wanted). Its pid is
    in `helpers` while it lives.
    """

    def __init__(self, own_pid: int, nsfs_dev: int, helpers: set[int]) -> None:
        self._argv = [sys.executable, "-m", "nsfs_fuse.sweeps", str(own_pid), str(nsfs_dev)]
        self._helpers = helpers
        self._proc: subprocess.Popen[bytes] | None = None

    def sweep(self, each: Each, background: bool = False, forget: Iterable[int] = ()) -> bool:
        """Read every process, handing each chunk to `each` (what changed since the helper's
        last read, and the (pid, read_at) of what did not); False if `each` abandoned it.
        `background`: at idle priority. `forget`: pids to read whole. Raises OSError if the
        helper cannot be started or dies mid-sweep; what `each` raises is its own."""
        proc = self._started()
        words = ["idle" if background else "now", *map(str, sorted(self._helpers))]
        self._talk(lambda: self._ask(proc, " ".join(words) + "\n" + " ".join(map(str, forget)) + "\n"))
        while (chunk := self._talk(lambda: self._chunk(proc))) is not None:
            changed, same, faults = chunk
            errors.add_faults(faults)
            try:
                going_on = each(changed, same)
            except BaseException:
                self.close()  # the rest of its sweep is not wanted
                raise
            if not going_on:
                self.close()
                return False
        return True

    def _talk(self, exchange: Callable[[], _R]) -> _R:
        """One exchange with the helper; OSError naming the helper if it fails (and it is ended)."""
        try:
            return exchange()
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self.close()
            raise OSError(f"the sweep process failed: {exc}") from None

    @staticmethod
    def _ask(proc: subprocess.Popen[bytes], text: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(text.encode())
        proc.stdin.flush()

    @staticmethod
    def _chunk(proc: subprocess.Popen[bytes]) -> _Chunk | None:
        """The next chunk of the sweep; None at its end."""
        assert proc.stdout is not None
        size = _LENGTH.unpack(_read_exactly(proc.stdout, _LENGTH.size))[0]
        if not size:
            return None
        chunk: _Chunk = pickle.loads(_read_exactly(proc.stdout, size))
        return chunk

    def cpu(self) -> float:
        """CPU seconds the helper has used so far (0 if there is none)."""
        if self._proc is None:
            return 0.0
        try:
            with open(f"/proc/{self._proc.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            daemons.end_helper(proc)
            self._helpers.discard(proc.pid)

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self._helpers.add(self._proc.pid)
        return self._proc


def _read_exactly(pipe: IO[bytes], size: int) -> bytes:
    data = pipe.read(size)
    if len(data) != size:
        raise EOFError("the sweep process ended")
    return data


def main() -> None:
    """The helper: sweep each time the daemon asks, until its pipe closes."""
    own_pid, nsfs_dev = int(sys.argv[1]), int(sys.argv[2])
    kernel.set_process_name(HELPER_NAME)  # every daemon's scan knows it as a helper (daemons.is_nsfs_helper)
    scanner = discovery.Scanner(own_pid, nsfs_dev)
    memory = Memory()
    out = sys.stdout.buffer

    def send(reads: list[ProcessRead]) -> bool:
        changed, same = memory.sort(reads)
        data = pickle.dumps((changed, same, errors.TALLY.take()), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_LENGTH.pack(len(data)) + data)
        out.flush()
        return True

    for line in sys.stdin.buffer:
        when, *helpers = line.split()
        memory.forget(int(pid) for pid in sys.stdin.buffer.readline().split())
        policy = os.SCHED_IDLE if when == b"idle" else os.SCHED_OTHER
        os.sched_setscheduler(0, policy, os.sched_param(0))
        scanner.helpers.clear()
        scanner.helpers.update(int(pid) for pid in helpers)
        scanner.helpers.add(os.getpid())
        scanner.sweep(send)
        memory.end_sweep()
        out.write(_LENGTH.pack(0))
        out.flush()


# After an unpaced sweep the daemon waits at least this long, and at least as
# long as the sweep's CPU time: neither the interval nor a stream of lost process
# events can keep it sweeping more than half the time.
MIN_PAUSE: Final = 0.02

# pace(cpu, elapsed) -> whether to go on: called by a sweep after each chunk of
# processes with the CPU time and wall time it has taken so far; it may sleep.
Pace = Callable[[float, float], bool]


def sweeper(
    registry: Registry,
    source: SweepProcess,
    note: Callable[[list[ProcessRead]], None],
    reread: Callable[[list[int]], None],
) -> Callable[[Pace], float]:
    """A full sweep into `registry`, paced by its argument: blocking, for a worker thread.
    `note` is told the reads that changed; `reread` reads again, at once, the processes
    whose kept read the sweep's reader cannot vouch for (`Registry.touch`).

    Returns the CPU time the sweep took, the reading process's and this thread's: what it
    cost the machine, which waiting for the registry lock, the GIL or the pace would
    inflate on the wall clock.
    """

    told = False  # whether the log has said how long a paced sweep lasts

    def sweep(pace: Pace) -> float:
        nonlocal told
        started, cpu, reader_cpu = time.monotonic(), time.thread_time(), source.cpu()

        def spent() -> float:
            return time.thread_time() - cpu + max(0.0, source.cpu() - reader_cpu)

        def each(reads: list[ProcessRead], same: list[tuple[int, float]]) -> bool:
            registry.update(reads, swept=True)
            note(reads)
            if same and (stale := registry.touch(same)):
                reread(stale)
            return pace(spent(), time.monotonic() - started)

        done = source.sweep(each, background=pace is not full_speed, forget=registry.take_dirty())
        if done:
            registry.end_sweep(started)
        cost = spent()
        if done and pace is not full_speed and not told:
            told = True
            log.info("a paced sweep took %.0f s (%.2f s of CPU)", time.monotonic() - started, cost)
        log.debug(
            "sweep %s in %.3f s (%.3f s of CPU), %d namespaces",
            "done" if done else "abandoned",
            time.monotonic() - started,
            cost,
            len(registry.snapshot.entries),
        )
        return cost

    return sweep


def full_speed(_cpu: float, _elapsed: float) -> bool:
    return True


class Refresher:
    """Runs sweeps: one `interval` after another, or sooner when asked (`rescan`: process
    events were lost).

    While `following_events` is set a sweep is paced to `sweep_cpu` of a core,
    unless someone waits for it. A sweep asked for runs at full speed, but never
    sooner after the last one than that one's CPU time, so a stream of requests
    cannot keep the daemon sweeping without pause.
    """

    def __init__(
        self, sweep: Callable[[Pace], float], interval: float, sweep_cpu: float = 0.01, charges: Charges | None = None
    ) -> None:
        self.sweep = sweep
        self.interval = interval
        self.sweep_cpu = sweep_cpu
        self.following_events = False
        self._started = 0  # sweeps begun
        self._merged = 0  # sweeps ended (done or abandoned)
        self._wake = trio.Event()
        self._merged_event = trio.Event()
        self._urgent = False  # someone waits for the next sweep
        self._abandon = threading.Event()  # tells a paced sweep to stop: someone waits for the next one
        self._last_end = -math.inf
        self._last_cost = 0.0
        self.last_length = 0.0  # wall time of the last sweep that ended (metrics.py)
        self._charges = Charges() if charges is None else charges  # other background work's CPU time
        self._charged_before = 0.0  # ... up to the start of the sweep under way

    @property
    def sweeps(self) -> int:
        """Sweeps ended since the loop started."""
        return self._merged

    @property
    def last_cost(self) -> float:
        """The CPU time of the last sweep that ended."""
        return self._last_cost

    async def rescan(self) -> None:
        """Return once a sweep that started after this call has ended.

        Concurrent callers share that sweep.
        """
        target = self._started + 1
        while self._merged < target:
            merged = self._merged_event
            self._urgent = True
            self._abandon.set()
            self._wake.set()
            await merged.wait()

    def stop(self) -> None:
        """End a sweep under way at its next chunk: the daemon is exiting, and trio waits for its thread."""
        self._abandon.set()

    def _pace(self, cpu: float, elapsed: float) -> bool:
        """Between two chunks of a paced sweep (in its thread): sleep to stay within the budget."""
        wait = (cpu + self._charges.total - self._charged_before) / self.sweep_cpu - elapsed
        if wait > 0:
            self._abandon.wait(wait)
        return not self._abandon.is_set()

    async def run(self) -> None:
        # The first sweep ran before the loop started.
        self._last_end = trio.current_time()
        while True:
            with trio.move_on_at(self._last_end + self.interval):
                await self._wake.wait()
            if self._urgent or not self.following_events:
                await trio.sleep_until(self._last_end + max(MIN_PAUSE, self._last_cost))
            paced = self.following_events and not self._urgent
            self._wake = trio.Event()
            self._urgent = False
            self._abandon.clear()
            self._started += 1
            self._charged_before = self._charges.total
            began = trio.current_time()
            try:
                self._last_cost = await trio.to_thread.run_sync(self.sweep, self._pace if paced else full_speed)
            except Exception:
                # Whatever went wrong, the last snapshot is still true enough to serve.
                log.exception("sweep failed; serving the previous snapshot")
            self._last_end = trio.current_time()
            self.last_length = self._last_end - began
            self._merged = self._started
            self._merged_event.set()
            self._merged_event = trio.Event()


if __name__ == "__main__":
    # ERROR: the policy's warnings (errors.fault) go to the daemon with the chunks, which logs them.
    logging.basicConfig(level=logging.ERROR, format="nsfs sweep: %(message)s")
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        main()
