"""How containers are shown: a `containers` line, the caller's rule, lsnsfs's CONTAINER column,
its -J field and -C, the events' words, and whom the kernel counts a namespace against for its
limits. Pure: no root, no kernel (the containers themselves are found in test_workloads.py and,
with real engines, tests/test_containers.py)."""

from __future__ import annotations

import json

import pytest

from nsfs_fuse.events_socket import container_word
from nsfs_fuse.model import Container, Holder, HolderKind, Holders, NsKey, charged_uid
from nsfs_fuse.readers.formats import as_json, limits_table, table
from nsfs_fuse.readers.mounted import Listed
from nsfs_fuse.readers.rows import Row, row_of

from .test_model import OURS, THEIRS, Reader

WEB = Container("podman", "3f2a9c1d2e4b5a6978877665544332211ffeeddccbbaa99887766554433221100", "web")
NGINX = Container("containerd", "9d" * 32, "nginx", "default/web-0")
NAMELESS = Container("runc", "a b")  # an id a shell would split: escaped
UNIT = Container("systemd", "nginx.service", "nginx.service")


@pytest.mark.parametrize(
    ("container", "line"),
    [
        (WEB, f"podman {WEB.id} web"),
        (NGINX, f"containerd {NGINX.id} nginx default/web-0"),
        (NAMELESS, "runc a\\040b"),
        (Container("cri-o", "c1", "", "kube-system/dns"), "cri-o c1 - kube-system/dns"),
        (UNIT, "systemd nginx.service nginx.service"),
    ],
)
def test_a_container_line_is_engine_id_name_and_pod_escaped_as_holders(container: Container, line: str) -> None:
    assert container.line() == line
    parsed = Container.parse(line)
    assert parsed == container


def test_a_container_is_shown_only_with_a_holder_the_reader_may_see() -> None:
    """Reader: host pids above 1000 are in its pid namespace, and it may read uid 1000's processes."""
    holders = Holders(
        (
            (
                Holder(HolderKind.PROCESS, 1007, text="nginx", creds=OURS, container=NGINX),
                Holder(HolderKind.FD, 1008, 4, creds=OURS, container=WEB),
                Holder(HolderKind.PROCESS, 1009, text="root's", creds=THEIRS, container=UNIT),  # not readable
                Holder(HolderKind.PROCESS, 7, text="outside", creds=OURS, container=NAMELESS),  # not in its pid ns
                Holder(HolderKind.PROCESS, 1010, text="nginx", creds=OURS, container=NGINX),  # the same, once
                Holder(HolderKind.PROCESS, 1011, text="plain", creds=OURS),
                Holder(HolderKind.MOUNT, text="/run/netns/x", ns="mnt:[5]"),
            ),
        )
    )
    assert holders.containers(Reader({"mnt:[5]"})) == [NGINX, WEB]
    assert Holders().containers(Reader(set())) == []


def test_the_container_column_names_each_by_pod_and_name_or_short_id() -> None:
    listed = Listed(
        NsKey("net", 4026532292),
        ("process 7 nginx",),
        tuple(Container.parse(c.line()) or pytest.fail() for c in (NGINX, WEB, NAMELESS)),
    )
    row = row_of(listed, lambda _pid: (0, "nginx"))
    assert row.cells()["CONTAINER"] == "default/web-0/nginx,web,a b"
    assert table([row]).splitlines() == [
        "        NS TYPE NPROCS PID USER HOLDERS   CONTAINER                   COMMAND",
        "4026532292 net       1   7 root process:1 default/web-0/nginx,web,a b nginx",
    ]
    assert json.loads(as_json([row]))["namespaces"][0]["container"] == [
        {"engine": "containerd", "id": NGINX.id, "name": "nginx", "pod": "default/web-0"},
        {"engine": "podman", "id": WEB.id, "name": "web", "pod": None},
        {"engine": "runc", "id": "a b", "name": None, "pod": None},
    ]
    assert Row(1, "net", 0, None, None, None, ()).as_json()["container"] is None


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        ("web", True),  # a name
        (WEB.id, True),  # an id
        ("3f2a9c1d2e4b", True),  # the start of one, as engines shorten ids
        ("default/web-0", True),  # a pod
        ("nginx", True),
        ("we", False),  # the start of a name is not a name
        ("default", False),
        ("", False),
        ("4f", False),
    ],
)
def test_lsnsfs_c_picks_by_name_id_start_of_id_or_pod(wanted: str, chosen: bool) -> None:
    containers = tuple(Container.parse(c.line()) or pytest.fail() for c in (NGINX, WEB))
    assert Listed(NsKey("net", 1), (), containers).in_container(wanted) is chosen
    assert not Listed(NsKey("net", 1), ()).in_container(wanted)


@pytest.mark.parametrize("line", ["", "podman", "a b c d e"])
def test_a_line_that_is_not_a_container_is_left_out(line: str) -> None:
    assert Container.parse(line) is None


def test_an_events_line_names_each_container_in_one_word() -> None:
    assert container_word(WEB) == "podman:web"
    assert container_word(NGINX) == "containerd:default/web-0/nginx"
    assert container_word(NAMELESS) == "runc:a\\040b"
    assert container_word(Container("docker", "0123456789abcdef" * 4)) == "docker:0123456789ab"


# -- limits ---------------------------------------------------------------------

TOP = NsKey("user", 1)
# Uids no machine names (lsnsfs shows a user's name where it has one).
ALICE = NsKey("user", 2)  # made by uid 7000001 in the top one
ALICE_CHILD = NsKey("user", 3)  # made in ALICE's by its uid 0 (7000001 outside)
BOB = NsKey("user", 4)
USERS: dict[NsKey, tuple[NsKey | None, int | None]] = {
    TOP: (None, 0),
    ALICE: (TOP, 7000001),
    ALICE_CHILD: (ALICE, 7000001),
    BOB: (TOP, 7000002),
}


@pytest.mark.parametrize(
    ("user", "uid"),
    [
        (TOP, 0),  # owned by the top: whoever made it, taken as root
        (ALICE, 7000001),
        (ALICE_CHILD, 7000001),  # counted against ALICE's creator at the top
        (BOB, 7000002),
        (NsKey("user", 9), 0),  # unknown to the reader
        (None, 0),
    ],
)
def test_a_namespace_counts_against_the_creator_of_the_top_namespaces_child_above_it(
    user: NsKey | None, uid: int
) -> None:
    assert charged_uid(user, USERS) == uid


def test_lsnsfs_limits_counts_each_type_per_user_fullest_first() -> None:
    entries = [
        Listed(TOP, ()),
        Listed(ALICE, (), owner=TOP, parent=TOP, owner_uid=7000001),
        Listed(ALICE_CHILD, (), owner=ALICE, parent=ALICE, owner_uid=7000001),
        Listed(NsKey("net", 10), (), owner=TOP),
        Listed(NsKey("net", 11), (), owner=ALICE_CHILD),
        Listed(NsKey("net", 12), (), owner=ALICE),
        Listed(NsKey("uts", 13), (), owner=ALICE),
    ]
    limits = {"net": 4, "user": 100}
    assert limits_table(entries, entries, limits) == (
        "TYPE USER    NAMESPACES LIMIT   USE\n"
        "net  7000001          2     4 50.0%\n"
        "net  root             1     4 25.0%\n"
        "user 7000001          2   100  2.0%\n"
        "uts  7000001          1     -     -\n"
    )
    chosen = [e for e in entries if e.key.type == "net"]
    assert limits_table(entries, chosen, limits, headings=False).splitlines() == [
        "net 7000001 2 4 50.0%",
        "net root    1 4 25.0%",
    ]
