"""The scale series: what the daemon costs at 1,000 to 20,000 processes, beside lsns and tmpfs.

One world grows through the sizes (sleeping processes in groups of GROUP over
namespaces of four kinds, a quarter of the groups in user namespaces of their own,
FDS_PER_PROC /dev/null fds each, one namespace in a hundred held only by an fd or a
bind mount). At each size a new daemon (the options of `make run`) is mounted and
measured:

- `ls -l` of the mount, of a tmpfs directory with the same names, of a pyfuse3 filesystem
  that answers the same names from a dict and does nothing else (bench/floorfs.py), taken in
  turn while the daemon runs (the ratio to tmpfs is the median of each turn's), and `lsns`;
- a new namespace found and a dead one gone: from `unshare --net sleep` starting
  (or being killed) to a `stat` of its entry answering (or failing), polled every 2 ms;
- the daemon's CPU while nothing happens (with its sweep helper), over IDLE seconds;
- its CPU per process event: processes that start and exit (`true`) at EVENT_RATE a
  second for EVENT_SECONDS, less the idle rate, divided by the number of processes;
- its resident memory.

Medians over `--reps`. Prints a table and writes it, with a picture of each figure
against the number of processes (matplotlib), to `--out` (docs/bench: the README shows
the picture). Then a heap snapshot of the largest size (bench/heap.py).

Run as root from the repository: `make bench` runs it after the main rows;
`python -m bench.scale --sizes 1000,5000` for a short series.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench.bench import World, median_time, rss_mb
from bench.lifetime import cpu_seconds, floor_filesystem
from nsfs_fuse import discovery, kernel
from nsfs_fuse.rereads import FD_COUNTS_EVERY
from tests.support.daemon import Daemon, running_daemon
from tests.support.procs import Procs
from tests.support.waiting import wait_until

GROUP = 10  # processes per group of namespaces
FDS_PER_PROC = 10
ORPHANS_PER_1000 = 10  # namespaces held only by an fd or a bind mount
IDLE = 30.0  # seconds of idle CPU measurement
EVENT_RATE = 20  # processes started (and ended) a second while per-event CPU is measured
EVENT_SECONDS = 10.0
POLL = 0.002


@dataclass
class Point:
    processes: int
    entries: int
    fds: int
    ls_l: float  # seconds, medians
    ls_l_tmpfs: float
    lsns: float
    ls_l_pyfuse3: float  # the same names on a pyfuse3 filesystem that does nothing else (the floor)
    over_tmpfs: float  # the median of each turn's ls -l / tmpfs (the three taken in turn)
    found: float
    gone: float
    idle_cpu: float  # share of a core
    event_cpu: float  # seconds of daemon CPU per process that came and went
    rss_mb: float
    read_cpu: float  # seconds of CPU to read one process (what a sweep spends on each)
    count_cpu: float  # seconds of CPU to count one process's fds
    fd_round: float | None = None  # seconds a round of fd counts took, as the daemon logged it


def per_process_costs() -> tuple[float, float]:
    """CPU seconds to read one process as a sweep does, and to count its fds: medians over
    this machine's processes, read here (as root, as the daemon reads them)."""
    scanner = discovery.Scanner(os.getpid(), kernel.nsfs_device())
    pids = psutil.pids()
    cpu = time.thread_time()
    for pid in pids:
        scanner.read(pid)
    read = (time.thread_time() - cpu) / len(pids)
    cpu = time.thread_time()
    for pid in pids:
        discovery.fd_count(pid)
    return read, (time.thread_time() - cpu) / len(pids)


def freshness(read_cpu: float, count_cpu: float, processes: int, budget: float = 0.01) -> tuple[float, float]:
    """Seconds between two fd counts of a process, and between two sweeps, at `processes` under
    the daemon's rules (rereads.FD_COUNTS_EVERY, fd counts at most half of `sweep_cpu`, sweeps
    the rest)."""
    round_cpu = processes * count_cpu
    counts_every = max(FD_COUNTS_EVERY, round_cpu / (budget / 2))
    left = budget - round_cpu / counts_every
    return counts_every, processes * read_cpu / left


