"""The kernel's own list of namespaces (listns(2), Linux 6.19+), followed by the daemon: a
namespace no process was ever read in is listed all the same, without a sweep (listed.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, assert_released, running_daemon
from tests.support.features import has
from tests.support.oracles import listns_ids
from tests.support.procs import Procs
from tests.support.programs import IN_FLIGHT_ONLY
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
