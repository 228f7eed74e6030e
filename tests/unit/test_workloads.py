"""Which container, pod or service a process belongs to (nsfs_fuse.workloads): cgroup paths of
every layout, /proc/PID/cgroup texts of cgroup v1 and v2, monitors' arguments, and names from the
engines' state, read from a tree of their own. No root, no kernel.

tests/unit/workloads/proc is what /proc showed of real containers on a cgroup v1 hybrid host
(Debian 12: runc 1.1.5, podman 4.3.1 with runc and the cgroupfs manager): each container's
/proc/PID/cgroup, and its monitor's /proc/PID/cmdline and /proc/PID/cgroup (conmon's). The
runc container ran from a bundle laid out as the CRI lays out a pod's container (its annotations,
cgroupsPath /kubepods/besteffort/pod<UID>/<ID>), in the foreground (runc its monitor).

tests/unit/workloads/host is a host's state, laid out under a root of its own:
- run/runc: those runc containers' real state.json, and their bundles' config.json (under
  srv/bundles: only the scratch directory they ran from is renamed);
- var/lib/containers/storage/overlay-containers/containers.json: podman's, real (two containers,
  one made from the image, one with --rootfs);
- var/lib/docker/containers/ID/config.v2.json: docker's, in Docker Engine 24's format (trimmed: the
  members it writes, fewer of Config's): a plain container, and dockershim's pod container and
  sandbox, with the labels dockershim gives them;
- run/containerd/io.containerd.runtime.v2.task/NS/ID/config.json: containerd 1.7's task bundles
  (OCI runtime specs, trimmed), with the annotations its CRI plugin writes (a pod's container and
  its sandbox, in k8s.io), nerdctl's (its nerdctl/* labels, copied to annotations), and ctr's (none);
- run/containers/storage/overlay-containers/ID/userdata/config.json: CRI-O 1.28's (OCI runtime
  specs, trimmed), whose annotations carry its own and the kubelet's labels (a pod's container
  and its infra container);
- home/alice: a rootless user's podman containers.json and docker config.v2.json, as above.
Monitors' arguments that this host could not run (CRI-O's conmon, containerd's shims) are written
as those programs make them (CRI-O's and podman's runtime_oci.go and oci_conmon_common.go,
containerd's shim manager, systemd-nspawn@.service's ExecStart).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsfs_fuse import workloads
from nsfs_fuse.model import Container
from nsfs_fuse.workloads import Names, Placed, cgroup_path, placed_by_cgroup, placed_by_monitor

DATA = Path(__file__).parent / "workloads"
PROC = DATA / "proc"
HOST = str(DATA / "host")

# The real ones.
RUNC_CRI = "00ff334abcc8b128d7e74b880fcd19649637a2211e2955b594c578b8c807abb4"
RUNC_POD_UID = "cd11d9fe-1e65-442e-8c6b-48d88e4901d3"
RUNC_PLAIN = "wl-plain"
PODMAN_IMG = "9c84fefd118cbecbcec2911cb04db32918f5751780f129369b418302ba9a2c11"
PODMAN_ROOTFS = "dfbec2812b5a726ddb33eddb3f99a99ea010172d0a3a2bc6d2a7863b8cb77492"
# The laid out ones.
DOCKER_WEB = "f17604938c744ae3510fa057a5f2d5a11fd3aba09c9053221593ea20593b293b"
SHIM_APP = "5ecaa6f8915910d5f15213f7a44abc795256dc1dee118727fc34d302f50b5eb2"  # dockershim's
SHIM_POD = "b5c422da5769d97d17a8fd6fb1a34e7fe5d8a4eb013e660153be1f37a35f9302"
CACHE_UID = "5b0d2a44-6f1e-4c37-9a8b-0e2d4f6a8c10"
CTRD_APP = "20721306f5bcbbe3de47695a669b7f7a117ec3016fec5c00f3226f8cc0671972"
CTRD_POD = "3d78ee8fbf3b3ce3e668bc0f9e7afdde05fb8ab0b1802130e1809ff7cf5af39c"
API_UID = "aa0c5cda-99a0-4295-9ca5-2ab64f1f0432"
NERDCTL = "4c8fa67e017fedaa0c48d2422da610d7432bc9227f3652fc646ba4532a4ac9de"
CRIO_APP = "91187d4b02195feb45bbd06c6769a783a705675680e9721473f0f98b048e1777"
CRIO_POD = "c9e6c844a20978c1ff7abc3388436b263f88b66f421e7b355192ed85aad6934d"
DB_UID = "1f60c643-d8c6-4b59-8bc7-cec7273a3258"
ALICE_PODMAN = "90584ead0c2ec437b9babcbbd65930384f0382c234de5660ad09d6900f9e637b"
ALICE_DOCKER = "ed7cc51bf996d0141c34094fb1e8f5fd38609cf72c4eaeb45bfaac506bba427e"
H = "0123456789abcdef" * 4  # an id for paths alone
POD_UID = "0f6a4c2e-9a3b-4c1d-8e2f-5a6b7c8d9e0f"
POD_UID_ = POD_UID.replace("-", "_")  # as the kubelet's systemd driver writes it


def proc_text(name: str) -> str:
    return (PROC / name).read_text()


def proc_argv(name: str) -> list[str]:
    return (PROC / name).read_bytes().rstrip(b"\0").decode().split("\0")


def no_home(uid: int) -> str | None:
    return None


def names(root: str = HOST, retry_after: float = workloads.RETRY_AFTER) -> Names:
    return Names(root, no_home, retry_after=retry_after)


# -- /proc/PID/cgroup -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "path"),
    [
        ("runc-cri.cgroup", f"/kubepods/besteffort/pod{RUNC_POD_UID}/{RUNC_CRI}"),
        ("runc-plain.cgroup", f"/{RUNC_PLAIN}"),
        ("podman.cgroup", f"/libpod_parent/libpod-{PODMAN_IMG}"),
        # conmon: in no cgroup of its own on v2 or name=systemd, in podman's on the controllers
        ("conmon.cgroup", "/libpod_parent/conmon"),
    ],
)
def test_the_path_of_a_real_process_on_a_hybrid_host(recorded: str, path: str) -> None:
    assert cgroup_path(proc_text(recorded)) == path


V1 = f"""12:pids:/system.slice/docker-{H}.scope
11:net_cls,net_prio:/system.slice/docker-{H}.scope
10:cpu,cpuacct:/system.slice/docker-{H}.scope
9:memory:/system.slice/docker-{H}.scope
8:devices:/system.slice/docker-{H}.scope
7:freezer:/system.slice/docker-{H}.scope
6:perf_event:/system.slice/docker-{H}.scope
5:blkio:/system.slice/docker-{H}.scope
4:hugetlb:/system.slice/docker-{H}.scope
3:cpuset:/system.slice/docker-{H}.scope
2:rdma:/
1:name=systemd:/system.slice/docker-{H}.scope
0::/
"""


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (V1, f"/system.slice/docker-{H}.scope"),  # v1: the name=systemd line's
        ("0::/system.slice/nginx.service\n", "/system.slice/nginx.service"),  # v2: its one line
        ("0::/user.slice/user-1000.slice/session-3.scope", "/user.slice/user-1000.slice/session-3.scope"),
        # hybrid: the v2 line first, where it is not "/"
        ("1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", "/system.slice/b.service"),
        ("2:memory:/docker/x\n1:name=systemd:/\n0::/\n", "/docker/x"),  # else the first controller's
        ("3:cpu,cpuacct:/\n2:memory:/a\n1:pids:/b\n0::/\n", "/a"),
        ("2:memory:/\n1:name=systemd:/\n0::/\n", "/"),
        ("", "/"),
        ("0::/../../kubepods/pod1/x\n", "/../../kubepods/pod1/x"),  # outside the reader's cgroup namespace
        ("0::/a:b\n", "/a:b"),  # a colon is a name's
    ],
)
def test_the_path_that_places_a_process(text: str, path: str) -> None:
    assert cgroup_path(text) == path


@pytest.mark.parametrize(
    "text",
    [
        # A cgroup name with a newline in it makes lines of its own: a hierarchy twice, a
        # controller twice, or a line that is no line of the kernel's.
        f"0::/user.slice/user-1000.slice/user@1000.service/x\n0::/system.slice/docker-{H}.scope\n",
        f"1:name=systemd:/user.slice/x\n2:memory:/docker/{H}\n4:memory:/\n0::/\n",
        "1:name=systemd:/user.slice/x\nhello\n0::/\n",
        "0::relative\n",
    ],
)
def test_a_forged_cgroup_file_places_nothing(text: str) -> None:
    assert cgroup_path(text) == "/"


@given(st.text())
def test_any_text_gives_a_path(text: str) -> None:
    assert cgroup_path(text).startswith("/")


# -- cgroup paths -----------------------------------------------------------------------

KUBEPODS_SYSTEMD = f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_}.slice"
KUBEPODS_BURSTABLE = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice"
KUBEPODS_GUARANTEED = f"/kubepods.slice/kubepods-pod{POD_UID_}.slice"
USER = "/user.slice/user-1000.slice/user@1000.service"


@pytest.mark.parametrize(
    ("path", "placed"),
    [
        # docker
        (f"/system.slice/docker-{H}.scope", Placed("docker", H)),
        (f"/docker/{H}", Placed("docker", H)),
        (f"{USER}/user.slice/docker-{H}.scope", Placed("docker", H, uid=1000)),
        (f"/system.slice/docker-{H}.scope/init.scope", Placed("docker", H)),  # its own sub-cgroups
        # Kubernetes, the systemd driver: the scope says the engine
        (f"{KUBEPODS_SYSTEMD}/cri-containerd-{H}.scope", Placed("containerd", H, pod_uid=POD_UID, namespace="k8s.io")),
        (f"{KUBEPODS_BURSTABLE}/crio-{H}.scope", Placed("cri-o", H, pod_uid=POD_UID)),
        (f"{KUBEPODS_GUARANTEED}/docker-{H}.scope", Placed("docker", H, pod_uid=POD_UID)),
        (f"{KUBEPODS_GUARANTEED}/crio-{H}.scope/container", Placed("cri-o", H, pod_uid=POD_UID)),  # crun's
        (f"{KUBEPODS_SYSTEMD}/crio-conmon-{H}.scope", None),
        (KUBEPODS_SYSTEMD, None),  # the pod's own cgroup
        # Kubernetes, the cgroupfs driver: the id alone, any engine's
        (f"/kubepods/besteffort/pod{POD_UID}/{H}", Placed("kubernetes", H, pod_uid=POD_UID)),
        (f"/kubepods/burstable/pod{POD_UID}/{H}", Placed("kubernetes", H, pod_uid=POD_UID)),
        (f"/kubepods/pod{POD_UID}/{H}", Placed("kubernetes", H, pod_uid=POD_UID)),
        (f"/kubepods/pod{POD_UID}/nsfsweb12x0", Placed("kubernetes", "nsfsweb12x0", pod_uid=POD_UID)),
        (f"/kubepods/pod{POD_UID}/crio-{H}", Placed("cri-o", H, pod_uid=POD_UID)),
        (f"/kubepods/pod{POD_UID}/crio-conmon-{H}", None),
        # a static pod's UID is a hash, without dashes
        ("/kubepods/pod" + "9f" * 16 + f"/{H}", Placed("kubernetes", H, pod_uid="9f" * 16)),
        # a node in a container (kind): the host sees the node's container, the outermost
        (
            f"/system.slice/docker-{H}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{POD_UID_}.slice/"
            f"cri-containerd-{'1' * 64}.scope",
            Placed("docker", H),
        ),
        # rootless Kubernetes: no QoS slices, under the user's manager
        (f"{USER}/user.slice/cri-containerd-{H}.scope", Placed("containerd", H, uid=1000, namespace="k8s.io")),
        # podman
        (f"/machine.slice/libpod-{H}.scope", Placed("podman", H)),
        (f"/machine.slice/libpod-{H}.scope/container", Placed("podman", H)),
        (f"/libpod_parent/libpod-{H}", Placed("podman", H)),
        (f"/machine.slice/machine-libpod_pod_{'2' * 64}.slice/libpod-{H}.scope", Placed("podman", H)),
        (f"/libpod_parent/{'2' * 64}/libpod-{H}", Placed("podman", H)),
        (f"{USER}/user.slice/libpod-{H}.scope", Placed("podman", H, uid=1000)),
        (f"{USER}/user.slice/user-libpod_pod_{'2' * 64}.slice/libpod-{H}.scope", Placed("podman", H, uid=1000)),
        (f"/system.slice/web.service/libpod-payload-{H}", Placed("podman", H)),  # --cgroups=split
        (f"/machine.slice/libpod-conmon-{H}.scope", None),
        (f"{USER}/user.slice/libpod-conmon-{H}.scope", None),
        ("/libpod_parent/conmon", None),
        # containerd without the CRI, and runc
        (f"/system.slice/nerdctl-{H}.scope", Placed("containerd", H)),
        ("/system.slice/runc-mybox.scope", Placed("runc", "mybox")),
        (f"{USER}/user.slice/runc-mybox.scope", Placed("runc", "mybox", uid=1000)),
        ("/mybox", None),  # `runc run` with no cgroupsPath: any name at all
        # LXC
        ("/lxc.payload.web", Placed("lxc", "web", "web")),
        ("/lxc.payload.web/system.slice/sshd.service", Placed("lxc", "web", "web")),
        ("/lxc.payload/web", Placed("lxc", "web", "web")),
        ("/lxc/web", Placed("lxc", "web", "web")),
        ("/lxc.monitor.web", None),
        ("/lxc.monitor/web", None),
        ("/lxc.pivot", None),
        # systemd-nspawn, and machines machined registered
        ("/machine.slice/systemd-nspawn@web.service", Placed("systemd-nspawn", "web", "web")),
        ("/machine.slice/systemd-nspawn@web.service/payload", Placed("systemd-nspawn", "web", "web")),
        (
            r"/machine.slice/systemd-nspawn@deb\x2d12.service/payload/init.scope",
            Placed("systemd-nspawn", "deb-12", "deb-12"),
        ),
        ("/machine.slice/systemd-nspawn@web.service/supervisor", None),
        (r"/machine.slice/machine-deb\x2d12.scope", Placed("systemd-nspawn", "deb-12", "deb-12")),
        (r"/machine.slice/machine-deb\x2d12.scope/payload", Placed("systemd-nspawn", "deb-12", "deb-12")),
        (r"/machine.slice/machine-deb\x2d12.scope/supervisor", None),
        (r"/machine.slice/machine-caf\xc3\xa9.scope", Placed("systemd-nspawn", "café", "café")),  # UTF-8's bytes
        ("/machine.slice/machine-\udcff\ud800.scope", Placed("systemd-nspawn", "\udcff\ud800", "\udcff\ud800")),
        # systemd services, the system's and a user's
        ("/system.slice/nginx.service", Placed("systemd", "nginx.service", "nginx.service")),
        ("/system.slice/nginx.service/workers", Placed("systemd", "nginx.service", "nginx.service")),
        ("/system.slice/containerd.service", Placed("systemd", "containerd.service", "containerd.service")),
        ("/system.slice/docker.service", Placed("systemd", "docker.service", "docker.service")),
        (
            "/system.slice/system-getty.slice/getty@tty1.service",
            Placed("systemd", "getty@tty1.service", "getty@tty1.service"),
        ),
        (
            r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-vda1.service",
            Placed("systemd", "systemd-fsck@dev-vda1.service", "systemd-fsck@dev-vda1.service"),
        ),
        (
            f"{USER}/app.slice/pipewire.service",
            Placed("systemd", "user@1000.service/pipewire.service", "pipewire.service", uid=1000),
        ),
        (
            f"{USER}/session.slice/dbus.service",
            Placed("systemd", "user@1000.service/dbus.service", "dbus.service", uid=1000),
        ),
        (USER, Placed("systemd", "user@1000.service", "user@1000.service")),
        (f"{USER}/init.scope", None),  # the user's manager itself
        (f"{USER}/app.slice/app-firefox-2314.scope", None),
        ("/user.slice/user-1000.slice/session-3.scope", None),
        ("/init.scope", None),
        ("/", None),
        ("/kubepods/besteffort", None),
        ("/process_api/af629846a400da7700f1148d24de2b16", None),
        # from inside a cgroup namespace, a sibling container of the reader's pod
        (f"/../cri-containerd-{H}.scope", Placed("containerd", H, namespace="k8s.io")),
        ("/../../../system.slice/nginx.service", Placed("systemd", "nginx.service", "nginx.service")),
        # what only looks like them
        (f"/system.slice/docker-{H[:63]}.scope", None),
        (f"/system.slice/docker-{H.upper()}.scope", None),
        (f"/docker-{H}", None),  # docker's are scopes
        (f"/kubepods/podnotauid/{H}", None),
        (f"/pod{POD_UID}/{H}", None),  # not below kubepods
        (f"/kubepods.slice/something-pod{POD_UID_}.slice/{H}", None),
    ],
)
def test_a_cgroup_path_places_its_container_or_service(path: str, placed: Placed | None) -> None:
    assert placed_by_cgroup(path) == placed


@pytest.mark.parametrize(
    ("recorded", "placed"),
    [
        ("runc-cri.cgroup", Placed("kubernetes", RUNC_CRI, pod_uid=RUNC_POD_UID)),
        ("podman.cgroup", Placed("podman", PODMAN_IMG)),
        ("conmon.cgroup", None),
        ("runc-plain.cgroup", None),
    ],
)
def test_a_real_process_is_placed_by_its_cgroup_file(recorded: str, placed: Placed | None) -> None:
    assert placed_by_cgroup(cgroup_path(proc_text(recorded))) == placed


_PARTS = [
    "kubepods", "kubepods.slice", f"kubepods-pod{POD_UID_}.slice", f"pod{POD_UID}", f"crio-{H}.scope", H,
    "docker", f"docker-{H}.scope", "libpod_parent", "conmon", f"libpod-{H}", "lxc", "lxc.payload", "lxc.payload.x",
    "machine.slice", r"machine-a\x2d.scope", "supervisor", "system.slice", "user@1000.service",
    "user@99999999999.service", "a.service", "x.scope", "..", ".", "", "runc-.scope", "runc-..scope",
    "systemd-nspawn@.service", r"machine-\xzz.scope",
]  # fmt: skip
_PATHS = st.lists(st.one_of(st.sampled_from(_PARTS), st.text(max_size=12)), max_size=8).map("/".join)


@given(st.one_of(st.text(), _PATHS))
def test_any_path_places_soundly(path: str) -> None:
    placed = placed_by_cgroup(path)
    if placed is not None and placed.engine in ("docker", "containerd", "cri-o", "podman", "runc", "kubernetes"):
        assert workloads.safe_id(placed.id)  # what Names may look up is a file name, never a path


# -- monitors ---------------------------------------------------------------------------

CRIO_CONMON = [
    "/usr/bin/conmon",
    "-b", f"/run/containers/storage/overlay-containers/{CRIO_APP}/userdata",
    "-c", CRIO_APP,
    "--exit-dir", "/var/run/crio/exits",
    "-l", f"/var/log/pods/shop_db-0_{DB_UID}/postgres/0.log",
    "--log-level", "info",
    "-n", f"k8s_postgres_db-0_shop_{DB_UID}_0",
    "-P", f"/run/containers/storage/overlay-containers/{CRIO_APP}/userdata/conmon-pidfile",
    "-p", f"/run/containers/storage/overlay-containers/{CRIO_APP}/userdata/pidfile",
    "--persist-dir", f"/var/lib/containers/storage/overlay-containers/{CRIO_APP}/userdata",
    "-r", "/usr/bin/runc",
    "--runtime-arg", "--root=/run/runc",
    "--socket-dir-path", "/var/run/crio",
    "--syslog",
    "-u", CRIO_APP,
    "-s",
]  # fmt: skip


def with_name(argv: list[str], name: str) -> list[str]:
    at = argv.index("-n")
    return [*argv[: at + 1], name, *argv[at + 2 :]]


@pytest.mark.parametrize(
    ("argv", "placed"),
    [
        # real
        (proc_argv("conmon.cmdline"), Placed("podman", PODMAN_IMG, "wl-podman-img")),
        (proc_argv("runc-cri.cmdline"), Placed("runc", RUNC_CRI)),
        (proc_argv("runc-plain.cmdline"), Placed("runc", RUNC_PLAIN)),
        # CRI-O's conmon: no --exit-command; its -n names container, pod, namespace, pod UID
        (CRIO_CONMON, Placed("cri-o", CRIO_APP, "postgres", pod_uid=DB_UID, pod="shop/db-0")),
        (
            with_name(CRIO_CONMON, f"k8s_POD_db-0_shop_{DB_UID}_0"),
            Placed("cri-o", CRIO_APP, "db-0", pod_uid=DB_UID, pod="shop/db-0"),
        ),
        (with_name(CRIO_CONMON, "postgres"), Placed("cri-o", CRIO_APP)),
        (with_name(CRIO_CONMON, "k8s_a_b_c_d_x"), Placed("cri-o", CRIO_APP)),
        (["conmon", "--cid=abc", "--name=web", "--exit-command=/usr/bin/podman"], Placed("podman", "abc", "web")),
        (["conmon", "-n", "web", "--exit-command", "/usr/bin/podman"], None),  # no id
        (["conmon", "-c", "../../etc", "--exit-command", "/usr/bin/podman"], None),
        (["conmon", "--exit-command-arg", "-c", "-c", "abc", "--exit-command", "podman"], Placed("podman", "abc")),
        # containerd's shims
        (
            [
                "/usr/bin/containerd-shim-runc-v2",
                "-namespace",
                "k8s.io",
                "-id",
                CTRD_POD,
                "-address",
                "/run/containerd/containerd.sock",
            ],
            Placed("containerd", CTRD_POD, namespace="k8s.io"),
        ),
        (
            [
                "/usr/bin/containerd-shim-runc-v2",
                "-namespace",
                "moby",
                "-id",
                DOCKER_WEB,
                "-address",
                "/run/containerd/containerd.sock",
            ],
            Placed("docker", DOCKER_WEB, namespace="moby"),
        ),
        (
            [
                "containerd-shim-runc-v2",
                "-namespace=default",
                "-id=redis-ctr",
                "-address",
                "/run/containerd/containerd.sock",
                "-debug",
            ],
            Placed("containerd", "redis-ctr", namespace="default"),
        ),
        (
            [
                "containerd-shim",
                "-namespace",
                "moby",
                "-workdir",
                f"/var/lib/containerd/io.containerd.runtime.v1.linux/moby/{DOCKER_WEB}",
                "-address",
                "/run/containerd/containerd.sock",
                "-containerd-binary",
                "/usr/bin/containerd",
                "-runtime-root",
                "/var/run/docker/runtime-runc",
            ],
            Placed("docker", DOCKER_WEB, namespace="moby"),
        ),
        (["containerd-shim-runc-v2", "-namespace", "a/../b", "-id", "x"], None),
        (["containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock"], None),
        # runc in the foreground
        (
            ["runc", "--root", "/run/runc", "--log-format", "json", "run", "-b", "/srv/b", "--pid-file", "/p", "box"],
            Placed("runc", "box"),
        ),
        (["/usr/sbin/runc", "--debug", "create", "--bundle=/srv/b", "box"], Placed("runc", "box")),
        (["runc", "-root", "/run/runc", "run", "-d", "--keep", "box"], Placed("runc", "box")),
        (["runc", "start", "box"], None),
        (["runc", "run"], None),
        (["runc", "run", "-b", "/srv/b"], None),
        (["runc", "init"], None),
        # systemd-nspawn
        (
            [
                "systemd-nspawn",
                "-q",
                "-D",
                "/srv/root",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "-M",
                "web",
                "sleep",
                "600",
            ],
            Placed("systemd-nspawn", "web", "web"),
        ),
        (
            [
                "systemd-nspawn",
                "--quiet",
                "--keep-unit",
                "--boot",
                "--link-journal=try-guest",
                "--network-veth",
                "-U",
                "--settings=override",
                "--machine=deb12",
            ],
            Placed("systemd-nspawn", "deb12", "deb12"),
        ),
        (
            ["/usr/bin/systemd-nspawn", "-D", "/var/lib/machines/deb12/", "sh"],
            Placed("systemd-nspawn", "deb12", "deb12"),
        ),
        (["systemd-nspawn", "-qbD/var/lib/machines/deb12"], Placed("systemd-nspawn", "deb12", "deb12")),
        (["systemd-nspawn", "--image", "/var/lib/machines/arch.raw", "-b"], Placed("systemd-nspawn", "arch", "arch")),
        (["systemd-nspawn", "-x", "-D", "/var/lib/machines/deb12"], None),  # ephemeral: a random name
        (
            ["systemd-nspawn", "-D", "/srv/root", "sh", "-M", "web"],
            Placed("systemd-nspawn", "root", "root"),
        ),  # -M is sh's
        (["systemd-nspawn", "-D", "/"], None),
        # anything else
        (["sleep", "600"], None),
        (["conmonx", "-c", "abc"], None),
        ([], None),
        ([""], None),
    ],
)
def test_a_monitors_arguments_place_its_container(argv: list[str], placed: Placed | None) -> None:
    assert placed_by_monitor(argv) == placed


_MONITOR_WORDS = st.one_of(
    st.sampled_from(
        ["conmon", "-c", "-n", "--exit-command", "run", "create", "-b", "-D", "-M", "-x", "-qbD", "--", "-"]
    ),
    st.sampled_from(["containerd-shim-runc-v2", "-namespace", "-id", "runc", "systemd-nspawn", "k8s_a_b_c_d_1", "="]),
    st.text(max_size=10),
)


@given(st.lists(_MONITOR_WORDS, max_size=10), st.sampled_from(["conmon", "containerd-shim", "runc", "systemd-nspawn"]))
def test_any_arguments_place_soundly(words: list[str], program: str) -> None:
    placed = placed_by_monitor([program, *words])
    if placed is not None and placed.engine != "systemd-nspawn":
        assert workloads.safe_id(placed.id)


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placed", "container"),
    [
        # runc: its state.json's labels are its bundle's annotations; a plain bundle's name is its id
        (Placed("runc", RUNC_CRI), Container("runc", RUNC_CRI, "app", "shop/web-0")),
        (Placed("runc", RUNC_PLAIN), Container("runc", RUNC_PLAIN, RUNC_PLAIN)),
        # podman
        (Placed("podman", PODMAN_IMG), Container("podman", PODMAN_IMG, "wl-podman-img")),
        (Placed("podman", PODMAN_ROOTFS), Container("podman", PODMAN_ROOTFS, "wl-podman-rootfs")),
        # docker, and dockershim's pod container and sandbox
        (Placed("docker", DOCKER_WEB), Container("docker", DOCKER_WEB, "web")),
        (Placed("docker", SHIM_APP, pod_uid=CACHE_UID), Container("docker", SHIM_APP, "redis", "shop/cache-0")),
        (Placed("docker", SHIM_POD, pod_uid=CACHE_UID), Container("docker", SHIM_POD, "cache-0", "shop/cache-0")),
        (Placed("docker", DOCKER_WEB, namespace="moby"), Container("docker", DOCKER_WEB, "web")),  # by its shim
        # containerd's CRI: a pod's container, and its sandbox (named after the pod)
        (Placed("containerd", CTRD_APP, namespace="k8s.io"), Container("containerd", CTRD_APP, "api", "shop/api-0")),
        (Placed("containerd", CTRD_POD, namespace="k8s.io"), Container("containerd", CTRD_POD, "api-0", "shop/api-0")),
        (Placed("containerd", CTRD_APP), Container("containerd", CTRD_APP, "api", "shop/api-0")),  # any namespace
        # containerd without the CRI: nerdctl's name, else the id
        (Placed("containerd", NERDCTL), Container("containerd", NERDCTL, "memcached")),
        (Placed("containerd", "redis-ctr", namespace="default"), Container("containerd", "redis-ctr", "redis-ctr")),
        (Placed("containerd", "redis-ctr"), Container("containerd", "redis-ctr", "redis-ctr")),
        (Placed("containerd", "redis-ctr", namespace="k8s.io"), Container("containerd", "redis-ctr")),  # not there
        # CRI-O: a pod's container, and its infra container
        (Placed("cri-o", CRIO_APP, pod_uid=DB_UID), Container("cri-o", CRIO_APP, "postgres", "shop/db-0")),
        (Placed("cri-o", CRIO_POD, pod_uid=DB_UID), Container("cri-o", CRIO_POD, "db-0", "shop/db-0")),
        # a pod's container by the cgroupfs driver: the engine whose state has it
        (Placed("kubernetes", CTRD_APP, pod_uid=API_UID), Container("containerd", CTRD_APP, "api", "shop/api-0")),
        (Placed("kubernetes", CRIO_APP, pod_uid=DB_UID), Container("cri-o", CRIO_APP, "postgres", "shop/db-0")),
        (Placed("kubernetes", SHIM_APP, pod_uid=CACHE_UID), Container("docker", SHIM_APP, "redis", "shop/cache-0")),
        (Placed("kubernetes", RUNC_CRI, pod_uid=RUNC_POD_UID), Container("runc", RUNC_CRI, "app", "shop/web-0")),
        (Placed("kubernetes", H, pod_uid=POD_UID), Container("kubernetes", H)),
        # named by their place
        (Placed("lxc", "web", "web"), Container("lxc", "web", "web")),
        (Placed("systemd-nspawn", "deb-12", "deb-12"), Container("systemd-nspawn", "deb-12", "deb-12")),
        (Placed("systemd", "nginx.service", "nginx.service"), Container("systemd", "nginx.service", "nginx.service")),
        (
            Placed("systemd", "user@1000.service/dbus.service", "dbus.service", uid=1000),
            Container("systemd", "user@1000.service/dbus.service", "dbus.service"),
        ),
        # where the engine's state has no name, what the place said
        (Placed("podman", ALICE_PODMAN, "notes"), Container("podman", ALICE_PODMAN, "notes")),  # a rootless conmon's -n
        (
            Placed("cri-o", H, "postgres", pod_uid=DB_UID, pod="shop/db-0"),
            Container("cri-o", H, "postgres", "shop/db-0"),
        ),
        (Placed("docker", H), Container("docker", H)),
        (Placed("runc", H), Container("runc", H)),
        (Placed("podman", H), Container("podman", H)),
    ],
)
def test_names_come_from_the_engines_state(placed: Placed, container: Container) -> None:
    assert names().container(placed) == container


@pytest.mark.parametrize(
    ("cgroup", "monitor", "container"),
    [
        ("runc-cri.cgroup", "runc-cri.cmdline", Container("runc", RUNC_CRI, "app", "shop/web-0")),
        ("runc-plain.cgroup", "runc-plain.cmdline", Container("runc", RUNC_PLAIN, RUNC_PLAIN)),
        ("podman.cgroup", "conmon.cmdline", Container("podman", PODMAN_IMG, "wl-podman-img")),
    ],
)
def test_a_real_container_is_named_by_its_cgroup_else_its_monitor(
    cgroup: str, monitor: str, container: Container
) -> None:
    """As discovery asks: the cgroup first; the monitor only where the cgroup places nothing
    (plain runc), and it names the same container where both do."""
    found = names()
    placed = placed_by_cgroup(cgroup_path(proc_text(cgroup)))
    by_monitor = placed_by_monitor(proc_argv(monitor))
    assert by_monitor is not None
    assert found.container(placed or by_monitor) == container
    assert found.container(by_monitor) == container


# -- rootless -----------------------------------------------------------------------------


@pytest.fixture
def rootless(tmp_path: Path) -> tuple[str, int]:
    """The host's tree, copied: its files are the running user's, who is then "alice" (with a
    runc container of their own, from the real plain one)."""
    root = tmp_path / "host"
    shutil.copytree(HOST, root)
    uid = os.geteuid()
    (root / "run" / "user" / str(uid) / "runc").mkdir(parents=True)
    shutil.copytree(root / "run" / "runc" / RUNC_PLAIN, root / "run" / "user" / str(uid) / "runc" / "rl-box")
    return str(root), uid


def alice(uid: int) -> Callable[[int], str | None]:
    def home(asked: int) -> str | None:
        return "/home/alice" if asked == uid else None

    return home


def test_a_rootless_engines_state_is_its_users(rootless: tuple[str, int]) -> None:
    root, uid = rootless
    found = Names(root, alice(uid))
    assert found.container(Placed("podman", ALICE_PODMAN, uid=uid)) == Container("podman", ALICE_PODMAN, "notes")
    assert found.container(Placed("docker", ALICE_DOCKER, uid=uid)) == Container("docker", ALICE_DOCKER, "blog")
    # runc's, under the user's runtime directory: its bundle (the user's to say) is not read
    assert found.container(Placed("runc", "rl-box", uid=uid)) == Container("runc", "rl-box", "rl-box")
    # the system's state is not the user's, nor the user's the system's
    assert found.container(Placed("podman", PODMAN_IMG, uid=uid)) == Container("podman", PODMAN_IMG)
    assert found.container(Placed("docker", ALICE_DOCKER)) == Container("docker", ALICE_DOCKER)
    # engines that keep no state under a home
    assert found.container(Placed("containerd", CTRD_APP, uid=uid)) == Container("containerd", CTRD_APP)
    assert found.container(Placed("cri-o", CRIO_APP, uid=uid)) == Container("cri-o", CRIO_APP)


def test_a_rootless_state_not_the_users_own_is_not_read(rootless: tuple[str, int]) -> None:
    root, uid = rootless
    other = uid + 1  # the files are the running user's, not this one's
    found = Names(root, alice(other))
    assert found.container(Placed("podman", ALICE_PODMAN, uid=other)) == Container("podman", ALICE_PODMAN)
    assert found.container(Placed("docker", ALICE_DOCKER, uid=other)) == Container("docker", ALICE_DOCKER)
    # a user with no home has no state
    assert Names(root, no_home).container(Placed("docker", ALICE_DOCKER, uid=uid)) == Container("docker", ALICE_DOCKER)


# -- state that cannot be read ------------------------------------------------------------


def copy_host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    shutil.copytree(HOST, root)
    return root


DOCKER_STATE = f"var/lib/docker/containers/{DOCKER_WEB}/config.v2.json"
CTRD_STATE = f"run/containerd/io.containerd.runtime.v2.task/k8s.io/{CTRD_APP}/config.json"
CRIO_STATE = f"run/containers/storage/overlay-containers/{CRIO_APP}/userdata/config.json"
RUNC_STATE = f"run/runc/{RUNC_CRI}/state.json"
PODMAN_STATE = "var/lib/containers/storage/overlay-containers/containers.json"


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def missing(path: Path) -> None:
    path.unlink()


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # a plain open would wait for a writer


def not_json(path: Path) -> None:
    path.write_text("{'id': 1,}")


def nested(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def wrong_types(path: Path) -> None:
    path.write_text(json.dumps({"Name": 7, "config": {"labels": "bundle=/x"}, "annotations": [1], "Config": []}))


def not_utf8(path: Path) -> None:
    path.write_bytes(b'{"Name": "/\xff"}')


@pytest.mark.parametrize(
    "spoil", [truncated, directory, missing, fifo, not_json, nested, wrong_types, not_utf8], ids=lambda f: f.__name__
)
@pytest.mark.parametrize(
    ("state", "placed"),
    [
        (DOCKER_STATE, Placed("docker", DOCKER_WEB)),
        (CTRD_STATE, Placed("containerd", CTRD_APP, namespace="k8s.io")),
        (CRIO_STATE, Placed("cri-o", CRIO_APP)),
        (RUNC_STATE, Placed("runc", RUNC_CRI)),
        (PODMAN_STATE, Placed("podman", PODMAN_IMG)),
    ],
)
def test_an_unreadable_state_is_the_id_without_a_name(
    tmp_path: Path, spoil: Callable[[Path], None], state: str, placed: Placed
) -> None:
    root = copy_host(tmp_path)
    spoil(root / state)
    assert names(str(root)).container(placed) == Container(placed.engine, placed.id)


def test_a_runc_bundle_that_cannot_be_read_gives_no_name(tmp_path: Path) -> None:
    """A state.json whose labels hold no annotations sends to the bundle: it must be read."""
    root = copy_host(tmp_path)
    (root / "srv/bundles/plain/config.json").unlink()
    assert names(str(root)).container(Placed("runc", RUNC_PLAIN)) == Container("runc", RUNC_PLAIN)


def test_a_state_larger_than_read_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_host(tmp_path)
    size = (root / DOCKER_STATE).stat().st_size
    monkeypatch.setattr(workloads.names, "STATE_READ", size - 1)
    assert names(str(root)).container(Placed("docker", DOCKER_WEB)) == Container("docker", DOCKER_WEB)
    monkeypatch.setattr(workloads.names, "STATE_READ", size)
    assert names(str(root)).container(Placed("docker", DOCKER_WEB)) == Container("docker", DOCKER_WEB, "web")


def test_a_pods_container_whose_state_is_spoiled_still_has_its_engine(tmp_path: Path) -> None:
    root = copy_host(tmp_path)
    truncated(root / CTRD_STATE)
    directory(root / CRIO_STATE)
    found = names(str(root))
    assert found.container(Placed("kubernetes", CTRD_APP, pod_uid=API_UID)) == Container("containerd", CTRD_APP)
    assert found.container(Placed("kubernetes", CRIO_APP, pod_uid=DB_UID)) == Container("cri-o", CRIO_APP)


def test_an_id_is_never_a_path(tmp_path: Path) -> None:
    """An id that would lead out of the engine's directory is not looked up (a monitor's
    arguments are any process's to make up)."""
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc/config.v2.json").write_text(json.dumps({"Name": "/spoofed"}))
    (root / "var/lib/docker/containers").mkdir(parents=True)
    assert names(str(root)).container(Placed("docker", "../../../../etc")) == Container("docker", "../../../../etc")
    long = "a" * 256
    assert names(str(root)).container(Placed("runc", long)) == Container("runc", long)


