"""The kernel's own list of namespaces (listns(2), Linux 6.19+), followed by the daemon: a
namespace no process was ever read in is listed all the same, without a sweep (listed.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, assert_released, running_daemon
from tests.support.features import has
from tests.support.oracles import comm, listns_ids, ns_of
from tests.support.procs import Procs
from tests.support.programs import IN_FLIGHT_ONLY, UNSHARE_WHEN_TOLD
from tests.support.waiting import wait_until


def listed_holders(nsfs: Daemon, name: str) -> list[str] | None:
    try:
        return nsfs.read(name, "holders").splitlines()
    except FileNotFoundError:
        return None


def test_the_log_says_whether_the_kernels_list_is_followed(nsfs: Daemon) -> None:
    expected = (
        "following the kernel's list of namespaces (listns)"
        if has("listns")
        else "no listns (Linux 6.19+): namespaces no process is in are found by sweeps"
    )
    wait_until(lambda: expected in nsfs.log.read_text(), expected)


@pytest.mark.needs("listns")
def test_a_namespace_only_an_fd_in_flight_ever_held_is_listed_and_leaves_with_it(
    nsfs: Daemon, procs: Procs, baseline: int, public_dir: Path
) -> None:
    with running_daemon(public_dir / "without", "nolistns") as without:
        proc, (net, user) = procs.reporting(sys.executable, "-c", IN_FLIGHT_ONLY)
        wait_until(lambda: listed_holders(nsfs, net) == ["unseen"], "the fd in flight's namespace, unseen")
        assert listed_holders(nsfs, user) == [f"owner-of {net}"]  # its child keeps it: not unseen
        ids = {int(nsfs.read(net, "id")), int(nsfs.read(user, "id"))}
        time.sleep(1.0)  # process events, follow-ups and fd counts: none of them can see it
        assert not {net, user} & without.names(), "a daemon that does not read listns never learns of them"
        assert "following the kernel's list" not in without.log.read_text()
    procs.stop(proc)  # the socket, and the message in it, are freed
    wait_until(lambda: not ids & listns_ids(), "the kernel to let go of both (the daemon's pins included)")
    assert_released(nsfs, baseline, net, user)


@pytest.mark.needs("listns")
def test_namespaces_an_old_process_makes_with_no_fork_exec_thread_or_fd_are_listed_with_it(
    procs: Procs, public_dir: Path
) -> None:
    """No event tells of an unshare() of a process's own; past its first read no follow-up is
    due and no fd count changes. The kernel's list names the namespaces, and the search it
    asks for finds the process in them. Sweeps are ten minutes apart here: none can name it."""
    with running_daemon(public_dir / "rare-sweeps", interval=600) as nsfs:
        proc = procs.start(sys.executable, "-c", UNSHARE_WHEN_TOLD, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        line = f"process {proc.pid} {comm(proc.pid)}"
        host_net = ns_of(proc.pid, "net")
        wait_until(lambda: line in (listed_holders(nsfs, host_net) or []), "its first read, in the host's namespaces")
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        net, user, time_ns = proc.stdout.readline().decode().split()
        wait_until(lambda: listed_holders(nsfs, net) == [line], "the network namespace, held by the process")
        wait_until(lambda: listed_holders(nsfs, time_ns) == [f"for-children {proc.pid}"], "the time namespace")
        assert listed_holders(nsfs, user) == [line, f"owner-of {net}", f"owner-of {time_ns}"]
        procs.stop(proc)
        wait_until(lambda: not {net, user, time_ns} & nsfs.names(), "all three to leave with the process")
