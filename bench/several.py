"""Several nsfs daemons at once: how soon the kernel frees what only daemons still pin.

With DAEMONS daemons mounted (default 3), each figure is measured by the kernel, not by the
mounts, and printed beside the same measurement with no daemon at all:

a) a mount namespace bind-mounted in a private directory, then unmounted: every daemon has
   a helper in it (to read its table) and a pin on it. Time from `umount` until the kernel
   frees it (its file handle no longer opens), no process is in it, and no mount lists it.
b) 20 network namespaces, each held by one `sleep` and witnessed by a veth: time from
   killing the 20 holders until the last veth's host end has vanished, and no mount lists
   any of them.
c) the soak (bench/soak.py) with readers that hold each namespace open through `ns`,
   read while DAEMONS - 1 other daemons run: its wrong answers.

Run as root from the repository: `make bench-daemons` (python -m bench.several).
Medians and worst of REPS; a figure that timed out prints as "> T s".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.soak import soak
from tests.support.daemon import Daemon, running_daemon
from tests.support.oracles import link_exists, ns_alive, ns_handle
from tests.support.waiting import run

POLL = 0.005
TIMEOUT = 10.0
NETNS = 20
TAG = f"nsm{os.getpid() % 10000:04d}"  # prefix of every veth made by this run

Sample = float | None


def until(done: Callable[[], bool], start: float) -> Sample:
    """Seconds from `start` (time.monotonic) until `done()`; None after TIMEOUT."""
    while not done():
        if time.monotonic() - start > TIMEOUT:
            return None
        time.sleep(POLL)
    return time.monotonic() - start


def unlisted(daemons: Sequence[Daemon], *names: str) -> bool:
    return not any(os.path.lexists(daemon.path(name)) for daemon in daemons for name in names)


def in_mnt(mnt: str) -> bool:
    """Whether any process is in mount namespace `mnt`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/mnt") == mnt:
                return True
    return False


@contextlib.contextmanager
def private_dir(scratch: Path) -> Iterator[Path]:
    path = scratch / "private"
    path.mkdir(exist_ok=True)
    run(["mount", "--bind", str(path), str(path)])
    run(["mount", "--make-private", str(path)])
    try:
        yield path
    finally:
        run(["umount", "--recursive", "--lazy", str(path)])


def mount_namespace(daemons: Sequence[Daemon], where: Path) -> Sample:
    target = where / "mnt"
    target.touch()
    made = run(["unshare", f"--mount={target}", "--propagation", "private", "true"])
    assert made.returncode == 0, made.stderr
    name = f"mnt:[{target.stat().st_ino}]"
    handle = ns_handle(str(target))
    try:
        # Every daemon follows its table (a helper of each is in it) before it goes.
        assert until(lambda: all(os.path.lexists(d.path(name)) for d in daemons), time.monotonic()) is not None
        time.sleep(1.0)
    finally:
        start = time.monotonic()
        run(["umount", str(target)])
    return until(lambda: not ns_alive(handle) and not in_mnt(name) and unlisted(daemons, name), start)


def network_namespaces(daemons: Sequence[Daemon]) -> Sample:
    sleepers = [subprocess.Popen(["unshare", "--net", "sleep", "600"]) for _ in range(NETNS)]
    veths = [f"{TAG}{i}" for i in range(NETNS)]
    home = os.readlink("/proc/self/ns/net")
    try:
        names = set()
        for proc, veth in zip(sleepers, veths, strict=True):
            netns = f"/proc/{proc.pid}/ns/net"
            assert until(functools.partial(_moved, netns, home), time.monotonic()) is not None
            names.add(os.readlink(netns))
            link = [
                "ip",
                "link",
                "add",
                f"{veth}p",
                "type",
                "veth",
                "peer",
                veth,
                "netns",
                f"/proc/{os.getpid()}/ns/net",
            ]
            added = run(["nsenter", f"--net={netns}", *link])
            assert added.returncode == 0, added.stderr
        pinned = functools.partial(_all_pin, daemons, names)
        assert until(pinned, time.monotonic()) is not None, "every daemon to pin all of them"
        start = time.monotonic()
        for proc in sleepers:
            proc.send_signal(signal.SIGKILL)
        for proc in sleepers:
            proc.wait()
        return until(lambda: not any(map(link_exists, veths)) and unlisted(daemons, *names), start)
    finally:
        for proc in sleepers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for veth in veths:
            if link_exists(veth):
                run(["ip", "link", "del", veth])


def _moved(netns: str, home: str) -> bool:
    return os.readlink(netns) != home


def _all_pin(daemons: Sequence[Daemon], names: set[str]) -> bool:
    return all(names <= d.pinned() for d in daemons)


def fmt(samples: Sequence[Sample]) -> str:
    if any(s is None for s in samples):
        done = [s for s in samples if s is not None]
        return f"{len(samples) - len(done)} of {len(samples)} > {TIMEOUT:g} s"
    ms = [1000 * s for s in samples if s is not None]
    return f"{statistics.median(ms):.0f} / {max(ms):.0f} ms"


@contextlib.contextmanager
def daemons_running(scratch: Path, count: int) -> Iterator[list[Daemon]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_daemon(scratch / f"d{n}", interval=1.0)) for n in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--soak-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="nsfs-several-"))
    scratch.chmod(0o755)
    rows = []
    try:
        with private_dir(scratch) as where:
            for count in (0, args.daemons):
                with daemons_running(scratch, count) as daemons:
                    mnt = [mount_namespace(daemons, where) for _ in range(args.reps)]
                    net = [network_namespaces(daemons) for _ in range(args.reps)]
                rows.append((count, fmt(mnt), fmt(net)))
        report = soak(args.soak_seconds, 100, 4, interval=1.0, daemons=args.daemons)
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=False)
    print(f"daemons running (median / worst of {args.reps}; kernel-witnessed)")
    print(f"{'':4}{'a) umount of a mount ns -> freed':36}{'b) 20 netns holders killed -> veths gone':42}")
    for count, mnt_figure, net_figure in rows:
        print(f"{count:<4}{mnt_figure:36}{net_figure:42}")
    print(f"c) soak {args.soak_seconds:g} s, {args.daemons} daemons: {len(report.wrong)} wrong answers")
    print(
        f"   ({report.made} namespaces made, {report.reads} entries checked; verdict {'ok' if report.ok else 'FAILED'})"
    )
    for wrong in report.wrong[:10]:
        print(f"   wrong: {wrong}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
