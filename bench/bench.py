"""Benchmark: the mount against lsns, a plain /proc scan and an empty tmpfs, at scale.

Builds a world (PROCS sleeping processes in groups of namespaces, a quarter of
them in user namespaces of their own, FDS open fds among them, and ORPHANS
namespaces held only by an fd or a bind mount), mounts a daemon, measures, prints
a table, and tears the world down. Medians over REPS repetitions.

Rows m) are about the programs around the mount: lsnsfs against lsns, the tree and the
Graphviz picture, and how soon `lsnsfs --watch` prints a new namespace.

Rows k) and l) are about readers: a script reading every entry against `lsns -J`,
and `ls -l` while sweeps run back to back, against the same when idle.

Then rows f) to j) (bench/lifetime.py, issue 10): how long the mount keeps a dead
namespace alive, per kind of last holder, side by side with no mount; how fast bind
mounts and unshare() without exec are followed; what lookups of made-up names cost;
how long dead processes stay in `holders`.

Run as root from the repository: `make bench` (full size) or
`python -m bench.bench --procs 500 --fds 5000 --orphans 20` for a quick run;
`--only-lifetime` for rows f) to j) alone, `--only-readers` for k) and l), `--only-ecosystem`
for m).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from bench import lifetime
from nsfs_fuse.kernel import nsfs_device
from tests.support.daemon import Daemon, running_daemon
from tests.support.procs import Procs
from tests.support.waiting import run, wait_until

_T = TypeVar("_T")

GROUP = 20  # processes per group of namespaces
FDS_PER_PROC_MAX = 64

# A plain scan, the thing a user would write: every ns link of every process and
# thread, every fd, and the nsfs mounts; printed as a count.
PLAIN_SCAN = r"""
import os
found = set()
def add(path):
    try:
        t = os.readlink(path)
    except OSError:
        return
    if ":[" in t and not t.startswith(("socket", "pipe", "anon_inode")):
        found.add(t)
LINKS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts", "pid_for_children", "time_for_children")
def listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    for d in [f"/proc/{pid}"] + [f"/proc/{pid}/task/{t}" for t in listdir(f"/proc/{pid}/task")]:
        for ns in LINKS:
            add(f"{d}/ns/{ns}")
    for fd in listdir(f"/proc/{pid}/fd"):
        add(f"/proc/{pid}/fd/{fd}")
for line in open("/proc/self/mountinfo"):
    f = line.split()
    if f[f.index("-") + 1] == "nsfs":
        found.add(f[3])
print(len(found))
"""


def median_time(argv: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_of(measure: Callable[[], float], reps: int) -> float:
    return statistics.median(measure() for _ in range(reps))


class World:
    def __init__(self, procs: Procs, scratch: Path) -> None:
        self.procs, self.scratch = procs, scratch
        self.fds: list[int] = []
        self.mounts: list[Path] = []
        self.namespaces: set[str] = set()  # what the world made (its groups' and orphans' namespaces)

    def build(self, processes: int, fds: int, orphans: int, group: int = GROUP) -> None:
        """Add `processes` processes in groups of `group`, with `fds` fds among them, and
        `orphans` namespaces held only by an fd or a bind mount. May be called again to grow."""
        groups = max(1, processes // group)
        per_proc = min(FDS_PER_PROC_MAX, max(0, fds // max(1, processes)))
        opens = " ".join(f"{3 + i}</dev/null" for i in range(per_proc))
        loop = f"exec {opens}; i=0; while [ $i -lt {group - 1} ]; do sleep 3600 & i=$((i+1)); done; echo up; wait"
        started = []
        for g in range(groups):
            flags = (
                ["--user", "--map-root-user", "--net", "--uts"]
                if g % 4 == 0
                else ["--net", "--uts", "--ipc", "--mount"]
            )
            started.append(self.procs.start("unshare", *flags, "bash", "-c", loop, stdout=subprocess.PIPE))
        for proc in started:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
            proc.stdout.close()  # the bench's own fds stay few: a lookup miss reads the caller's
            for link in ("user", "net", "uts", "ipc", "mnt"):
                self.namespaces.add(os.readlink(f"/proc/{proc.pid}/ns/{link}"))
        for i in range(len(self.fds) + len(self.mounts), len(self.fds) + len(self.mounts) + orphans):
            pid = self.procs.sleeper("--net")
            self.namespaces.add(os.readlink(f"/proc/{pid}/ns/net"))
            if i % 2:
                self.fds.append(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY))
            else:
                target = self.scratch / f"ns-{i}"
                target.touch()
                assert run(["mount", "--bind", f"/proc/{pid}/ns/net", str(target)]).returncode == 0
                self.mounts.append(target)
            self.procs.end(pid)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for target in self.mounts:
            run(["umount", str(target)])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def appearance(nsfs: Daemon) -> float:
    """Seconds from `unshare --net sleep` being started to a listing showing its namespace."""
    start = time.perf_counter()
    with netns_sleeper() as name:
        poll_until(lambda: name in nsfs.names(), f"{name} to appear")
        return time.perf_counter() - start


def fd_only_appearance(nsfs: Daemon, procs: Procs, timeout: float = 60) -> float | None:
    """Seconds from a namespace being held only by an fd to a listing showing it; None after `timeout`."""
    # unshare without exec: no process event names the namespace, only a sweep will.
    proc, (name,) = procs.reporting(sys.executable, "-c", UNSHARE_NET_NO_EXEC)
    fd = os.open(f"/proc/{proc.pid}/ns/net", os.O_RDONLY)
    procs.stop(proc)
    start = time.perf_counter()  # from here on only the fd holds it
    try:
        # A sweep must reach the holder first: minutes at full size.
        poll_until(lambda: name in nsfs.names(), f"{name} to appear", timeout=timeout)
        return time.perf_counter() - start
    except AssertionError:
        return None
    finally:
        os.close(fd)


def disappearance(nsfs: Daemon) -> float:
    """Seconds from the kill of a namespace's only process to a listing without it."""
    with netns_sleeper() as name:
        poll_until(lambda: name in nsfs.names(), f"{name} to appear")
        start = time.perf_counter()
    poll_until(lambda: name not in nsfs.names(), f"{name} to go")
    return time.perf_counter() - start


