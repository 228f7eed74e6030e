"""Processes the tests start, and ending them (and what they started) without leaving any."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .oracles import children, comm
from .waiting import PATIENCE, SLOWDOWN, wait_until


class Procs:
    """Processes started by one test; each in a process group of its own, killed whole.

    Killing only the process a test started is not enough: `unshare --fork`
    leaves a child behind (--kill-child relies on the parent-death signal, which
    the kernel clears when --map-root-user changes credentials), and nested
    unshares leave grandchildren. A process group follows its members into new
    pid namespaces, so killing the group reaches them all.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._by_pid: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def reporting(self, *argv: str) -> tuple[subprocess.Popen[bytes], list[str]]:
        """Start a program that prints one line about what it holds; return it and that line's words."""
        proc = self.start(*argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().decode().split()

    def sleeper(self, *unshare_flags: str, uid: int | None = None, prefix: Sequence[str] = ()) -> int:
        """A `sleep` in new namespaces, run by `uid` if given, under `prefix` (an nsenter, say);
        returns its pid.

        With --fork that is unshare's child, which is in the new pid and time namespaces.
        """
        as_user = () if uid is None else ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups")
        proc = self.start(*prefix, *as_user, "unshare", *unshare_flags, "sleep", "600")
        pid = self.wait_for_sleep(proc)
        self._by_pid[pid] = proc
        return pid

    def wait_for_sleep(self, proc: subprocess.Popen[bytes]) -> int:
        """The pid of the `sleep` that `proc` runs or starts, however deep."""

        def find() -> int:
            pid = proc.pid
            try:
                while comm(pid) != "sleep":
                    kids = children(pid)
                    if not kids:
                        break
                    pid = kids[0]
                else:
                    return pid
            except FileNotFoundError:
                pass  # it, or one it started, exited as it was looked at
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode} before starting sleep")
            return 0

        return wait_until(find, f"{proc.args!r} to start sleep")

    def end(self, pid: int) -> None:
        """End a sleeper (and the unshare around it) and wait until it is gone."""
        self.stop(self._by_pid.pop(pid))
        kill(pid)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill everything in `proc`'s process group and wait until none of it is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=PATIENCE * SLOWDOWN)
        wait_until(lambda: not _group_members(proc.pid), f"every process of {proc.args!r} to die")

    def close(self) -> None:
        """Kill every process group started, then wait for them all: one walk of /proc for all
        the groups, not one per group (a benchmark's world has thousands)."""
        live = [proc for proc in self._procs if proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in live:
            proc.wait(timeout=PATIENCE * SLOWDOWN)
        groups = {proc.pid for proc in live}
        wait_until(lambda: not _group_members(*groups), f"every process of {len(groups)} groups to die", timeout=60)


def kill(pid: int) -> None:
    """Kill a process by pid and wait until it is gone (reaped by whoever its parent is)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), f"pid {pid} to die")


def daemon_serving(mountpoint: Path) -> int:
    """The pid of the nsfs daemon whose command line names `mountpoint`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() != "nsfs":
                continue
            if str(mountpoint) in Path(f"/proc/{pid}/cmdline").read_text().split("\0"):
                return int(pid)
    return 0


def gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie has: only its parent's wait is missing)."""
    return _state(pid) in ("", "Z")


def children_of(parent: int) -> list[int]:
    """The processes `parent` started, from any of its threads (`children` sees one thread's)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(name))
    return found


def watchdog_of(daemon: int) -> int:
    """The pid of the fusermount3 that watches `daemon`'s mount (libfuse's auto_unmount): it
    unmounts the mount if the daemon dies without unmounting it."""

    def find() -> int:
        return next((pid for pid in children_of(daemon) if comm(pid) == "fusermount3"), 0)

    return wait_until(find, f"the watchdog of daemon {daemon}'s mount")


def kill_with_watchdog(daemon: subprocess.Popen[bytes]) -> None:
    """SIGKILL a daemon and its mount's watchdog, as systemd kills a whole service whose stop
    timed out: what still leaves a dead mount. The watchdog first, or it would unmount."""
    kill(watchdog_of(daemon.pid))
    daemon.kill()
    daemon.wait(timeout=PATIENCE * SLOWDOWN)


def _group_members(*pgids: int) -> list[int]:
    """Live (not zombie) processes in process groups `pgids`."""
    members = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids and fields[0] != "Z":
                members.append(int(name))
    return members


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