@settings(max_examples=200)
@given(
    st.sampled_from(["docker", "containerd", "cri-o", "podman", "runc", "kubernetes", "lxc", "systemd", "other"]),
    st.one_of(st.sampled_from([DOCKER_WEB, CTRD_APP, RUNC_PLAIN, "..", ".", "a/b", ""]), st.text(max_size=300)),
    st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40)),
    st.one_of(st.sampled_from(["", "k8s.io", "moby", "..", "a/b"]), st.text(max_size=20)),
)
def test_names_never_fail(engine: str, cid: str, uid: int | None, namespace: str) -> None:
    def home(asked: int) -> str | None:
        return "/home/alice"

    container = Names(HOST, home).container(Placed(engine, cid, uid=uid, namespace=namespace))
    assert container.id == cid


# -- remembering --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_name_written_later_is_found_after_retry_after(tmp_path: Path) -> None:
    root = copy_host(tmp_path)
    state = root / DOCKER_STATE
    written = state.read_bytes()
    state.unlink()
    clock = Clock()
    found = Names(str(root), no_home, retry_after=5.0, clock=clock)
    placed = Placed("docker", DOCKER_WEB)
    assert found.container(placed) == Container("docker", DOCKER_WEB)
    state.write_bytes(written)  # the engine writes it just after
    clock.now += 4.9
    assert found.container(placed) == Container("docker", DOCKER_WEB)  # not looked for again yet
    clock.now += 0.1
    assert found.container(placed) == Container("docker", DOCKER_WEB, "web")
    state.unlink()  # found: kept, not read again
    clock.now += 60
    assert found.container(placed) == Container("docker", DOCKER_WEB, "web")