@contextlib.contextmanager
def netns_sleeper() -> Iterator[str]:
    """A `sleep` in a new network namespace, killed and reaped on leaving; yields the namespace.

    Plain Popen and waitpid: the test helpers' process-group bookkeeping walks all of
    /proc, which at full size would take longer than what is being measured.
    """
    own = os.readlink("/proc/self/ns/net")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        yield poll_until(lambda: "" if (n := netns_of(proc.pid)) == own else n, "unshare to make its namespace")
    finally:
        proc.kill()
        proc.wait()


def netns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def poll_until(predicate: Callable[[], _T], what: str, timeout: float = 120) -> _T:
    """wait_until, polling every 5 ms: the figures are tens of milliseconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
    return value


UNSHARE_NET_NO_EXEC = """
import ctypes, os, time
assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0
print(os.readlink("/proc/self/ns/net"), flush=True)
time.sleep(3600)
"""


def floor_ls_l(names: list[str], reps: int) -> float:
    """`ls -l` of the same names on a pyfuse3 filesystem that does nothing else."""
    with lifetime.floor_filesystem(names) as (_pid, mountpoint):
        return median_time(["ls", "-l", mountpoint], reps)


def sweep_seconds(nsfs: Daemon) -> float | None:
    """How long a paced sweep lasts, as the daemon logged it once."""
    for line in nsfs.log.read_text().splitlines():
        if "a paced sweep took" in line:
            return float(line.split("took ")[1].split(" s")[0])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=5000)
    parser.add_argument("--fds", type=int, default=50000)
    parser.add_argument("--orphans", type=int, default=200, help="namespaces held only by an fd or a bind mount")
    parser.add_argument("--group", type=int, default=GROUP, help="processes per group of namespaces")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--idle", type=float, default=60, help="seconds of idle CPU measurement")
    parser.add_argument("--only-lifetime", action="store_true", help="skip rows a) to e): rows f) to j) alone")
    parser.add_argument("--only-readers", action="store_true", help="rows k) and l) alone")
    parser.add_argument("--only-ecosystem", action="store_true", help="rows m) alone: lsnsfs, events, metrics")
    parser.add_argument(
        "--timeout", type=float, default=60, help="longest wait for one figure of rows b) and f) to j), in seconds"
    )
    parser.add_argument(
        "--discover",
        type=float,
        default=300,
        help="longest wait, in seconds, for the daemon to find a namespace before its death is timed (rows f)",
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="nsfs-bench-"))
    scratch.chmod(0o755)
    procs = Procs()
    world = World(procs, scratch)
    mess = lifetime.Mess(scratch)
    rows: list[tuple[str, str, str, str]] = []
    try:
        t0 = time.perf_counter()
        world.build(args.procs, args.fds, args.orphans, args.group)
        built = time.perf_counter() - t0
        # The reference for rows f): the kernel's own pace, with no mount.
        reference = lifetime.reference_deaths(mess, args.reps, args.timeout)
        with running_daemon(scratch / "mnt", interval=1.0, sweep_cpu=None, startup=600) as nsfs:
            wait_until(lambda: world.namespaces <= nsfs.names(), "the first listing", timeout=300)
            time.sleep(3)
            names = sorted(nsfs.names())
            only = args.only_lifetime or args.only_readers or args.only_ecosystem
            if not only:
                rows += main_rows(args, nsfs, procs, scratch, names)
            if not only or args.only_readers:
                rows += reader_rows(args, nsfs, scratch)
            if not only or args.only_ecosystem:
                rows += ecosystem_rows(args, nsfs)
            if not only or args.only_lifetime:
                rows += lifetime.lifetime_rows(
                    nsfs, mess, reference, reps=args.reps, idle=args.idle, timeout=args.timeout, discover=args.discover
                )
            print(
                f"world: {args.procs} processes, {args.fds} fds, {args.orphans} fd/mount-only namespaces, "
                f"{len(names)} namespaces listed; built in {built:.0f} s; medians of {args.reps}"
                f" (f, g, j: median / worst; timeouts {args.timeout:.0f} s)"
            )
            for row in rows:
                print(f"{row[0]:34} {row[1]:>20}  {row[2]:22} {row[3]}")
        return 0
    finally:
        mess.close()
        world.close()
        procs.close()
        shutil.rmtree(scratch, ignore_errors=True)


# What a script reads of every entry: the facts lsns -J gives, and what holds each. One
# loop as a script would write it (three programs per entry), and the same in three programs.
SWEEP_CPU_SECONDS = 10

READ_ALL = 'for d in "$1"/*; do cat "$d/nstype" "$d/holders"; readlink "$d/owner"; done >/dev/null 2>&1'
READ_ALL_AT_ONCE = 'cat "$1"/*/nstype >/dev/null; cat "$1"/*/holders >/dev/null; readlink "$1"/*/owner >/dev/null'


def reader_rows(args: argparse.Namespace, nsfs: Daemon, scratch: Path) -> list[tuple[str, str, str, str]]:
    """Rows k) and l): reading every entry as a script would, and `ls -l` while sweeps run
    back to back (a second daemon, sweeping without pause) next to `ls -l` of the first,
    idle one, taken in turn; the ratio is the median of the pairs' ratios."""
    reps = args.reps
    read_all = median_time(["sh", "-c", READ_ALL, "sh", str(nsfs.mountpoint)], reps)
    at_once = median_time(["sh", "-c", READ_ALL_AT_ONCE, "sh", str(nsfs.mountpoint)], reps)
    lsns_json = median_time(["lsns", "-J"], reps)
    with running_daemon(scratch / "sweeping", interval=0.05, sweep_cpu=100) as busy:
        wait_until(lambda: len(busy.names()) > 100, "the sweeping daemon's listing", timeout=120)
        # In turn, pair by pair: this machine's pace drifts by a third within a minute, and
        # a ratio of two medians taken apart would measure the drift.
        # What sweeping alone costs the daemon's own process (whose interpreter lock the
        # FUSE loop needs) and its helper, with nobody reading.
        own0, all0, t0 = own_cpu_seconds(busy.pid), lifetime.cpu_seconds(busy.pid), time.monotonic()
        time.sleep(SWEEP_CPU_SECONDS)
        spent = time.monotonic() - t0
        own = (own_cpu_seconds(busy.pid) - own0) / spent
        helper = (lifetime.cpu_seconds(busy.pid) - all0) / spent - own
        pairs = [
            (median_time(["ls", "-l", str(nsfs.mountpoint)], 1), median_time(["ls", "-l", str(busy.mountpoint)], 1))
            for _ in range(2 * reps + 1)
        ]
        stalls = [(stat_latencies(nsfs.mountpoint), stat_latencies(busy.mountpoint)) for _ in range(reps)]
    floor = sweeping_floor(nsfs, reps)
    quiet = statistics.median(q for q, _ in pairs)
    sweeping = statistics.median(b for _, b in pairs)
    ratio = statistics.median(b / q for q, b in pairs)
    return [
        ("k) read nstype+holders+owner, all", f"{read_all * 1000:.0f} ms", f"lsns -J {lsns_json * 1000:.0f} ms", ""),
        ("k) the same, three programs", f"{at_once * 1000:.0f} ms", f"lsns -J/that = {lsns_json / at_once:.1f}x", ""),
        (
            "l) ls -l idle / during sweeps",
            f"{quiet * 1000:.0f} / {sweeping * 1000:.0f} ms",
            f"during/idle = {ratio:.1f}x (pairs)",
            "<= 1.5x",
        ),
        (
            "l) floor: sweeps alone, no daemon",
            "{:.0f} / {:.0f} ms".format(*(statistics.median(x[i] for x in floor) * 1000 for i in (0, 1))),
            f"with/without = {statistics.median(b / q for q, b in floor):.1f}x (pairs)",
            "",
        ),
        ("l) sweeping, nobody reading: CPU", f"{own:.0%} + {helper:.0%}", "daemon + helper, of a core", ""),
        (
            "l) stat of an entry, idle: p99 / max",
            "{:.1f} / {:.1f} ms".format(*(statistics.median(q[i] for q, _ in stalls) * 1000 for i in (0, 1))),
            "",
            "",
        ),
        (
            "l) the same during sweeps",
            "{:.1f} / {:.1f} ms".format(*(statistics.median(b[i] for _, b in stalls) * 1000 for i in (0, 1))),
            "",
            "a few ms",
        ),
    ]


