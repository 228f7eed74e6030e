"""The model: namespace names, the holder table and the holders file, entries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nsfs_fuse.model import (
    KINDS,
    UNSEEN,
    Audience,
    Creds,
    Entry,
    Holder,
    HolderKind,
    Holders,
    NsKey,
    holder_line,
    parse_ns_name,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("net:[4026531840]", NsKey("net", 4026531840)),
        ("time:[1]", NsKey("time", 1)),
        ("user:[4294967295]", NsKey("user", 4294967295)),
        ("user:[4294967296]", None),  # past 32 bits
        ("net:[04026531840]", None),  # the kernel prints no leading zeros
        ("net:[0]", None),
        ("net:[-1]", None),
        ("net:[+1]", None),
        ("net:[12345678901]", None),
        ("socket:[123]", None),
        ("net:[1] ", None),
        (" net:[1]", None),
        ("net:[1]\n", None),
        ("net:1", None),
        ("", None),
        ("pid_for_children:[5]", None),
    ],
)
def test_parse_ns_name_accepts_exactly_what_the_kernel_prints(text: str, key: NsKey | None) -> None:
    assert parse_ns_name(text) == key


def test_a_key_is_named_as_the_kernel_names_it() -> None:
    assert NsKey("mnt", 4026531841).name == "mnt:[4026531841]"


# -- the holder table -----------------------------------------------------------


class Reader:
    """A reader in a pid namespace where host pid N is N - 1000 (others not there), that may
    read the processes of uid 1000 (and none whose credentials are unknown)."""

    def __init__(self, visible: set[str]) -> None:
        self.visible = visible

    def sees_name(self, name: str) -> bool:
        return name in self.visible

    def pid(self, host_pid: int) -> int | None:
        return host_pid - 1000 if host_pid > 1000 else None

    def reads(self, pid: int, creds: Creds | None) -> bool:
        return creds is not None and creds.uids == (1000, 1000, 1000)


OURS = Creds((1000, 1000, 1000), (1000, 1000, 1000), 0, 1000, NsKey("user", 1), None)
THEIRS = Creds((0, 0, 0), (0, 0, 0), (1 << 41) - 1, 0, NsKey("user", 1), NsKey("user", 1))


def test_every_kind_has_exactly_one_row() -> None:
    assert list(KINDS) == list(HolderKind)


# The README's words for each field.
README_WORDS = {"PID": "pid", "TID": "tid", "FD": "num", "COMM": "text", "PATH": "text", "MNTNS": "ns", "NAME": "ns"}


def test_the_readme_lists_the_kinds_in_table_order_with_their_fields() -> None:
    rows = re.findall(r"^\| `([a-z-]+)((?: [A-Z]+)*)` \|", README.read_text(), re.MULTILINE)
    documented = {kind: [README_WORDS[w] for w in words.split()] for kind, words in rows if kind in set(HolderKind)}
    assert list(documented) == [kind.value for kind in KINDS]
    assert documented == {kind.value: [f.value for f in row.fields] for kind, row in KINDS.items()}


@pytest.mark.parametrize(
    ("holder", "line"),
    [
        (Holder(HolderKind.PROCESS, 1007, text="sl eep\\", creds=OURS), "process 7 sl\\040eep\\134"),
        (Holder(HolderKind.TASK, 1007, 1009, "worker", creds=OURS), "task 7 9 worker"),
        (Holder(HolderKind.FOR_CHILDREN, 1007, creds=OURS), "for-children 7"),
        (Holder(HolderKind.FD, 1007, 1003, creds=OURS), "fd 7 1003"),  # an fd number is not a pid
        (Holder(HolderKind.SOCKET, 1007, 4, creds=OURS), "socket 7 4"),
        (Holder(HolderKind.MOUNT, text="/run/netns/a b", ns="mnt:[5]"), "mount /run/netns/a\\040b mnt:[5]"),
        (Holder(HolderKind.OWNER_OF, ns="net:[6]"), "owner-of net:[6]"),
        (Holder(HolderKind.PARENT_OF, ns="pid:[7]"), "parent-of pid:[7]"),
        (UNSEEN, "unseen"),
    ],
)
def test_each_kind_has_its_line(holder: Holder, line: str) -> None:
    assert holder_line(holder, Reader({"mnt:[5]", "net:[6]", "pid:[7]"})) == line


@pytest.mark.parametrize(
    "holder",
    [
        Holder(HolderKind.PROCESS, 7, text="init", creds=OURS),  # outside the reader's pid namespace
        Holder(HolderKind.TASK, 1007, 9, "worker", creds=OURS),  # the thread is outside it
        Holder(HolderKind.FOR_CHILDREN, 7, creds=OURS),
        Holder(HolderKind.FD, 7, 3, creds=OURS),
        Holder(HolderKind.SOCKET, 7, 3, creds=OURS),
        Holder(HolderKind.PROCESS, 1007, text="sleep", creds=THEIRS),  # a process it may not read
        Holder(HolderKind.TASK, 1007, 1009, "worker", creds=THEIRS),
        Holder(HolderKind.FOR_CHILDREN, 1007, creds=THEIRS),
        Holder(HolderKind.FD, 1007, 3, creds=THEIRS),
        Holder(HolderKind.SOCKET, 1007, 3, creds=THEIRS),
        Holder(HolderKind.PROCESS, 1007, text="sleep"),  # credentials unknown
        Holder(HolderKind.MOUNT, text="/x", ns="mnt:[5]"),  # a mount namespace it cannot see
        Holder(HolderKind.OWNER_OF, ns="net:[6]"),
        Holder(HolderKind.PARENT_OF, ns="pid:[7]"),
    ],
)
def test_a_reader_sees_no_line_it_may_not_see(holder: Holder) -> None:
    assert holder_line(holder, Reader(set())) is None


def test_audiences_follow_the_fields() -> None:
    for kind, row in KINDS.items():
        names_ns = any(f.value == "ns" for f in row.fields)
        assert (row.audience is Audience.NAMESPACE) == names_ns, kind
        if row.audience is Audience.PROCESS:
            assert row.fields[0].value == "pid", kind


def test_holders_are_listed_once_each_in_table_order_then_by_pid() -> None:
    holders = Holders(
        (
            (Holder(HolderKind.FD, 1009, 4, creds=OURS), Holder(HolderKind.PROCESS, 1009, text="b", creds=OURS)),
            (Holder(HolderKind.PROCESS, 1002, text="a", creds=OURS), Holder(HolderKind.FD, 1002, 7, creds=OURS)),
            (UNSEEN, Holder(HolderKind.PROCESS, 1002, text="a", creds=OURS)),
            (Holder(HolderKind.OWNER_OF, ns="net:[6]"),),
            (Holder(HolderKind.PROCESS, 1003, text="c", creds=THEIRS), Holder(HolderKind.FD, 1003, 1, creds=THEIRS)),
        )
    )
    assert holders.render(Reader({"net:[6]"})) == "process 2 a\nprocess 9 b\nfd 2 7\nfd 9 4\nowner-of net:[6]\nunseen\n"
    assert Holders(()).render(Reader(set())) == ""


def test_holders_compare_by_what_they_hold() -> None:
    one = (Holder(HolderKind.PROCESS, 1, text="a"),)
    assert Holders((one,)) == Holders((one,))
    assert Holders((one,)) != Holders((one, (UNSEEN,)))


# -- entries --------------------------------------------------------------------

USER0, USER1 = NsKey("user", 1), NsKey("user", 2)


def entry(key: NsKey, owner: NsKey | None = None, parent: NsKey | None = None) -> Entry:
    return Entry(key, 1, 3, None, None, owner, parent, None, 0)


def test_an_entry_is_anchored_at_its_owner_or_at_itself_for_a_user_namespace() -> None:
    assert entry(NsKey("net", 9), owner=USER1).anchor == USER1
    assert entry(USER1, owner=USER0, parent=USER0).anchor == USER1
    assert entry(NsKey("net", 9)).anchor is None


def test_relations_name_the_child_in_its_owner_and_parent() -> None:
    assert entry(NsKey("net", 9), owner=USER1).relations() == [(USER1, Holder(HolderKind.OWNER_OF, ns="net:[9]"))]
    assert entry(USER1, owner=USER0, parent=USER0).relations() == [(USER0, Holder(HolderKind.PARENT_OF, ns="user:[2]"))]
    pid = entry(NsKey("pid", 5), owner=USER1, parent=NsKey("pid", 4))
    assert pid.relations() == [
        (USER1, Holder(HolderKind.OWNER_OF, ns="pid:[5]")),
        (NsKey("pid", 4), Holder(HolderKind.PARENT_OF, ns="pid:[5]")),
    ]
    assert entry(USER0).relations() == []
