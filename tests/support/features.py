"""What the running kernel can do, probed (never guessed from its version) the first time a
test asks, not at import: tests/conftest.py leaves out tests marked `needs(FEATURE)`."""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable

from .oracles import NS_GET_PID_IN_PIDNS, listns_ids, ns_alive, ns_handle, ns_id

FEATURES = {
    "ns_id": "NS_GET_ID, a namespace's 64-bit id (Linux 6.18): the `id` file",
    "ns_handles": "nsfs file handles (Linux 6.18): a namespace re-opened, or known dead, by handle",
    "fd_count": "the number of open fds in stat /proc/PID/fd (Linux 6.2)",
    "pid_in_pidns": "NS_GET_PID_IN_PIDNS (Linux 6.11): pids and `ns` links for callers in other pid namespaces",
    "listns": "listns(2) (Linux 6.19): every namespace in use, listed by the kernel",
}


@functools.cache
def kernel_features() -> dict[str, bool]:
    """Which of FEATURES the running kernel has."""

    def works(probe: Callable[[], object]) -> bool:
        try:
            return bool(probe())
        except OSError:
            return False

    return {
        "ns_id": works(lambda: ns_id("/proc/self/ns/net") > 0),
        "ns_handles": works(lambda: ns_alive(ns_handle("/proc/self/ns/net"))),
        "fd_count": works(lambda: os.stat("/proc/self/fd").st_size > 0),
        "pid_in_pidns": works(lambda: _pid_in_own_pidns() == os.getpid()),
        "listns": works(lambda: len(listns_ids()) > 0),
    }


def _pid_in_own_pidns() -> int:
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
    try:
        return fcntl.ioctl(fd, NS_GET_PID_IN_PIDNS, os.getpid())
    finally:
        os.close(fd)


def files(*names: str) -> list[str]:
    """An entry directory's listing, sorted: `names`, `containers` (every entry has it), and `id`
    where the kernel has NS_GET_ID."""
    return sorted((*names, "containers", "id") if has("ns_id") else (*names, "containers"))


def has(feature: str) -> bool:
    """Whether the running kernel has `feature` (one of FEATURES), probed at the first ask."""
    return kernel_features()[feature]