LSNSFS = str(Path(sys.executable).with_name("lsnsfs"))


def ecosystem_rows(args: argparse.Namespace, nsfs: Daemon) -> list[tuple[str, str, str, str]]:
    """Rows m): lsnsfs against lsns, in turn pair by pair; how soon `lsnsfs --watch` prints a
    namespace made by `ip netns add`."""
    mount = str(nsfs.mountpoint)
    rows = []
    for what, ours, theirs in (
        ("", [LSNSFS, "-m", mount], ["lsns"]),
        (" -J", [LSNSFS, "-J", "-m", mount], ["lsns", "-J"]),
    ):
        pairs = [(median_time(ours, 1), median_time(theirs, 1)) for _ in range(2 * args.reps + 1)]
        mine = statistics.median(o for o, _ in pairs)
        rows.append(
            (
                f"m) lsnsfs{what} / lsns{what}",
                f"{mine * 1000:.0f} / {statistics.median(t for _, t in pairs) * 1000:.0f} ms",
                f"lsns/lsnsfs = {statistics.median(t / o for o, t in pairs):.1f}x (pairs)",
                "> 1x",
            )
        )
    tree = median_time([LSNSFS, "-T", "-m", mount], args.reps)
    dot = median_time(["sh", "-c", f"{LSNSFS} --dot -m {mount} | dot -Tsvg >/dev/null"], args.reps)
    rows.append(("m) lsnsfs -T; --dot | dot -Tsvg", f"{tree * 1000:.0f} ms; {dot * 1000:.0f} ms", "", ""))
    delays = watch_delays(mount, args.reps)
    rows.append(
        (
            "m) ip netns add -> + line (watch)",
            f"{statistics.median(delays) * 1000:.0f} ms",
            f"worst {max(delays) * 1000:.0f} ms",
            "",
        )
    )
    return rows


