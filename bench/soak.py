"""Soak: namespaces made and destroyed at a steady rate while readers check every answer.

A churn process makes RATE namespaces a second for SECONDS, each held by a
process, an fd or a bind mount for a random moment, while READERS threads list
the tree, read every file and follow every link, comparing what the mount says
with what the kernel says about the namespace they then hold open. ENOENT for a
namespace that just died is fine; anything else that disagrees is a wrong answer.

Run as root from the repository: `make soak` (python -m bench.soak --seconds 60 --rate 200).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemon import Daemon, running_daemon
from tests.support.features import has
from tests.support.oracles import NS_GET_ID, NS_GET_USERNS, related_fd
from tests.support.waiting import wait_until

# Makes namespaces at a rate, each held one way for 0.1 to 1 s, then undone.
CHURN = r"""
import ctypes, os, random, signal, sys, time
seconds, rate, scratch = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET, CLONE_NEWUTS, MS_BIND, MNT_DETACH = 0x40000000, 0x04000000, 4096, 2
undo = []  # (when, what, arg)

def child():
    pid = os.fork()
    if pid == 0:
        libc.unshare(CLONE_NEWNET | CLONE_NEWUTS)
        signal.pause()
        os._exit(0)
    return pid

def settle(pid):
    while os.readlink(f"/proc/{pid}/ns/net") == home:
        time.sleep(0.0005)

def kill(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)

def undo_one(what, arg):
    if what == "kill":
        kill(arg)
    elif what == "close":
        os.close(arg)
    else:
        libc.umount2(arg.encode(), MNT_DETACH)
        os.unlink(arg)

home = os.readlink("/proc/self/ns/net")
end, made, n = time.monotonic() + seconds, 0, 0
while time.monotonic() < end:
    now = time.monotonic()
    for item in [u for u in undo if u[0] <= now]:
        undo.remove(item)
        undo_one(*item[1:])
    pid = child()
    settle(pid)
    later = now + random.uniform(0.1, 1.0)
    kind = n % 3
    if kind == 0:
        undo.append((later, "kill", pid))
    elif kind == 1:
        undo.append((later, "close", os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)))
        kill(pid)
    else:
        target = f"{scratch}/ns-{n}"
        open(target, "w").close()
        libc.mount(f"/proc/{pid}/ns/net".encode(), target.encode(), None, MS_BIND, None)
        undo.append((later, "umount", target))
        kill(pid)
    made += 2 if kind == 0 else 1
    n += 1
    time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - now)))
for _, what, arg in undo:
    undo_one(what, arg)