def test_a_name_the_place_gave_is_not_kept_as_found(tmp_path: Path) -> None:
    """A name from a monitor's arguments stands in for the state's until the state is read."""
    root = copy_host(tmp_path)
    clock = Clock()
    found = Names(str(root), no_home, retry_after=5.0, clock=clock)
    placed = Placed("podman", ALICE_PODMAN, "notes")
    assert found.container(placed) == Container("podman", ALICE_PODMAN, "notes")
    listing = root / PODMAN_STATE
    entries = json.loads(listing.read_text())
    listing.write_text(json.dumps([*entries, {"id": ALICE_PODMAN, "names": ["renamed"]}]))
    clock.now += 5
    assert found.container(placed) == Container("podman", ALICE_PODMAN, "renamed")


def test_podmans_list_is_parsed_again_when_it_changes(tmp_path: Path) -> None:
    root = copy_host(tmp_path)
    found = names(str(root), retry_after=0.0)
    assert found.container(Placed("podman", H)) == Container("podman", H)
    listing = root / PODMAN_STATE
    listing.write_text(json.dumps([*json.loads(listing.read_text()), {"id": H, "names": ["later", "alias"]}]))
    assert found.container(Placed("podman", H)) == Container("podman", H, "later")
    assert found.container(Placed("podman", PODMAN_IMG)) == Container("podman", PODMAN_IMG, "wl-podman-img")