def stat_answers(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def poll(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


@contextlib.contextmanager
def netns_sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    own = os.readlink("/proc/self/ns/net")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:

        def made() -> bool:
            with contextlib.suppress(OSError):
                return os.readlink(f"/proc/{proc.pid}/ns/net") != own
            return False

        poll(made, "unshare to make its namespace")
        yield proc, os.readlink(f"/proc/{proc.pid}/ns/net")
    finally:
        proc.kill()
        proc.wait()


def found_and_gone(nsfs: Daemon) -> tuple[float, float]:
    """Seconds from `unshare --net sleep` starting to a stat of its entry answering, and from
    its kill to a stat failing."""
    start = time.perf_counter()
    with netns_sleeper() as (proc, name):
        entry = str(nsfs.mountpoint / name)
        poll(lambda: stat_answers(entry), f"{name} to be found")
        found = time.perf_counter() - start
        time.sleep(0.2)
        start = time.perf_counter()
        proc.kill()
        proc.wait()
    poll(lambda: not stat_answers(entry), f"{name} to go")
    return found, time.perf_counter() - start


def event_cpu(nsfs: Daemon, idle_rate: float) -> float:
    """Daemon CPU seconds per process that starts and exits, less what idling costs meanwhile."""
    count = int(EVENT_RATE * EVENT_SECONDS)
    cpu0, t0 = cpu_seconds(nsfs.pid), time.monotonic()
    for i in range(count):
        subprocess.run(["true"], check=True)
        time.sleep(max(0.0, t0 + (i + 1) / EVENT_RATE - time.monotonic()))
    time.sleep(1.0)  # the last batch is read
    spent = cpu_seconds(nsfs.pid) - cpu0 - idle_rate * (time.monotonic() - t0)
    return max(0.0, spent) / count


@contextlib.contextmanager
def tmpfs_with(names: list[str], scratch: Path) -> Iterator[Path]:
    """A tmpfs directory holding an empty directory of each name."""
    floor = scratch / "floor"
    floor.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(floor)], check=True)
    try:
        for name in names:
            (floor / name).mkdir()
        yield floor
    finally:
        subprocess.run(["umount", str(floor)], check=False)


def ls_l_side_by_side(mount: Path, names: list[str], scratch: Path, reps: int) -> tuple[float, float, float, float]:
    """`ls -l` of the mount, of tmpfs and of the do-nothing pyfuse3 filesystem with the same
    names, taken in turn `reps` times while the daemon runs (each turn in another order), so
    that all three meet the same machine: their medians, and the median of each turn's
    mount / tmpfs ratio. At 20,000 processes this machine's own background work makes one
    `ls -l` of tmpfs take anywhere from 50 to 430 ms: only times taken together compare."""
    times: list[dict[str, float]] = []
    with tmpfs_with(names, scratch) as tmpfs, floor_filesystem(names) as (_pid, floor):
        where = {"mount": mount, "tmpfs": tmpfs, "floor": Path(floor)}
        order = list(where)
        for _ in range(reps):
            times.append({name: median_time(["ls", "-l", str(where[name])], 1) for name in order})
            order = order[1:] + order[:1]
    mount_s, tmpfs_s, floor_s = (statistics.median(t[name] for t in times) for name in where)
    return mount_s, tmpfs_s, floor_s, statistics.median(t["mount"] / t["tmpfs"] for t in times)


def measure(processes: int, world: World, scratch: Path, reps: int, idle: float) -> Point:
    with running_daemon(scratch / "mnt", interval=1.0, sweep_cpu=None, startup=600) as nsfs:
        wait_until(lambda: world.namespaces <= nsfs.names(), "the first listing", timeout=300)
        time.sleep(3)  # the first fd counts and follow-ups
        names = sorted(nsfs.names())
        cpu0 = cpu_seconds(nsfs.pid)
        time.sleep(idle)
        idle_rate = (cpu_seconds(nsfs.pid) - cpu0) / idle
        rss = rss_mb(nsfs.pid)
        per_event = statistics.median(event_cpu(nsfs, idle_rate) for _ in range(2))
        samples = [found_and_gone(nsfs) for _ in range(max(reps, 9))]
        ls_l, ls_l_tmpfs, ls_l_pyfuse3, over_tmpfs = ls_l_side_by_side(nsfs.mountpoint, names, scratch, reps)
        fd_round = logged_fd_round(nsfs)
    read_cpu, count_cpu = per_process_costs()
    return Point(
        processes=processes,
        entries=len(names),
        fds=processes * FDS_PER_PROC,
        ls_l=ls_l,
        ls_l_tmpfs=ls_l_tmpfs,
        ls_l_pyfuse3=ls_l_pyfuse3,
        over_tmpfs=over_tmpfs,
        lsns=median_time(["lsns"], min(reps, 3)),
        found=statistics.median(s[0] for s in samples),
        gone=statistics.median(s[1] for s in samples),
        idle_cpu=idle_rate,
        event_cpu=per_event,
        rss_mb=rss,
        read_cpu=read_cpu,
        count_cpu=count_cpu,
        fd_round=fd_round,
    )


def logged_fd_round(nsfs: Daemon) -> float | None:
    """How long a round of fd counts took, as the daemon logged it once."""
    for line in nsfs.log.read_text().splitlines():
        if "a round of fd counts took" in line:
            return float(line.split("took ")[1].split(" s")[0])
    return None


