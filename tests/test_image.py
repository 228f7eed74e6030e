"""The fleet's form: the image `make image` builds, run with podman as deploy/nsfs.yaml runs it
(privileged, the host's pid namespace, the node's /run/namespaces with rshared propagation and
/run/nsfs, the manifest's command and port), on a temporary "node" directory pair rather than
this machine's own /run/namespaces. Judged from the host, by the kernel where it can be.

On this project's machines podman's default runtime (crun) cannot create a container: it refuses
cgroups in hybrid mode and raising RLIMIT_NPROC (no CAP_SYS_RESOURCE in the bounding set). So the
containers run under runc with cgroupfs, with fd and process limits no higher than the session's:
the machine's needs, not the manifest's.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.daemon import LSNSFS
from tests.support.oracles import link_exists, ns_of, veth_into
from tests.support.procs import Procs
from tests.support.waiting import PATIENCE, SLOWDOWN, run, wait_until

ROOT = Path(__file__).parents[1]
IMAGE = os.environ.get("NSFS_IMAGE", "localhost/nsfs-fuse:latest")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
ONE_SECOND = 1.0 * SLOWDOWN  # the fleet form's promise: a namespace listed, and unlisted, within 1 s
_serial = itertools.count()


def container_spec() -> dict[str, Any]:
    manifest = yaml.safe_load_all((ROOT / "deploy" / "nsfs.yaml").read_text())
    (daemonset,) = [doc for doc in manifest if doc["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["hostPID"] is True and container["securityContext"]["privileged"] is True
    return dict(container)


def fstypes_at(path: Path) -> list[str]:
    """What is mounted at `path`, bottom to top."""
    found = run(["findmnt", "-n", "-o", "FSTYPE", "--mountpoint", str(path)])
    return found.stdout.split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    """The node's /run/namespaces (a shared mount, as a node's /run is) and /run/nsfs."""

    namespaces: Path
    nsfs: Path
    port: int  # where the host reaches the pod's metrics port

    @property
    def events(self) -> Path:
        return self.nsfs / "run-namespaces.events"  # the socket of the mount at /run/namespaces

    def listed(self) -> set[str]:
        return set(os.listdir(self.namespaces))

    def start(self) -> str:
        """A container run as the manifest runs it; returns its name once it serves."""
        spec = container_spec()
        (port,) = spec["ports"]
        volumes = {m["mountPath"]: m for m in spec["volumeMounts"]}
        propagation = {"Bidirectional": ":rshared", None: ""}
        name = f"nsfs-test-{os.getpid()}-{next(_serial)}"
        argv = [
            *PODMAN,
            "run",
            "-d",
            "--name",
            name,
            "--privileged",
            "--pid=host",
            *LIMITS,
            "-p",
            f"127.0.0.1:{self.port}:{port['containerPort']}",
            "-v",
            f"{self.namespaces}:/run/namespaces{propagation[volumes['/run/namespaces'].get('mountPropagation')]}",
            "-v",
            f"{self.nsfs}:/run/nsfs{propagation[volumes['/run/nsfs'].get('mountPropagation')]}",
            IMAGE,
            *spec["command"],
        ]
        started = run(argv)
        assert started.returncode == 0, started.stderr
        wait_until(lambda: fstypes_at(self.namespaces)[-1:] == ["fuse.nsfs"], "the container's mount on the node")
        wait_until(lambda: ns_of(os.getpid(), "net") in self.listed(), "the node's namespaces listed")
        # Ready as a node needs it: following the kernel's process events (from the node's
        # network namespace: the pod's has none), not sweeping.
        wait_until(lambda: "following process events" in run([*PODMAN, "logs", name]).stderr, "process events")
        return name


@pytest.fixture
def node(public_dir: Path) -> Iterator[Node]:
    namespaces, nsfs = public_dir / "namespaces", public_dir / "nsfs"
    namespaces.mkdir()
    nsfs.mkdir()
    assert run(["mount", "--bind", str(namespaces), str(namespaces)]).returncode == 0
    assert run(["mount", "--make-shared", str(namespaces)]).returncode == 0
    try:
        yield Node(namespaces, nsfs, free_port())
    finally:
        names = run([*PODMAN, "ps", "-a", "-q", "--filter", f"name=nsfs-test-{os.getpid()}-"]).stdout.split()
        if names:
            run([*PODMAN, "rm", "-f", *names])
        while fstypes_at(namespaces):
            assert run(["umount", "--lazy", str(namespaces)]).returncode == 0


def test_the_image_is_small_and_has_no_compiler() -> None:
    size = run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"])
    assert size.returncode == 0, size.stderr
    assert int(size.stdout) < 150_000_000
    found = run([*PODMAN, "run", "--rm", *LIMITS, IMAGE, "sh", "-c", "command -v gcc cc pip pip3 || true"])
    assert (found.returncode, found.stdout) == (0, "")


def test_a_node_namespace_comes_and_goes_within_a_second(node: Node, procs: Procs) -> None:
    """From the host: the container's daemon lists a new network namespace, and lets it go when
    its process ends (its veth's host end goes with it: the kernel's word), each within 1 s."""
    node.start()
    pid = procs.sleeper("--net")
    with veth_into(f"/proc/{pid}/ns/net", "nsfsimg0") as veth:
        net = ns_of(pid, "net")
        wait_until(lambda: net in node.listed(), "the namespace listed", timeout=ONE_SECOND)
        procs.end(pid)
        wait_until(lambda: not link_exists(veth), "the namespace freed (its veth gone)", timeout=ONE_SECOND)
        wait_until(lambda: net not in node.listed(), "the namespace unlisted", timeout=ONE_SECOND)


def test_metrics_and_events_reach_the_host(node: Node, procs: Procs) -> None:
    node.start()
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/metrics", timeout=PATIENCE) as reply:
        text = reply.read().decode()
    assert 'nsfs_namespaces{type="net"}' in text and "nsfs_process_events_followed 1.0" in text
    wait_until(node.events.is_socket, "the events socket on the node")
    argv = [LSNSFS, "--watch", "--existing", "-t", "net", "-m", str(node.namespaces), "--events", str(node.events)]
    watcher = procs.start(*argv, stdout=subprocess.PIPE)
    assert watcher.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = watcher.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line.decode())

    threading.Thread(target=read, daemon=True).start()

    def next_line() -> str:
        return lines.get(timeout=PATIENCE * SLOWDOWN)

    own = f"= {ns_of(os.getpid(), 'net')}\n"
    while next_line() != own:  # what exists, up to the host's own: the client is connected
        pass
    pid = procs.sleeper("--net")
    added = f"+ {ns_of(pid, 'net')}\n"
    while (line := next_line()) != added:
        assert line.startswith("= "), line  # the rest of what existed


def test_podman_stop_unmounts_and_a_killed_container_is_replaced(node: Node, procs: Procs) -> None:
    first = node.start()
    stopped = run([*PODMAN, "stop", first])
    assert stopped.returncode == 0, stopped.stderr
    logs = run([*PODMAN, "logs", first]).stderr
    assert "SIGTERM: unmounting" in logs and "every pin closed" in logs, logs
    assert fstypes_at(node.namespaces)[-1:] != ["fuse.nsfs"]
    second = node.start()
    assert run([*PODMAN, "kill", "-s", "KILL", second]).returncode == 0
    node.start()  # clears whatever the killed one left, and serves
    pid = procs.sleeper("--net")
    wait_until(lambda: ns_of(pid, "net") in node.listed(), "a namespace listed by the new one", timeout=ONE_SECOND)