print(made, flush=True)
"""


@dataclass
class Tally:
    reads: int = 0
    vanished: int = 0
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, reads: int, vanished: int, wrong: list[str]) -> None:
        with self.lock:
            self.reads += reads
            self.vanished += vanished
            self.wrong.extend(wrong[:10])


def check_entry(nsfs: Daemon, name: str) -> list[str]:
    """What the mount says about `name` that the kernel contradicts, holding the namespace open."""
    nstype, inode = name.split(":", 1)[0], int(name.split("[", 1)[1][:-1])
    wrong = []
    if nsfs.read(name, "nstype") != f"{nstype}\n":
        wrong.append(f"{name}: nstype")
    if "holders" not in os.listdir(nsfs.path(name)):
        wrong.append(f"{name}: no holders file")
    nsfs.read(name, "holders")
    try:
        fd = os.open(nsfs.path(name, "ns"), os.O_RDONLY)  # from here on it cannot die or be renumbered
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # being let go: its pin points at a socket
            raise FileNotFoundError(errno.ENOENT, "released", name) from None
        raise
    try:
        if os.fstat(fd).st_ino != inode:
            return [*wrong, f"{name}: ns opens inode {os.fstat(fd).st_ino}"]
        if has("ns_id"):
            buf = bytearray(8)
            fcntl.ioctl(fd, NS_GET_ID, buf, True)
            if nsfs.read(name, "id") != f"{int.from_bytes(buf, 'little')}\n":
                wrong.append(f"{name}: id")
        elif os.path.lexists(nsfs.path(name, "id")):
            wrong.append(f"{name}: an id file, on a kernel without NS_GET_ID")
        owner = related_fd(fd, NS_GET_USERNS)
        link = nsfs.path(name, "owner")
        said = os.readlink(link) if os.path.lexists(link) else None
        if said != (None if owner is None else f"../{owner}"):
            wrong.append(f"{name}: owner {said} but the kernel says {owner}")
    finally:
        os.close(fd)
    return wrong


def reader(nsfs: Daemon, stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        reads, vanished, wrong = 0, 0, []
        for name in sorted(nsfs.names()):
            try:
                wrong += check_entry(nsfs, name)
                reads += 1
            except FileNotFoundError:
                vanished += 1  # died since the listing: fine
            except OSError as exc:
                wrong.append(f"{name}: {exc}")
        tally.add(reads, vanished, wrong)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Report:
    made: int
    reads: int
    vanished: int
    wrong: list[str]
    alive: bool
    fds: tuple[int, int]
    rss_kb: tuple[int, int]

    @property
    def ok(self) -> bool:
        return self.alive and not self.wrong and self.fds[1] <= self.fds[0] and self.rss_kb[1] < self.rss_kb[0] * 1.1

    def __str__(self) -> str:
        growth = 100.0 * (self.rss_kb[1] - self.rss_kb[0]) / self.rss_kb[0]
        lines = [
            f"namespaces made and destroyed   {self.made}",
            f"entries checked                 {self.reads} ({self.vanished} vanished while read: fine)",
            f"wrong answers                   {len(self.wrong)}",
            f"daemon alive throughout         {'yes' if self.alive else 'NO'}",
            f"daemon fds before / after       {self.fds[0]} / {self.fds[1]}",
            f"daemon RSS before / after       {self.rss_kb[0]} / {self.rss_kb[1]} kB ({growth:+.1f}%)",
            f"verdict                         {'ok' if self.ok else 'FAILED'}",
        ]
        return "\n".join(lines + [f"  wrong: {w}" for w in self.wrong[:10]])


def soak(seconds: float, rate: float, readers: int, interval: float = 1.0, daemons: int = 1) -> Report:
    """`daemons` - 1 more daemons run beside the one read, each on a mount of its own: none may
    keep what the others let go of, nor make one let go of what something still holds."""
    scratch = Path(tempfile.mkdtemp(prefix="nsfs-soak-"))
    scratch.chmod(0o755)
    try:
        with contextlib.ExitStack() as others, running_daemon(scratch / "mnt", interval=interval) as nsfs:
            for n in range(1, daemons):
                others.enter_context(running_daemon(scratch / f"other{n}", interval=interval))
            time.sleep(2 * interval)
            before = nsfs.fd_count(), rss_kb(nsfs.pid)
            stop, tally = threading.Event(), Tally()
            threads = [threading.Thread(target=reader, args=(nsfs, stop, tally)) for _ in range(readers)]
            for thread in threads:
                thread.start()
            churn = subprocess.run(
                [sys.executable, "-c", CHURN, str(seconds), str(rate), str(scratch)],
                capture_output=True,
                text=True,
                check=False,
                timeout=seconds + 120,
            )
            alive = nsfs.proc.poll() is None
            stop.set()
            for thread in threads:
                thread.join()
            # Everything churn made is undone: the daemon lets go within a few refreshes.
            with contextlib.suppress(AssertionError):  # if not, the report says so
                wait_until(lambda: nsfs.fd_count() <= before[0], "the fd count to settle", timeout=10 * interval + 10)
            after = nsfs.fd_count(), rss_kb(nsfs.pid)
            made = int(churn.stdout.split()[0]) if churn.returncode == 0 else 0
            if churn.returncode != 0:
                tally.wrong.append(f"churn failed: {churn.stderr.strip()[-300:]}")
            fds, rss = (before[0], after[0]), (before[1], after[1])
            return Report(made, tally.reads, tally.vanished, tally.wrong, alive, fds, rss)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=200, help="namespaces made per second")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0, help="the daemon's refresh period")
    parser.add_argument("--daemons", type=int, default=1, help="nsfs daemons running, the one read among them")
    args = parser.parse_args()
    report = soak(args.seconds, args.rate, args.readers, args.interval, args.daemons)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
