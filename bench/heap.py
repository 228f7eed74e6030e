"""Where the daemon's memory goes: a heap snapshot of its index of this machine.

Builds what the daemon keeps (discovery's reads of every process, the registry with
its real pins and mount-table readers, a published snapshot and root's view of it)
in this process under tracemalloc, and prints the total, the bytes per process and
per entry, and the source lines that hold the most. Run as root by bench/scale.py
at its largest size, or alone: `python -m bench.heap`.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
import tracemalloc

import psutil

from nsfs_fuse import discovery, kernel, pins
from nsfs_fuse.mount_tables import Tables
from nsfs_fuse.registry import Registry
from nsfs_fuse.visibility import Views

TOP = 12
PER_PROCESS = ("holdings.py", "discovery.py")  # what is kept per process read: its sightings and holders


def _ours(traceback: tracemalloc.Traceback) -> str:
    """file:line of the innermost frame of the package (a dataclass's __init__ is `<string>`)."""
    for frame in reversed(traceback):
        if "/nsfs_fuse/" in frame.filename:
            return f"{frame.filename.split('/nsfs_fuse/')[-1]}:{frame.lineno}"
    frame = traceback[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"


def main() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nsfs_dev = kernel.nsfs_device()
    scanner = discovery.Scanner(os.getpid(), nsfs_dev)
    budget = pins.Budget(pins.budget(hard, resource.RLIM_INFINITY))
    gc.collect()
    tracemalloc.start(16)
    before = tracemalloc.take_snapshot()
    tables = Tables(scanner.helpers, budget)
    registry = Registry(pins.Pins(nsfs_dev, budget), tables)
    started = time.monotonic()
    processes = psutil.pids()
    for at in range(0, len(processes), 256):
        registry.update(scanner.read(pid) for pid in processes[at : at + 256])
    registry.refresh_tables()
    snapshot = registry.end_sweep(started)
    root = discovery.caller_sightings(os.getpid())
    userns = next(s.key for s in root if s.key.type == "user")
    view = Views().get(snapshot, userns)
    assert len(view.listing) == len(snapshot.entries)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    entries = len(snapshot.entries)
    by_line: dict[str, list[int]] = {}  # the innermost line of the package that allocated: bytes, blocks
    for stat in stats:
        where = _ours(stat.traceback)
        tally = by_line.setdefault(where, [0, 0])
        tally[0] += stat.size_diff
        tally[1] += stat.count_diff
    by_file: dict[str, int] = {}
    for where, (size, _count) in by_line.items():
        by_file[where.split(":")[0]] = by_file.get(where.split(":")[0], 0) + size
    per_process = sum(by_file.get(f, 0) for f in PER_PROCESS)
    per_entry = total - per_process
    print(
        f"heap of the index: {total / 2**20:.1f} MB for {len(processes)} processes and {entries} entries: "
        f"{per_process / len(processes):.0f} bytes a process ({', '.join(PER_PROCESS)}: each process's last read), "
        f"{per_entry / entries:.0f} bytes an entry (the rest: entries, pins, snapshot, views)"
    )
    largest = sorted(by_file.items(), key=lambda i: -i[1])[:8]
    print("by file: " + ", ".join(f"{f} {b / 2**20:.1f} MB" for f, b in largest))
    print(f"the {TOP} lines that hold the most:")
    for where, (size, count) in sorted(by_line.items(), key=lambda i: -i[1][0])[:TOP]:
        print(f"  {size / 2**20:6.1f} MB {count:>8} blocks  {where}")
    registry.close()
    tables.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
