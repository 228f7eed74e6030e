"""The daemon under test: running it on a temporary mountpoint, reading what it lists, and
whether it let go of namespaces."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from nsfs_fuse.readers.mounted import events_socket

from .waiting import INTERVAL, PATIENCE, SLOWDOWN, SWEEP_CPU, is_mounted, run, wait_until

NSFS = [sys.executable, "-m", "nsfs_fuse"]


LSNSFS = str(Path(sys.executable).with_name("lsnsfs"))  # the command `make setup` installs


@contextlib.contextmanager
def netns_added(name: str) -> Iterator[str]:
    """`ip netns add NAME`, deleted on the way out: a namespace held by a bind mount alone."""
    added = run(["ip", "netns", "add", name])
    assert added.returncode == 0, added.stderr
    try:
        yield f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"  # the bind mount's inode is the namespace's
    finally:
        run(["ip", "netns", "del", name])


class Daemon:
    """A foreground nsfs daemon serving `mountpoint`."""

    def __init__(self, mountpoint: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.mountpoint = mountpoint
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def path(self, *parts: str) -> Path:
        return self.mountpoint.joinpath(*parts)

    def names(self) -> set[str]:
        return set(os.listdir(self.mountpoint))

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def pinned(self) -> set[str]:
        """Namespace names the daemon holds fds on."""
        names = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                if ":[" in target and not target.startswith(("socket", "pipe", "anon_inode")):
                    names.add(target)
        return names

    def read(self, name: str, file: str) -> str:
        return self.path(name, file).read_text()


@contextlib.contextmanager
def running_daemon(
    mountpoint: Path,
    *options: str,
    interval: float = INTERVAL,
    sweep_cpu: float | None = SWEEP_CPU,
    prefix: Sequence[str] = (),
    startup: float = PATIENCE,
) -> Iterator[Daemon]:
    """A foreground daemon on `mountpoint` (run under `prefix`, e.g. prlimit), stopped with SIGTERM.

    sweep_cpu=None leaves the daemon's default. `startup`: how long its first sweep may take
    before it mounts (a benchmark's world of 20,000 processes takes longer than a test's).
    """
    mountpoint.mkdir(exist_ok=True)
    log = mountpoint.with_name(mountpoint.name + ".log")
    budget = [] if sweep_cpu is None else [f"sweep_cpu={sweep_cpu:g}"]
    opts = ",".join([f"interval={interval}", *budget, *options])
    with open(log, "wb") as out:
        argv = [*prefix, *NSFS, str(mountpoint), "-f", "-o", opts]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=out)
    daemon = Daemon(mountpoint, proc, log)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode}: {log.read_text()}")
            return is_mounted(mountpoint) and bool(os.listdir(mountpoint))

        wait_until(up, f"{mountpoint} to be mounted", timeout=startup)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=PATIENCE * SLOWDOWN)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # A daemon killed outright leaves its events socket: the next daemon on that mountpoint
        # would remove it, but a test's mountpoint is never used again.
        Path(events_socket(str(mountpoint.resolve()))).unlink(missing_ok=True)
        if is_mounted(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
            raise AssertionError(f"{mountpoint} was left mounted after the daemon stopped")
    assert proc.returncode == 0, f"daemon exited with {proc.returncode}: {log.read_text()}"


def leaving(nsfs: Daemon, name: str) -> None:
    """`name` was caught on its way out (its `ns` gone, or opening /dev/null while the daemon
    probes it): it must leave the listing, or stay as held by nothing a scan finds (`unseen`)."""

    def left() -> bool:
        try:
            return name not in nsfs.names() or nsfs.read(name, "holders") == "unseen\n"
        except FileNotFoundError:
            return True

    wait_until(left, f"{name} to leave the listing")


def assert_released(nsfs: Daemon, baseline: int, *names: str) -> None:
    """The names leave the listing, and the daemon closes its pins on them."""
    wait_until(lambda: not set(names) & nsfs.names(), f"{names} to leave the listing")
    wait_until(lambda: not set(names) & nsfs.pinned(), f"the daemon to close its pins on {names}")
    wait_until(lambda: nsfs.fd_count() <= baseline, f"the daemon's fd count to return to {baseline}")
