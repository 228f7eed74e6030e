"""Entries named by the containers and services that hold them, with real engines: runc (a bundle
laid out as the CRI lays out a pod's container, and a plain one), podman rootful and rootless,
systemd-nspawn, and systemd units' cgroups laid out by hand (systemd is not PID 1 on these
machines, so `systemd-run` cannot start one). Each container's root is the project's base image
(`make image`), exported once: nothing is pulled.

Each test asserts the exact `containers` line of a namespace the container made, as the kernel
shows it (its process's /proc/PID/ns link). On this project's machines podman needs runc and
cgroupfs (crun refuses hybrid cgroups) and limits no higher than the session's; rootless podman
has no cgroup of its own there (cgroup v1), so it is found by its monitor, conmon.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemon import LSNSFS, Daemon, running_daemon
from tests.support.oracles import ns_of
from tests.support.procs import Procs
from tests.support.waiting import PATIENCE, SLOWDOWN, run, wait_until

BASE_IMAGE = "localhost/nsfs-base:bookworm"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
ROOTLESS = "nsfsrootless"  # made by the first test that needs it, kept for the next run
ROOTLESS_UID = 1500
CGROUPS = Path("/sys/fs/cgroup")
POD_UID = "0f6a4c2e-9a3b-4c1d-8e2f-5a6b7c8d9e0f"
CHECKOUT = Path(__file__).resolve().parents[1]
_serial = itertools.count()


def ok(argv: list[str]) -> str:
    """Run a command that must succeed; its output."""
    done = run(argv)
    assert done.returncode == 0, f"{argv} failed: {done.stderr}"
    return done.stdout


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_serial)}"


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    """The base image's tree, root's (a runc bundle's root, podman's --rootfs, nspawn's -D)."""
    work = Path(tempfile.mkdtemp(prefix="nsfs-rootfs-"))
    try:
        created = ok(["podman", "create", BASE_IMAGE, "true"]).strip()
        try:
            ok(["podman", "export", created, "-o", str(work / "base.tar")])
        finally:
            run(["podman", "rm", created])
        (work / "root").mkdir()
        ok(["tar", "-C", str(work / "root"), "-xf", str(work / "base.tar")])
        yield work
    finally:
        shutil.rmtree(work)


def container_lines(nsfs: Daemon, name: str) -> list[str]:
    try:
        return nsfs.read(name, "containers").splitlines()
    except FileNotFoundError:
        return []


def wait_for_lines(nsfs: Daemon, name: str, expected: list[str]) -> None:
    """`name`'s containers file comes to read `expected` exactly (the daemon reads a new process
    at its exec, and its engine's state may be written just after)."""
    try:
        wait_until(
            lambda: container_lines(nsfs, name) == expected,
            f"{name}'s containers to be {expected}",
            timeout=3 * PATIENCE,  # a state written after the exec is found at a sweep, after a retry
        )
    except AssertionError as exc:
        lines, holders = container_lines(nsfs, name), nsfs.read(name, "holders")
        raise AssertionError(f"{exc}; they are {lines}, held by {holders!r}") from None


# -- runc -------------------------------------------------------------------------


def runc_bundle(rootfs: Path, where: Path, cgroups_path: str | None, annotations: dict[str, str]) -> Path:
    where.mkdir()
    ok(["runc", "spec", "--bundle", str(where)])
    spec = json.loads((where / "config.json").read_text())
    spec["root"] = {"path": str(rootfs / "root"), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sleep", "600"]
    spec["annotations"] = annotations
    if cgroups_path is not None:
        spec["linux"]["cgroupsPath"] = cgroups_path
    (where / "config.json").write_text(json.dumps(spec))
    return where


@contextlib.contextmanager
def runc_container(bundle: Path, cid: str, detached: bool, procs: Procs) -> Iterator[int]:
    """A runc container; its first process's pid. Detached, runc leaves it to init; in the
    foreground, runc stays its parent (its monitor)."""
    try:
        if detached:
            # Its stdio is the container's: not a pipe, which would stay open while it runs.
            subprocess.run(
                ["runc", "run", "-d", "-b", str(bundle), cid],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                check=True, timeout=PATIENCE * SLOWDOWN,
            )  # fmt: skip
        else:
            procs.start("runc", "run", "-b", str(bundle), cid, stdout=subprocess.DEVNULL)
        wait_until(lambda: _runc_pid(cid) > 0, f"runc container {cid} to run")
        yield _runc_pid(cid)
    finally:
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True, check=False)


def _runc_pid(cid: str) -> int:
    found = subprocess.run(["runc", "state", cid], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        return 0
    state = json.loads(found.stdout)
    return int(state["pid"]) if state["status"] == "running" else 0


def remove_cgroups(path: str) -> None:
    """The cgroup directories runc leaves behind, in every hierarchy, deepest first."""
    parts = path.strip("/").split("/")
    for hierarchy in [CGROUPS, *CGROUPS.iterdir()]:  # a unified host has its one at the top
        for depth in range(len(parts), 0, -1):
            with contextlib.suppress(OSError):
                (hierarchy / "/".join(parts[:depth])).rmdir()


def test_a_runc_container_laid_out_as_the_cri_does_names_its_pod(
    nsfs: Daemon, rootfs: Path, procs: Procs, public_dir: Path
) -> None:
    cid = unique("nsfsweb")
    cgroup = f"/kubepods/besteffort/pod{POD_UID}/{cid}"
    annotations = {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "web",
        "io.kubernetes.cri.sandbox-name": "nginx-7d9f8b6c5-abcde",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-id": "0f6a4c2e",
    }
    bundle = runc_bundle(rootfs, public_dir / "bundle", cgroup, annotations)
    try:
        with runc_container(bundle, cid, detached=True, procs=procs) as pid:
            net = ns_of(pid, "net")
            wait_for_lines(nsfs, net, [f"runc {cid} web default/nginx-7d9f8b6c5-abcde"])
            # Every namespace it made says so; the host's (which it shares) too, with the rest.
            for link in ("ipc", "mnt", "pid", "uts"):
                assert container_lines(nsfs, ns_of(pid, link)) == [f"runc {cid} web default/nginx-7d9f8b6c5-abcde"]
            assert f"runc {cid} web default/nginx-7d9f8b6c5-abcde" in container_lines(nsfs, ns_of(pid, "user"))
    finally:
        remove_cgroups(cgroup)


def test_a_name_found_after_the_first_read_reaches_the_containers_file(nsfs: Daemon, procs: Procs) -> None:
    """runc writes its state after its container's init is forked, and read: the name comes with
    a later read, which changes the entry's holders and not the entry (the file's content was
    once kept as long as the entry stayed the same)."""
    cid = unique("nsfslate")
    state = Path("/run/runc") / cid
    labels = [
        "bundle=/nonexistent",
        "io.kubernetes.cri.container-name=late",
        "io.kubernetes.cri.sandbox-name=pod-late",
        "io.kubernetes.cri.sandbox-namespace=default",
    ]
    try:
        with in_cgroup(f"/kubepods/besteffort/pod{POD_UID}/{cid}") as prefix:
            proc = procs.start(*prefix, "unshare", "--net", "sh", "-c", "read x; exec sleep 600", stdin=subprocess.PIPE)
            host = ns_of(os.getpid(), "net")
            wait_until(lambda: ns_of(proc.pid, "net") != host, "sh in its network namespace")
            net = ns_of(proc.pid, "net")
            wait_for_lines(nsfs, net, [f"kubernetes {cid}"])  # read at its exec, before any state
            state.mkdir(parents=True)
            (state / "state.json").write_text(json.dumps({"id": cid, "config": {"labels": labels}}))
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()  # it execs sleep: read again, now with runc's state
            wait_until(lambda: nsfs.read(net, "holders") == f"process {proc.pid} sleep\n", "the read at its exec")
            # The read that names sleep its holder brought its name: the file says so at once.
            assert container_lines(nsfs, net) == [f"runc {cid} late default/pod-late"]
            procs.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_a_plain_runc_container_is_found_by_runc_its_monitor(
    nsfs: Daemon, rootfs: Path, procs: Procs, public_dir: Path
) -> None:
    cid = unique("nsfsplain")
    bundle = runc_bundle(rootfs, public_dir / "bundle", None, {})
    try:
        with runc_container(bundle, cid, detached=False, procs=procs) as pid:
            wait_for_lines(nsfs, ns_of(pid, "net"), [f"runc {cid} {cid}"])
    finally:
        remove_cgroups(f"/{cid}")


# -- podman -------------------------------------------------------------------------


def podman_pid(*podman: str, name: str) -> int:
    return int(ok([*podman, "inspect", "--format", "{{.State.Pid}}", name]))


def podman_id(*podman: str, name: str) -> str:
    return ok([*podman, "inspect", "--format", "{{.Id}}", name]).strip()


@dataclass(frozen=True)
class Web:
    """A rootful podman container, `sleep 600` in namespaces of its own but the network's none."""

    name: str
    pid: int
    id: str

    @property
    def line(self) -> str:
        return f"podman {self.id} {self.name}"


@contextlib.contextmanager
def podman_web(rootfs: Path) -> Iterator[Web]:
    name = unique("web")
    root = str(rootfs / "root")
    ok([*PODMAN, "run", "-d", *LIMITS, "--name", name, "--network", "none", "--rootfs", root, "sleep", "600"])
    try:
        yield Web(name, podman_pid(*PODMAN, name=name), podman_id(*PODMAN, name=name))
    finally:
        run([*PODMAN, "rm", "-f", "-t", "0", name])


def test_a_rootful_podman_container_is_named_by_its_cgroup_and_podmans_state(nsfs: Daemon, rootfs: Path) -> None:
    with podman_web(rootfs) as web:
        assert f"/libpod_parent/libpod-{web.id}" in Path(f"/proc/{web.pid}/cgroup").read_text()
        wait_for_lines(nsfs, ns_of(web.pid, "net"), [web.line])
        assert container_lines(nsfs, ns_of(web.pid, "uts")) == [web.line]


@pytest.fixture(scope="module")
def rootless(rootfs: Path) -> Iterator[list[str]]:
    """Podman as an unprivileged user with subordinate ids, and its own copy of the root."""
    try:
        pwd.getpwnam(ROOTLESS)
    except KeyError:
        ok(["useradd", "-u", str(ROOTLESS_UID), "-m", "-s", "/bin/sh", ROOTLESS])
    for ids in ("/etc/subuid", "/etc/subgid"):
        lines = [line for line in Path(ids).read_text().splitlines() if not line.startswith(f"{ROOTLESS}:")]
        Path(ids).write_text("".join(f"{line}\n" for line in [*lines, f"{ROOTLESS}:200000:65536"]))
    # Not root's session: a root login (and the kernel guest) sets XDG_RUNTIME_DIR=/run/user/0,
    # which podman refuses to use as another user's.
    as_user = ["runuser", "-u", ROOTLESS, "--", "env", "-u", "XDG_RUNTIME_DIR", "-u", "DBUS_SESSION_BUS_ADDRESS"]
    home = Path(pwd.getpwnam(ROOTLESS).pw_dir)
    tree = home / "rootfs"
    if not (tree / "bin").exists():
        os.chmod(rootfs, 0o755)
        os.chmod(rootfs / "base.tar", 0o644)
        run(
            [
                *as_user,
                "sh",
                "-c",
                f"mkdir -p {tree} && podman unshare tar -C {tree} -xf {rootfs / 'base.tar'} 2>/dev/null; true",
            ]
        )
        assert (tree / "bin").exists()
    # No tun device for slirp4netns here, and crun refuses hybrid cgroups.
    podman = [*as_user, "podman", "--runtime", "runc"]
    try:
        yield podman
    finally:
        # Rootless podman keeps a pause process (its user namespace's holder) after every command.
        pause = Path(f"/tmp/podman-run-{ROOTLESS_UID}/libpod/tmp/pause.pid")
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pause.read_text()), signal.SIGKILL)


