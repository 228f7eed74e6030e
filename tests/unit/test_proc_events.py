"""The proc connector's datagrams, built as the kernel lays them out (<linux/cn_proc.h>)."""

from __future__ import annotations

import struct

from nsfs_fuse import kernel
from nsfs_fuse.model import NS_TYPES


def message(what: int, *pids: int) -> bytes:
    """One netlink message carrying one proc event (fork carries four ids, exec and exit two and more)."""
    event = struct.pack("=IIQ", what, 0, 123456789) + struct.pack("=" + "i" * len(pids), *pids)
    event += b"\0" * (16 - 4 * len(pids)) if len(pids) < 4 else b""
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(event), 0) + event
    length = 16 + len(cn)
    return struct.pack("=IHHII", length, 3, 0, 0, 0) + cn + b"\0" * (-length % 4)


def test_fork_names_the_child_exec_and_exit_the_process() -> None:
    data = (
        message(kernel.PROC_EVENT_FORK, 10, 10, 11, 11)
        + message(kernel.PROC_EVENT_EXEC, 11, 11)
        + message(kernel.PROC_EVENT_EXIT, 12, 11, 0, 9)  # a thread of 11 exits
    )
    assert kernel.parse_proc_events(data) == [
        (kernel.PROC_EVENT_FORK, 11, 11),
        (kernel.PROC_EVENT_EXEC, 11, 11),
        (kernel.PROC_EVENT_EXIT, 12, 11),
    ]


def test_changes_of_credentials_name_the_thread_and_its_process() -> None:
    data = message(kernel.PROC_EVENT_UID, 5, 5, 1000, 1000) + message(kernel.PROC_EVENT_GID, 7, 6, 1000, 1000)
    assert kernel.parse_proc_events(data) == [(kernel.PROC_EVENT_UID, 5, 5), (kernel.PROC_EVENT_GID, 7, 6)]


def test_other_events_are_skipped() -> None:
    sid_change = 0x00000080
    data = message(sid_change, 5, 5, 0, 0) + message(kernel.PROC_EVENT_EXIT, 6, 6)
    assert kernel.parse_proc_events(data) == [(kernel.PROC_EVENT_EXIT, 6, 6)]


def test_a_truncated_datagram_yields_what_is_whole() -> None:
    whole = message(kernel.PROC_EVENT_EXEC, 7, 7)
    assert kernel.parse_proc_events(whole + whole[:30]) == [(kernel.PROC_EVENT_EXEC, 7, 7)]
    assert kernel.parse_proc_events(b"") == []
    assert kernel.parse_proc_events(struct.pack("=IHHII", 0, 3, 0, 0, 0) + b"\0" * 64) == []


def test_the_layouts_are_the_kernels() -> None:
    """struct nlmsghdr is 16 bytes, struct cn_msg 20, and struct proc_event's header 16
    (what, cpu, timestamp_ns) before the event's ids."""
    assert (kernel._NLMSGHDR.size, kernel._CN_MSG.size, kernel._PROC_EVENT.size) == (16, 20, 16)


def test_every_type_has_its_clone_flag() -> None:
    assert tuple(kernel.CLONE_FLAGS) == NS_TYPES
    assert len(set(kernel.CLONE_FLAGS.values())) == len(NS_TYPES)
