"""What reading one process costs the daemon: the CPU time of a whole sweep of /proc, in this
process (no FUSE, no registry), divided by the processes read.

    python -m bench.sweep_cost [--sleepers N] [--reps R]

starts N sleeping processes first (2,000 by default), sweeps once to warm the caches, then R
times (7), and prints the median. To compare two checkouts, run it with each one first on
PYTHONPATH, one after the other, on a machine doing nothing else.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from nsfs_fuse import discovery, kernel


def sweep_cpu(scanner: discovery.Scanner) -> float:
    started = time.process_time()
    scanner.sweep(lambda _reads: True)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleepers", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    sleepers = [
        subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, start_new_session=True)
        for _ in range(args.sleepers)
    ]
    try:
        scanner = discovery.Scanner(os.getpid(), kernel.nsfs_device())
        sweep_cpu(scanner)
        median = statistics.median(sweep_cpu(scanner) for _ in range(args.reps))
        processes = len(scanner.pids())
        print(f"{processes} processes: a sweep {median * 1000:.0f} ms CPU, {median / processes * 1e6:.1f} us a process")
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()


if __name__ == "__main__":
    main()