def test_a_rootless_podman_container_is_found_by_conmon_its_monitor(nsfs: Daemon, rootless: list[str]) -> None:
    name = unique("rl")
    home = pwd.getpwnam(ROOTLESS).pw_dir
    ok([*rootless, "run", "-d", "--name", name, "--network", "none", "--rootfs", f"{home}/rootfs", "sleep", "600"])
    try:
        pid, cid = podman_pid(*rootless, name=name), podman_id(*rootless, name=name)
        assert "libpod" not in Path(f"/proc/{pid}/cgroup").read_text()  # no cgroup says whose it is
        net = ns_of(pid, "net")
        wait_for_lines(nsfs, net, [f"podman {cid} {name}"])
        # Its user reads its own container's processes, and so its line; another user does not.
        as_user = ["setpriv", f"--reuid={ROOTLESS_UID}", f"--regid={ROOTLESS_UID}", "--clear-groups"]
        assert ok([*as_user, "cat", str(nsfs.path(net, "containers"))]) == f"podman {cid} {name}\n"
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        assert ok([*as_nobody, "cat", str(nsfs.path(net, "containers"))]) == ""
        # From inside its user namespace (as its root), the container is its own.
        inside = ["nsenter", "-t", str(pid), "--user", "--net"]
        assert ok([*inside, "cat", str(nsfs.path(net, "containers"))]) == f"podman {cid} {name}\n"
        # lsnsfs there too: this checkout's, run by the system's Python (the suite's is under /root).
        lsnsfs = ["env", f"PYTHONPATH={CHECKOUT}", "/usr/bin/python3", "-m", "nsfs_fuse.readers.lsnsfs"]
        listed = ok([*inside, *lsnsfs, "-m", str(nsfs.mountpoint), "-C", name, "-J", "-t", "net"])
        assert [(r["ns"], r["container"]) for r in json.loads(listed)["namespaces"]] == [
            (int(net[5:-1]), [{"engine": "podman", "id": cid, "name": name, "pod": None}])
        ]
    finally:
        run([*rootless, "rm", "-f", "-t", "0", name])


