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
from nsfs_fuse.registry import Registry
from nsfs_fuse.tables import Tables
from nsfs_fuse.visibility import Views

TOP = 12


def main() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nsfs_dev = kernel.nsfs_device()
    scanner = discovery.Scanner(os.getpid(), nsfs_dev)
    budget = pins.Budget(pins.budget(hard, resource.RLIM_INFINITY))
    gc.collect()
    tracemalloc.start(1)
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
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    entries = len(snapshot.entries)
    print(
        f"heap of the index: {total / 2**20:.1f} MB for {len(processes)} processes and {entries} entries "
        f"({total / len(processes):.0f} bytes a process, or {total / entries:.0f} an entry, all counted)"
    )
    by_file: dict[str, int] = {}
    for stat in stats:
        name = stat.traceback[0].filename
        short = name.split("/nsfs_fuse/")[-1] if "/nsfs_fuse/" in name else os.path.basename(name)
        by_file[short] = by_file.get(short, 0) + stat.size_diff
    print(
        "by file: " + ", ".join(f"{f} {b / 2**20:.1f} MB" for f, b in sorted(by_file.items(), key=lambda i: -i[1])[:8])
    )
    print(f"the {TOP} lines that hold the most:")
    for stat in sorted(stats, key=lambda s: -s.size_diff)[:TOP]:
        frame = stat.traceback[0]
        where = frame.filename.split("/nsfs_fuse/")[-1] if "/nsfs_fuse/" in frame.filename else frame.filename
        print(f"  {stat.size_diff / 2**20:6.1f} MB {stat.count_diff:>8} blocks  {where}:{frame.lineno}")
    registry.close()
    tables.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