def test_podmans_list_is_parsed_once_for_all_its_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    parse = workloads.names._parse

    def counted(data: bytes) -> object:
        parsed.append(data)
        return parse(data)

    monkeypatch.setattr(workloads.names, "_parse", counted)
    found = names()
    assert found.container(Placed("podman", PODMAN_IMG)).name == "wl-podman-img"
    assert found.container(Placed("podman", PODMAN_ROOTFS)).name == "wl-podman-rootfs"
    assert found.container(Placed("podman", H)) == Container("podman", H)
    assert len(parsed) == 1


def test_the_names_kept_are_the_most_recently_asked(tmp_path: Path) -> None:
    root = copy_host(tmp_path)
    found = Names(str(root), no_home, retry_after=0.0, remembered=2)
    web, app, pod = Placed("docker", DOCKER_WEB), Placed("docker", SHIM_APP), Placed("docker", SHIM_POD)
    for placed in (web, app, web, pod):  # app is then the one asked longest ago: dropped
        assert found.container(placed).name
    shutil.rmtree(root / "var/lib/docker")
    assert found.container(web) == Container("docker", DOCKER_WEB, "web")
    assert found.container(pod) == Container("docker", SHIM_POD, "cache-0", "shop/cache-0")
    assert found.container(app) == Container("docker", SHIM_APP)  # read again: gone


def test_names_are_asked_from_many_threads(tmp_path: Path) -> None:
    root = copy_host(tmp_path)
    found = Names(str(root), no_home, retry_after=0.0, remembered=3)
    expected = {
        Placed("docker", DOCKER_WEB): Container("docker", DOCKER_WEB, "web"),
        Placed("podman", PODMAN_IMG): Container("podman", PODMAN_IMG, "wl-podman-img"),
        Placed("podman", PODMAN_ROOTFS): Container("podman", PODMAN_ROOTFS, "wl-podman-rootfs"),
        Placed("runc", RUNC_CRI): Container("runc", RUNC_CRI, "app", "shop/web-0"),
        Placed("cri-o", CRIO_POD): Container("cri-o", CRIO_POD, "db-0", "shop/db-0"),
        Placed("docker", H): Container("docker", H),
    }
    wrong: list[tuple[Placed, Container]] = []

    def ask() -> None:
        for _ in range(50):
            for placed, container in expected.items():
                if (got := found.container(placed)) != container:
                    wrong.append((placed, got))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