# -- systemd-nspawn and systemd units ---------------------------------------------------


def hierarchy_root(name: str) -> Path:
    """Where a hierarchy is mounted: v1's name=systemd and v2's beside the controllers on a
    hybrid machine (as this project's are); v2's at the top on a unified one, which has no v1."""
    if (CGROUPS / "cgroup.controllers").exists():
        return CGROUPS
    return CGROUPS / name


@contextlib.contextmanager
def in_cgroup(path: str, hierarchies: tuple[str, ...] = ("systemd", "unified")) -> Iterator[list[str]]:
    """A cgroup made in the named hierarchies (name=systemd is v1's, unified v2's, as a hybrid
    machine has them), and a command prefix that runs a program in it; removed after."""
    parts = path.strip("/").split("/")
    places = list(dict.fromkeys(hierarchy_root(name) / "/".join(parts) for name in hierarchies))
    for where in places:
        where.mkdir(parents=True)
    joins = " && ".join(f"echo $$ > {where}/cgroup.procs" for where in places)
    try:
        yield ["sh", "-c", f'{joins} && exec "$@"', "sh"]
    finally:
        for where in places:
            for directory in sorted((p for p in [where, *where.rglob("*")] if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            for depth in range(len(parts) - 1, 0, -1):
                with contextlib.suppress(OSError):
                    (where.parents[len(parts) - 1 - depth]).rmdir()


@contextlib.contextmanager
def nspawn(rootfs: Path, machine: str, cgroup: str, procs: Procs) -> Iterator[int]:
    """A systemd-nspawn container (without machined: --register=no --keep-unit), started in
    `cgroup` (nspawn makes its payload's and its own beside each other there); its payload's pid.
    The payload is its pid namespace's init, which killing nspawn's process group misses."""
    with in_cgroup(cgroup) as prefix:
        proc = procs.start(
            *prefix,
            "systemd-nspawn", "-q", "-D", str(rootfs / "root"), "--register=no", "--keep-unit",
            "--private-network", "-M", machine, "sleep", "600",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        pid = procs.wait_for_sleep(proc)
        try:
            yield pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            procs.close()
            wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "the payload to be gone")  # before its cgroup goes


def test_a_systemd_nspawn_machine_is_found_by_nspawn_its_monitor(nsfs: Daemon, rootfs: Path, procs: Procs) -> None:
    machine = unique("nsfsm")
    with nspawn(rootfs, machine, f"/{unique('nsfs-test-')}", procs) as pid:  # a cgroup that names nothing
        wait_for_lines(nsfs, ns_of(pid, "net"), [f"systemd-nspawn {machine} {machine}"])


def test_a_systemd_nspawn_machine_in_its_services_cgroup_is_named_by_it(
    nsfs: Daemon, rootfs: Path, procs: Procs
) -> None:
    machine = unique("nsfsm")
    with nspawn(rootfs, machine, f"/machine.slice/systemd-nspawn@{machine}.service", procs) as pid:
        assert f":/machine.slice/systemd-nspawn@{machine}.service/payload\n" in Path(f"/proc/{pid}/cgroup").read_text()
        wait_for_lines(nsfs, ns_of(pid, "net"), [f"systemd-nspawn {machine} {machine}"])


@pytest.mark.parametrize(
    ("cgroup", "hierarchy", "line"),
    [
        ("/system.slice/{unit}", "systemd", "systemd {unit} {unit}"),  # cgroup v1's name=systemd line
        (  # cgroup v2's line
            "/user.slice/user-1000.slice/user@1000.service/app.slice/{unit}",
            "unified",
            "systemd user@1000.service/{unit} {unit}",
        ),
    ],
)
def test_a_service_with_a_private_network_is_named_by_its_unit(
    nsfs: Daemon, procs: Procs, cgroup: str, hierarchy: str, line: str
) -> None:
    unit = unique("nsfs-private-") + ".service"
    if cgroup.startswith("/system.slice/") and Path("/run/systemd/system").is_dir():
        # systemd is this machine's init: the service is its own, as `systemd-run` makes it.
        ok(["systemd-run", f"--unit={unit}", "-p", "PrivateNetwork=yes", "sleep", "600"])
        try:
            pid = int(ok(["systemctl", "show", "-p", "MainPID", "--value", unit]))
            wait_for_lines(nsfs, ns_of(pid, "net"), [line.format(unit=unit)])
        finally:
            run(["systemctl", "stop", unit])
        return
    with in_cgroup(cgroup.format(unit=unit), (hierarchy,)) as prefix:
        pid = procs.sleeper("--net", prefix=prefix)
        wait_for_lines(nsfs, ns_of(pid, "net"), [line.format(unit=unit)])
        procs.close()


# -- the caller's rule, lsnsfs, events, metrics ---------------------------------------


def test_a_container_is_shown_only_to_a_caller_that_may_see_a_holder_of_it(nsfs: Daemon, rootfs: Path) -> None:
    with podman_web(rootfs) as web:
        net = ns_of(web.pid, "net")
        wait_for_lines(nsfs, net, [web.line])
        # uid 65534 sees the entry (the initial user namespace owns it), but may not read
        # root's processes: neither the holder nor the container.
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        assert ok([*as_nobody, "cat", str(nsfs.path(net, "containers"))]) == ""
        assert ok([*as_nobody, "cat", str(nsfs.path(net, "holders"))]) == ""


def test_lsnsfs_shows_picks_and_prints_containers(nsfs: Daemon, rootfs: Path) -> None:
    with podman_web(rootfs) as web:
        made = {ns_of(web.pid, link) for link in ("ipc", "mnt", "net", "pid", "uts")}
        wait_for_lines(nsfs, ns_of(web.pid, "uts"), [web.line])
        for wanted in (web.name, web.id, web.id[:12]):
            rows = json.loads(ok([LSNSFS, "-m", str(nsfs.mountpoint), "-C", wanted, "-J"]))["namespaces"]
            # What it made, and the host's namespaces it shares (user, cgroup, time).
            assert made <= {f"{r['type']}:[{r['ns']}]" for r in rows}
            for row in rows:
                assert {"engine": "podman", "id": web.id, "name": web.name, "pod": None} in row["container"]
        listed = ok([LSNSFS, "-m", str(nsfs.mountpoint), "-C", web.name, "-t", "uts", "-n"]).splitlines()
        uts = ns_of(web.pid, "uts")
        (line,) = [row for row in listed if row.split()[0] == uts[5:-1]]
        assert line.split()[5:7] == ["process:1", web.name]
        assert ok([LSNSFS, "-m", str(nsfs.mountpoint), "-C", "no-such-container"]).splitlines() == [
            "NS TYPE NPROCS PID USER HOLDERS CONTAINER COMMAND"
        ]


def test_events_name_the_container_of_a_namespace_coming_and_going(nsfs: Daemon, rootfs: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(f"/run/nsfs/{str(nsfs.mountpoint).strip('/').replace('/', '-')}.events")
        sock.settimeout(PATIENCE * SLOWDOWN)
        lines = sock.makefile("r")
        while not lines.readline().startswith("="):
            pass
        with podman_web(rootfs) as web:
            uts = ns_of(web.pid, "uts")
            wait_for_lines(nsfs, uts, [web.line])
        seen: list[str] = []
        while f"- {uts} podman:{web.name}\n" not in seen:
            seen.append(lines.readline())
        assert f"+ {uts} podman:{web.name}\n" in seen


def test_metrics_count_namespaces_held_by_each_engine(public_dir: Path, rootfs: Path, procs: Procs) -> None:
    metrics = public_dir / "metrics.prom"
    with running_daemon(public_dir / "mnt", f"metrics_file={metrics}") as nsfs, podman_web(rootfs) as web:
        wait_for_lines(nsfs, ns_of(web.pid, "uts"), [web.line])

        def podman_gauge() -> float:
            for line in metrics.read_text().splitlines() if metrics.exists() else []:
                if line.startswith('nsfs_container_namespaces{engine="podman"}'):
                    return float(line.split()[-1])
            return 0.0

        # Its ipc, mnt, net, pid and uts, and the host's user, cgroup and time.
        wait_until(lambda: podman_gauge() >= 8, "the podman gauge to count its namespaces", timeout=30 * SLOWDOWN)
        text = metrics.read_text()
        limit = Path("/proc/sys/user/max_net_namespaces").read_text().strip()
        assert f'nsfs_namespace_limit{{type="net"}} {limit}' in text
        assert 'nsfs_namespaces_by_owner{type="net",uid="0"}' in text


def test_lsnsfs_limits_counts_what_each_user_made_against_the_kernels_limit(nsfs: Daemon, procs: Procs) -> None:
    uid = 7000003  # no user of this machine: shown as a number
    made = [procs.sleeper("--user", "--map-root-user", "--net", uid=uid) for _ in range(2)]
    names = {ns_of(pid, link) for pid in made for link in ("user", "net")}
    wait_until(lambda: names <= nsfs.names(), "their namespaces")
    limits = {t: Path(f"/proc/sys/user/max_{t}_namespaces").read_text().strip() for t in ("net", "user")}
    listed = ok([LSNSFS, "-m", str(nsfs.mountpoint), "--limits", "-n", "-t", "user", "-t", "net"]).splitlines()
    theirs = [line.split() for line in listed if line.split()[1] == str(uid)]
    assert sorted(theirs) == [
        ["net", str(uid), "2", limits["net"], f"{200 / int(limits['net']):.1f}%"],
        ["user", str(uid), "2", limits["user"], f"{200 / int(limits['user']):.1f}%"],
    ]