def table(points: list[Point]) -> str:
    def row(label: str, cell: Callable[[Point], str]) -> str:
        return f"{label:34}" + "".join(f"{cell(p):>22}" for p in points)

    return "\n".join(
        [
            row("processes / entries / fds", lambda p: f"{p.processes} / {p.entries} / {p.fds // 1000}k"),
            row("ls -l (lsns)", lambda p: f"{p.ls_l * 1e3:.0f} ms ({p.lsns:.2f} s)"),
            row("lsns / ls -l, ls -l / tmpfs", lambda p: f"{p.lsns / p.ls_l:.1f}x, {p.over_tmpfs:.1f}x"),
            row("do-nothing pyfuse3 fs / tmpfs", lambda p: f"{p.ls_l_pyfuse3 / p.ls_l_tmpfs:.1f}x"),
            row("new namespace found (median)", lambda p: f"{p.found * 1e3:.0f} ms"),
            row("dead namespace gone (median)", lambda p: f"{p.gone * 1e3:.0f} ms"),
            row("daemon CPU per process event", lambda p: f"{p.event_cpu * 1e3:.2f} ms"),
            row("daemon idle CPU", lambda p: f"{p.idle_cpu * 100:.1f}%"),
            row("daemon RSS", lambda p: f"{p.rss_mb:.0f} MB"),
            row(
                "CPU to read / count fds of a process", lambda p: f"{p.read_cpu * 1e6:.0f} / {p.count_cpu * 1e6:.1f} us"
            ),
        ]
    )


def freshness_table(points: list[Point]) -> str:
    """How often, under the default budget, each process's fds are counted and each is swept:
    at the measured sizes, and at 100,000 from the largest size's costs per process."""
    last = points[-1]
    sizes = [(p.processes, p.read_cpu, p.count_cpu, "") for p in points]
    sizes.append((100_000, last.read_cpu, last.count_cpu, " (computed)"))
    measured = {p.processes: p.fd_round for p in points}
    lines = ["freshness under sweep_cpu=1%: fd counts every / a sweep every (a round of fd counts, as logged)"]
    for processes, read_cpu, count_cpu, note in sizes:
        counts_every, sweep_every = freshness(read_cpu, count_cpu, processes)
        logged = measured.get(processes)
        seen = "" if logged is None else f" (logged: {logged:.1f} s)"
        lines.append(f"  {processes:>7} processes: {counts_every:5.1f} s / {sweep_every / 60:5.1f} min{note}{seen}")
    return "\n".join(lines)


def draw(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p.processes for p in points]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    fig.suptitle(f"nsfs-fuse at scale ({GROUP} processes per group of namespaces, {FDS_PER_PROC} fds each)")
    panels: list[tuple[str, list[tuple[str, list[float]]], str | None]] = [
        (
            "listing, ms (log)",
            [
                ("ls -l of the mount", [p.ls_l * 1e3 for p in points]),
                ("ls -l of tmpfs, same names", [p.ls_l_tmpfs * 1e3 for p in points]),
                ("ls -l of a do-nothing pyfuse3 fs", [p.ls_l_pyfuse3 * 1e3 for p in points]),
                ("lsns", [p.lsns * 1e3 for p in points]),
            ],
            "log",
        ),
        (
            "a namespace found / gone, ms (median)",
            [("found", [p.found * 1e3 for p in points]), ("gone", [p.gone * 1e3 for p in points])],
            None,
        ),
        ("daemon CPU per process event, ms", [("per event", [p.event_cpu * 1e3 for p in points])], None),
        ("daemon idle CPU, % of a core", [("idle", [p.idle_cpu * 100 for p in points])], None),
        ("daemon resident memory, MB", [("RSS", [p.rss_mb for p in points])], None),
        (
            "ratios",
            [
                ("lsns / ls -l", [p.lsns / p.ls_l for p in points]),
                ("ls -l / tmpfs", [p.over_tmpfs for p in points]),
                ("do-nothing pyfuse3 / tmpfs", [p.ls_l_pyfuse3 / p.ls_l_tmpfs for p in points]),
            ],
            None,
        ),
    ]
    for ax, (title, lines, scale) in zip(axes.flat, panels, strict=True):
        for label, ys in lines:
            ax.plot(x, ys, marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("processes")
        if scale:
            ax.set_yscale(scale)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize="small")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000,20000", help="numbers of processes, growing")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--idle", type=float, default=IDLE, help="seconds of idle CPU measurement")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="where scale.txt and scale.png go")
    parser.add_argument("--no-heap", action="store_true", help="skip the heap snapshot at the largest size")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    scratch = Path(tempfile.mkdtemp(prefix="nsfs-scale-"))
    scratch.chmod(0o755)
    procs = Procs()
    world = World(procs, scratch)
    points: list[Point] = []
    heap = ""
    try:
        built = 0
        for size in sizes:
            t0 = time.perf_counter()
            world.build(size - built, (size - built) * FDS_PER_PROC, (size - built) * ORPHANS_PER_1000 // 1000, GROUP)
            built = size
            print(f"{size} processes built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            points.append(measure(size, world, scratch, args.reps, args.idle))
            print(table(points[-1:]), file=sys.stderr, flush=True)
        if not args.no_heap:
            heap = subprocess.run(
                [sys.executable, "-m", "bench.heap"], capture_output=True, text=True, check=False
            ).stdout
    finally:
        world.close()
        procs.close()
        shutil.rmtree(scratch, ignore_errors=True)
    text = table(points) + "\n\n" + freshness_table(points) + ("\n\n" + heap if heap else "")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.txt").write_text(text + "\n")
    (args.out / "scale.json").write_text(json.dumps([asdict(p) for p in points], indent=1) + "\n")
    draw(points, args.out / "scale.png")
    print(f"written: {args.out / 'scale.txt'}, {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
