"""Which namespaces nsfs finds that lsns does not, per kind of holder.

Builds namespaces held each way there is (COUNT of each), mounts a daemon on a
temporary directory, then counts how many of each kind the mount lists and how
many `lsns` lists, and whether lsns lists anything the mount does not.
Run as root from the repository: `make compare` (or python -m bench.lsns_compare [COUNT]).
"""

from __future__ import annotations

import array
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.daemon import running_daemon
from tests.support.oracles import children, ns_of
from tests.support.procs import Procs
from tests.support.programs import SOCKET_ONLY, THREAD, UNSHARE_TIME_NO_EXEC
from tests.support.waiting import INTERVAL, run


class World:
    """Namespaces held in every way, and what to undo afterwards."""

    def __init__(self, procs: Procs, scratch: Path) -> None:
        self.procs = procs
        self.scratch = scratch
        self.fds: list[int] = []
        self.mounts: list[Path] = []
        self.sockets: list[socket.socket] = []
        self.in_flight: list[tuple[int, int]] = []  # (fd, pid) to let go once the daemon has seen them

    def _held_by_fd(self, pid: int, nstype: str) -> int:
        fd = os.open(f"/proc/{pid}/ns/{nstype}", os.O_RDONLY)
        self.fds.append(fd)
        return fd

    def process(self) -> list[str]:
        return [ns_of(self.procs.sleeper("--net"), "net")]

    def thread(self) -> list[str]:
        return [self.procs.reporting(sys.executable, "-c", THREAD)[1][1]]

    def pid_for_children(self) -> list[str]:
        proc = self.procs.start("unshare", "--pid", "sh", "-c", "(true); exec sleep 600")
        return [os.readlink(f"/proc/{self.procs.wait_for_sleep(proc)}/ns/pid_for_children")]

    def time_for_children(self) -> list[str]:
        return self.procs.reporting(sys.executable, "-c", UNSHARE_TIME_NO_EXEC)[1]

    def fd(self) -> list[str]:
        pid = self.procs.sleeper("--net")
        self._held_by_fd(pid, "net")
        name = ns_of(pid, "net")
        self.procs.end(pid)
        return [name]

    def _bind(self, pid: int, inside: int | None = None) -> Path:
        target = self.scratch / f"ns-{len(self.mounts)}"
        target.touch()
        enter = [] if inside is None else ["nsenter", f"--target={inside}", "--mount"]
        assert run([*enter, "mount", "--bind", f"/proc/{pid}/ns/net", str(target)]).returncode == 0
        if inside is None:
            self.mounts.append(target)
        return target

    def mount(self) -> list[str]:
        pid = self.procs.sleeper("--net")
        self._bind(pid)
        name = ns_of(pid, "net")
        self.procs.end(pid)
        return [name]

    def mount_elsewhere(self) -> list[str]:
        pid, holder = self.procs.sleeper("--net"), self.procs.sleeper("--mount", "--propagation", "private")
        self._bind(pid, inside=holder)
        name = ns_of(pid, "net")
        self.procs.end(pid)
        return [name]

    def mount_in_processless_mntns(self) -> list[str]:
        pid, holder = self.procs.sleeper("--net"), self.procs.sleeper("--mount", "--propagation", "private")
        self._bind(pid, inside=holder)
        self._held_by_fd(holder, "mnt")
        names = [ns_of(pid, "net"), ns_of(holder, "mnt")]
        self.procs.end(pid)
        self.procs.end(holder)
        return names

    def socket(self) -> list[str]:
        return [self.procs.reporting(sys.executable, "-c", SOCKET_ONLY)[1][0]]

    def owner_only(self) -> list[str]:
        pid = self.procs.sleeper("--user", "--map-root-user", "--net")
        self._held_by_fd(pid, "net")
        user = ns_of(pid, "user")
        self.procs.end(pid)
        return [user]

    def parent_only(self) -> list[str]:
        proc = self.procs.start(*("unshare", "--pid", "--fork") * 2, "sleep", "600")
        inner = self.procs.wait_for_sleep(proc)
        outer = ns_of(children(proc.pid)[0], "pid")
        self._held_by_fd(inner, "pid")
        self.procs.stop(proc)
        return [outer]

    def fd_in_flight(self) -> list[str]:
        pid = self.procs.sleeper("--net")
        name = ns_of(pid, "net")
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        self.sockets += [sender, receiver]
        self.in_flight.append((fd, pid))
        return [name]

    def go_in_flight(self) -> None:
        """Once the daemon has seen them, leave the message as the only holder."""
        for fd, pid in self.in_flight:
            os.close(fd)
            self.procs.end(pid)
        self.in_flight.clear()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for target in self.mounts:
            run(["umount", str(target)])
        for sock in self.sockets:
            sock.close()


def main(count: int) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="nsfs-compare-"))
    scratch.chmod(0o755)
    procs = Procs()
    world = World(procs, scratch)
    kinds: dict[str, Callable[[], list[str]]] = {
        "process": world.process,
        "thread only": world.thread,
        "pid_for_children only": world.pid_for_children,
        "time_for_children only": world.time_for_children,
        "open fd only": world.fd,
        "bind mount, daemon's mount ns": world.mount,
        "bind mount, other mount ns": world.mount_elsewhere,
        "bind mount, process-less mount ns": world.mount_in_processless_mntns,
        "socket only": world.socket,
        "owner of another only": world.owner_only,
        "parent of another only": world.parent_only,
        "fd in flight (SCM_RIGHTS)": world.fd_in_flight,
    }
    try:
        made = {kind: [name for _ in range(count) for name in make()] for kind, make in kinds.items()}
        with running_daemon(scratch / "mnt") as nsfs:
            time.sleep(3 * INTERVAL)
            world.go_in_flight()
            time.sleep(3 * INTERVAL)
            ours = nsfs.names()
            lsns = run(["lsns", "--list", "--noheadings", "--output", "NS,TYPE"])
            theirs = {f"{t}:[{n}]" for n, t in (line.split() for line in lsns.stdout.splitlines())}
            version = run(["lsns", "--version"]).stdout.strip()
            print(f"{'held by':36} {'made':>5} {'nsfs':>5} {'lsns':>5}")
            for kind, names in made.items():
                print(f"{kind:36} {len(names):5} {len(set(names) & ours):5} {len(set(names) & theirs):5}")
            print(f"{'all namespaces on the machine':36} {'':5} {len(ours):5} {len(theirs):5}")
            print(f"lsns lists but nsfs does not: {sorted(theirs - ours) or 'none'}  ({version})")
            return 0 if theirs <= ours else 1
    finally:
        world.close()
        procs.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
