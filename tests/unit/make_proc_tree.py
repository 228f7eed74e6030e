"""Lays out tests/unit/proc, the /proc of made-up processes test_proc_tree.py reads (pids above
the kernel's PID_MAX_LIMIT, so that nothing ever asks the kernel about a real one). The tree is
committed; run `python -m tests.unit.make_proc_tree` to lay it out again after changing this.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = str(Path(__file__).parent / "proc")
# The namespaces of the made-up host (what /proc/self and most processes are in).
HOST = {
    "cgroup": 4026531835,
    "ipc": 4026531839,
    "mnt": 4026531841,
    "net": 4026531840,
    "pid": 4026531836,
    "time": 4026531834,
    "user": 4026531837,
    "uts": 4026531838,
}


def link(path: str, target: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def status(tgid: int, ppid: int, uid: int, gid: int, *, prm: str = "0" * 16, eff: str = "0" * 16) -> str:
    return (
        f"Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{tgid}\nNgid:\t0\nPid:\t{tgid}\nPPid:\t{ppid}\n"
        f"TracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\nFDSize:\t64\n"
        f"Groups:\t\nCapInh:\t0000000000000000\nCapPrm:\t{prm}\nCapEff:\t{eff}\nCapBnd:\t000001ffffffffff\n"
    )


def ns_dir(d: str, links: dict[str, int]) -> None:
    for name, inode in links.items():
        t = name.replace("_for_children", "")
        link(f"{d}/{name}", f"{t}:[{inode}]")


def main() -> None:
    root = ROOT
    shutil.rmtree(root, ignore_errors=True)
    host_links = dict(HOST, pid_for_children=HOST["pid"], time_for_children=HOST["time"])
    # the daemon reading it: /proc/self
    ns_dir(f"{root}/self/ns", {"user": HOST["user"]})
    # 5000100: sleep in the host's namespaces, with a thread in a network namespace of its own,
    # an fd on a network namespace, a socket, /dev/null, and an fd whose link is not a namespace's.
    p = f"{root}/5000100"
    write(f"{p}/comm", "sleep\n")
    write(f"{p}/status", status(5000100, 1, 1000, 1000))
    write(f"{p}/uid_map", "         0          0 4294967295\n")
    ns_dir(f"{p}/ns", host_links)
    ns_dir(f"{p}/task/5000100/ns", host_links)
    write(f"{p}/task/5000100/comm", "sleep\n")
    write(f"{p}/task/5000100/status", status(5000100, 1, 1000, 1000))
    ns_dir(f"{p}/task/5000101/ns", dict(host_links, net=4026532500))
    write(f"{p}/task/5000101/comm", "worker\n")
    write(f"{p}/task/5000101/status", status(5000100, 1, 1000, 1000))
    link(f"{p}/fd/0", "/dev/null")
    link(f"{p}/fd/3", "net:[4026532600]")
    link(f"{p}/fd/4", "socket:[777]")
    link(f"{p}/fd/5", "anon_inode:[eventfd]")
    link(f"{p}/fd/6", "net:[99999999999]")  # too large to be an inode
    # 5000200: a shell in a user, net and uts namespace of its own, mapped to 100000, with a
    # pid namespace for its children.
    p = f"{root}/5000200"
    write(f"{p}/comm", "sh\n")
    write(f"{p}/status", status(5000200, 5000100, 100000, 100000, prm="000001ffffffffff", eff="000001ffffffffff"))
    write(f"{p}/uid_map", "         0     100000      65536\n")
    mine = dict(host_links, user=4026532700, net=4026532701, uts=4026532702, pid_for_children=4026532703)
    ns_dir(f"{p}/ns", mine)
    ns_dir(f"{p}/task/5000200/ns", mine)
    write(f"{p}/task/5000200/comm", "sh\n")
    link(f"{p}/fd/0", "/dev/null")
    # 5000300: a status the kernel would never write (its Uid line cut short): read as none, its
    # holders carry no credentials (shown to fewer callers).
    p = f"{root}/5000300"
    write(f"{p}/comm", "odd\n")
    write(f"{p}/status", "Name:\todd\nTgid:\t5000300\nUid:\t0\t0\n")
    ns_dir(f"{p}/ns", host_links)
    # 5000400: listed by a sweep, then gone before it was read: no directory (the tests list it).
    # 5000500: a zombie (exiting): it has let go of what its nsproxy held (mnt, net, ...), and
    # holds only its pid and user namespaces until reaped.
    p = f"{root}/5000500"
    write(f"{p}/comm", "defunct\n")
    write(f"{p}/status", status(5000500, 5000100, 1000, 1000))
    ns_dir(f"{p}/ns", {"pid": HOST["pid"], "user": HOST["user"]})
    # 5000600: another nsfs daemon (named nsfs, every uid 0, /dev/fuse open): its fds on
    # namespaces are its pins, not holders. 5000601: its helper in a mount namespace (nsfs-mnt, root,
    # its parent that daemon): it holds nothing.
    p = f"{root}/5000600"
    write(f"{p}/comm", "nsfs\n")
    write(f"{p}/status", status(5000600, 1, 0, 0, prm="000001ffffffffff", eff="000001ffffffffff"))
    ns_dir(f"{p}/ns", host_links)
    link(f"{p}/fd/3", "/dev/fuse")
    link(f"{p}/fd/4", "net:[4026532600]")
    link(f"{p}/fd/5", "uts:[4026532702]")
    p = f"{root}/5000601"
    write(f"{p}/comm", "nsfs-mnt\n")
    write(f"{p}/status", status(5000601, 5000600, 0, 0, prm="000001ffffffffff", eff="000001ffffffffff"))
    ns_dir(f"{p}/ns", dict(host_links, mnt=4026532800))
    # A mount table with an nsfs bind mount, one with an escaped space, a proc mount, and a malformed line.
    write(
        f"{root}/5000100/mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "23 22 0:4 net:[4026532600] /run/netns/blue rw shared:5 - nsfs nsfs rw\n"
        "24 22 0:4 uts:[4026532702] /run/a\\040b rw shared:5 - nsfs nsfs rw\n"
        "25 22 0:5 / /proc rw - proc proc rw\n"
        "this line is not a mount\n",
    )
    # not a process: other entries of /proc
    write(f"{root}/meminfo", "MemTotal: 1 kB\n")


if __name__ == "__main__":
    main()