def watch_delays(mount: str, reps: int) -> list[float]:
    """From `ip netns add` returning to `lsnsfs --watch` printing its `+` line, `reps` times."""
    watcher = subprocess.Popen([LSNSFS, "--watch", "-t", "net", "-m", mount], stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None
    delays = []
    try:
        time.sleep(1)  # connected
        for i in range(reps):
            name = f"nsfs-bench-watch-{i}"
            run(["ip", "netns", "add", name])
            added = time.perf_counter()
            while not watcher.stdout.readline().startswith("+ "):
                pass
            delays.append(time.perf_counter() - added)
            run(["ip", "netns", "del", name])
            while not watcher.stdout.readline().startswith("- "):
                pass
    finally:
        watcher.kill()
        watcher.wait()
    return delays


def sweeping_floor(nsfs: Daemon, reps: int) -> list[tuple[float, float]]:
    """`ls -l` of the idle daemon without and with a sweep helper of no daemon's reading /proc
    back to back at idle priority, in turn (the helper stopped, then running): what the
    sweeps' reading alone costs a reader on this machine, whoever folds them."""
    helper = f"yes $'idle\\n' | exec {sys.executable} -m nsfs_fuse.sweeps {nsfs.pid} {nsfs_device()} >/dev/null"
    proc = subprocess.Popen(["bash", "-c", helper], start_new_session=True)
    try:
        time.sleep(2)

        def ls_l(sweeping: bool) -> float:
            os.killpg(proc.pid, signal.SIGCONT if sweeping else signal.SIGSTOP)
            time.sleep(0.2)
            return median_time(["ls", "-l", str(nsfs.mountpoint)], 1)

        return [(ls_l(False), ls_l(True)) for _ in range(2 * reps + 1)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGCONT)
        proc.wait()


def stat_latencies(mountpoint: Path, seconds: float = 3.0) -> tuple[float, float]:
    """The 99th percentile and the longest of `stat` of one entry in a loop for `seconds`:
    how long one caller can be kept waiting (a stall of the FUSE loop shows as a long one)."""
    entry = str(mountpoint / sorted(os.listdir(mountpoint))[0])
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        os.stat(entry)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[int(len(times) * 0.99)], times[-1]


def own_cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` itself, not of its children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_rows(
    args: argparse.Namespace, nsfs: Daemon, procs: Procs, scratch: Path, names: list[str]
) -> list[tuple[str, str, str, str]]:
    """Rows a) to e)."""
    rows: list[tuple[str, str, str, str]] = []
    floor = scratch / "floor"
    floor.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(floor)], check=True)
    try:
        for name in names:
            (floor / name).mkdir()
        reps = args.reps
        ls = median_time(["ls", str(nsfs.mountpoint)], reps)
        ls_l = median_time(["ls", "-l", str(nsfs.mountpoint)], reps)
        lsns = median_time(["lsns"], reps)
        plain = median_time([sys.executable, "-c", PLAIN_SCAN], reps)
        ls_floor = median_time(["ls", str(floor)], reps)
        ls_l_floor = median_time(["ls", "-l", str(floor)], reps)
    finally:
        subprocess.run(["umount", str(floor)], check=False)
    ls_l_pyfuse3 = floor_ls_l(names, reps)
    rows += [
        ("a) ls", f"{ls * 1000:.0f} ms", f"lsns/ls = {lsns / ls:.1f}x", ">= 10x"),
        (
            "a) ls -l",
            f"{ls_l * 1000:.0f} ms",
            f"lsns/ls-l = {lsns / ls_l:.1f}x, /tmpfs = {ls_l / ls_l_floor:.0f}x",
            ">= 8x, <= 10x",
        ),
        ("a) lsns", f"{lsns * 1000:.0f} ms", "", ""),
        ("a) plain python /proc scan", f"{plain * 1000:.0f} ms", f"plain/ls = {plain / ls:.1f}x", ""),
        ("a) ls, ls -l on tmpfs (floor)", f"{ls_floor * 1000:.0f} / {ls_l_floor * 1000:.0f} ms", "", ""),
        (
            "a) ls -l, do-nothing pyfuse3 fs",
            f"{ls_l_pyfuse3 * 1000:.0f} ms",
            f"lsns/that = {lsns / ls_l_pyfuse3:.1f}x",
            "",
        ),
    ]
    new_proc = median_of(lambda: appearance(nsfs), reps)
    new_fd = lifetime.median_sample([fd_only_appearance(nsfs, procs, args.timeout) for _ in range(min(reps, 3))])
    gone = median_of(lambda: disappearance(nsfs), reps)
    took = sweep_seconds(nsfs)
    sweep = "not logged" if took is None else f"{took:.0f} s"
    rows += [
        ("b) new process -> listed", f"{new_proc * 1000:.0f} ms", "", "<= 100 ms"),
        ("b) new fd-only -> listed", lifetime.fmt_ms(new_fd, args.timeout), "", f"<= one sweep ({sweep})"),
        ("c) last holder gone -> unlisted", f"{gone * 1000:.0f} ms", "", "<= 1000 ms"),
    ]
    cpu0 = lifetime.cpu_seconds(nsfs.pid)
    time.sleep(args.idle)
    idle = (lifetime.cpu_seconds(nsfs.pid) - cpu0) / args.idle
    pins = len(nsfs.pinned())
    rows += [
        (f"d) idle CPU over {args.idle:.0f} s", f"{idle * 100:.1f}% of a core", "", "<= 2%"),
        ("e) resident memory", f"{rss_mb(nsfs.pid):.0f} MB", "", "<= 100 MB"),
        ("e) open fds / pinned", f"{nsfs.fd_count()} / {pins}", "", "<= pins + 32"),
    ]
    return rows


if __name__ == "__main__":
    sys.exit(main())
