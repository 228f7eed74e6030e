"""lsnsfs's pure parts: the holders summary, rows, the table, the tree and its JSON, and odd text
in each (tests/unit/test_odd_text.py draws it at random)."""

from __future__ import annotations

import json

import pytest

from nsfs_fuse.model import NsKey
from nsfs_fuse.options import UsageError, parse_listen
from nsfs_fuse.readers.formats import as_json, as_json_tree, table, tree_order, with_owners
from nsfs_fuse.readers.mounted import Listed, comm_of, events_socket, holder_lines, summary
from nsfs_fuse.readers.rows import Row, command_line, row_of
from nsfs_fuse.readers.shown import cell, dot_label, json_text

HOST = NsKey("user", 4026531837)
HOST_NET = NsKey("net", 4026531840)
CHILD = NsKey("user", 4026532290)
CHILD_NET = NsKey("net", 4026532292)
LOST = NsKey("net", 4026532400)
GRANDCHILD = NsKey("user", 4026532500)


def test_the_summary_counts_each_kind_in_the_files_order_and_names_each_mount() -> None:
    lines = [
        "process 7 sh",
        "process 9 sleep",
        "fd 12 5",
        "mount /run/netns/blue mnt:[4026531832]",
        "mount /var/run/a\\040b mnt:[4026532111]",
        "owner-of net:[4026532292]",
    ]
    assert summary(lines) == "process:2,fd:1,mount:/run/netns/blue,mount:/var/run/a\\040b,owner-of:1"
    assert summary(["unseen"]) == "unseen"
    assert summary([]) == ""


def test_the_command_name_of_a_pid_comes_unescaped_from_its_process_line() -> None:
    lines = ["process 7 my\\040tool", "process 70 other"]
    assert comm_of(lines, 7) == "my tool"
    assert comm_of(lines, 70) == "other"
    assert comm_of(lines, 8) is None


def test_a_pid_holds_what_names_it_in_any_line_with_a_pid() -> None:
    entry = Listed(CHILD_NET, ("process 7 sh", "task 8 81 sh", "for-children 9", "fd 10 3", "socket 11 4"))
    assert [pid for pid in range(6, 13) if entry.holds(pid)] == [7, 8, 9, 10, 11]
    # A mount's path or a namespace name is not a pid.
    assert not Listed(HOST, ("mount 12 mnt:[1]", "owner-of net:[12]")).holds(12)


def test_the_bind_mounts_of_one_mount_namespace_come_unescaped() -> None:
    entry = Listed(
        CHILD_NET,
        (
            "process 7 sh",
            "mount /run/netns/a\\040b mnt:[4026531832]",
            "mount /run/netns/a\\040b mnt:[4026532111]",  # the same path, propagated to a peer
            "mount /var/run/netns/c mnt:[4026531832]",
        ),
    )
    assert entry.mount_paths("mnt:[4026531832]") == ["/run/netns/a b", "/var/run/netns/c"]
    assert entry.mount_paths("mnt:[4026532999]") == []


def test_with_t_net_rows_add_lsns_netnsid_and_nsfs_after_user() -> None:
    row = Row(
        4026532292, "net", 0, None, None, None, ("mount /run/netns/blue mnt:[1]",), "7", ("/run/netns/blue", "/x")
    )
    fields = ["ns", "type", "nprocs", "pid", "user", "netnsid", "nsfs", "command", "holders", "container"]
    assert list(row.as_json(net=True)) == fields
    assert (row.as_json(net=True)["netnsid"], row.as_json(net=True)["nsfs"]) == ("7", "/run/netns/blue\n/x")
    assert list(row.as_json()) == [f for f in fields if f not in ("netnsid", "nsfs")]
    assert table([row], net=True).splitlines() == [
        "        NS TYPE NPROCS PID USER NETNSID NSFS               HOLDERS               CONTAINER COMMAND",
        "4026532292 net       0   - -          7 /run/netns/blue,/x mount:/run/netns/blue -         -",
    ]


def test_a_row_shows_the_lowest_pid_with_its_user_and_command_line() -> None:
    entry = Listed(CHILD_NET, ("process 12 sleep", "process 30 sh", "fd 5 3"))
    row = row_of(entry, lambda pid: (0, "sleep 600") if pid == 12 else None)
    assert row == Row(4026532292, "net", 2, 12, "root", "sleep 600", entry.holders)


def test_a_process_gone_or_without_a_command_line_shows_its_name_from_holders() -> None:
    entry = Listed(CHILD_NET, ("process 12 kthreadd",))
    assert row_of(entry, lambda _pid: None) == Row(4026532292, "net", 1, 12, None, "kthreadd", entry.holders)
    assert row_of(entry, lambda _pid: (0, "")).command == "kthreadd"


def test_a_namespace_no_process_is_in_has_no_pid_user_or_command() -> None:
    entry = Listed(LOST, ("mount /run/netns/x mnt:[4026531832]",))
    row = row_of(entry, lambda _pid: pytest.fail("no process to read"))
    assert row == Row(4026532400, "net", 0, None, None, None, entry.holders)


ROWS = [
    Row(4026531840, "net", 120, 1, "root", "/sbin/init", ("process 1 systemd",) * 120),
    Row(4026532400, "net", 0, None, None, None, ("mount /run/netns/x mnt:[4026531832]",)),
]


def test_the_table_aligns_numbers_right_and_words_left_as_lsns_does() -> None:
    assert table(ROWS) == (
        "        NS TYPE NPROCS PID USER HOLDERS            CONTAINER COMMAND\n"
        "4026531840 net     120   1 root process:120        -         /sbin/init\n"
        "4026532400 net       0   - -    mount:/run/netns/x -         -\n"
    )
    # Without the heading the columns are as wide as the cells alone, as with lsns -n.
    assert table(ROWS, headings=False) == (
        "4026531840 net 120 1 root process:120        - /sbin/init\n4026532400 net   0 - -    mount:/run/netns/x - -\n"
    )


def test_json_has_lsns_fields_and_types_then_the_holders() -> None:
    parsed = json.loads(as_json(ROWS[1:]))
    assert parsed == {
        "namespaces": [
            {
                "ns": 4026532400,
                "type": "net",
                "nprocs": 0,
                "pid": None,
                "user": None,
                "command": None,
                "holders": ["mount /run/netns/x mnt:[4026531832]"],
                "container": None,
            }
        ]
    }


ENTRIES = [
    Listed(HOST, ()),
    Listed(HOST_NET, (), owner=HOST),
    Listed(CHILD, (), owner=HOST, parent=HOST),
    Listed(CHILD_NET, (), owner=CHILD),
    Listed(GRANDCHILD, (), owner=CHILD, parent=CHILD),
    Listed(LOST, (), owner=NsKey("user", 4026539999)),  # its owner is hidden from this reader
]


def test_the_tree_hangs_each_namespace_under_its_owner_drawn_as_lsns_draws_it() -> None:
    placed = tree_order(ENTRIES)
    assert [(p.entry.key, p.depth, p.drawn) for p in placed] == [
        (HOST, 0, "4026531837"),
        (HOST_NET, 1, "├─4026531840"),
        (CHILD, 1, "└─4026532290"),
        (CHILD_NET, 2, "  ├─4026532292"),
        (GRANDCHILD, 2, "  └─4026532500"),
        (LOST, 0, "4026532400"),  # a root of its own
    ]


def test_a_middle_branch_keeps_its_line_going_past_its_children() -> None:
    entries = [ENTRIES[0], ENTRIES[2], ENTRIES[3], ENTRIES[1]]  # CHILD before HOST_NET
    assert [p.drawn for p in tree_order(entries)] == ["4026531837", "├─4026532290", "│ └─4026532292", "└─4026531840"]


def test_the_tree_json_nests_children_as_lsns_does() -> None:
    placed = tree_order(ENTRIES[:4])
    rows = [Row(p.entry.key.inode, p.entry.key.type, 0, None, None, None, ()) for p in placed]
    parsed = json.loads(as_json_tree([p.depth for p in placed], rows))
    assert [(n["ns"], [c["ns"] for c in n.get("children", [])]) for n in parsed["namespaces"]] == [
        (HOST.inode, [HOST_NET.inode, CHILD.inode])
    ]
    child = parsed["namespaces"][0]["children"][1]
    assert [c["ns"] for c in child["children"]] == [CHILD_NET.inode]
    assert "children" not in child["children"][0]


def test_a_chosen_namespace_keeps_the_user_namespaces_above_it() -> None:
    assert [e.key for e in with_owners(ENTRIES, [ENTRIES[3]])] == [HOST, CHILD, CHILD_NET]


def test_each_mount_has_its_own_events_socket() -> None:
    assert events_socket("/run/namespaces") == "/run/nsfs/run-namespaces.events"
    assert events_socket("/tmp/a/mnt") == "/run/nsfs/tmp-a-mnt.events"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("9687", ("0.0.0.0", 9687)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9687", ("::1", 9687))],
)
def test_metrics_listens_where_it_is_told(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "0", "65536", "host:", "x:y", "-1"])
def test_a_bad_metrics_address_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match=f"^metrics must be \\[ADDRESS:\\]PORT .*, not {text!r}$"):
        parse_listen(text)


# What lsns (util-linux 2.38.1, LC_ALL=C.UTF-8) printed for a process with each of these arguments:
# the characters iswprint() refuses, and bytes that are not UTF-8, as \xHH; a backslash as it is,
# but before an x.
LSNS_PRINTED = [
    (b"\x7f", "\\x7f"),
    ("\u0085".encode(), "\\xc2\\x85"),  # a C1 control
    ("\u009f".encode(), "\\xc2\\x9f"),
    ("\u2028\u2029".encode(), "\\xe2\\x80\\xa8\\xe2\\x80\\xa9"),  # line and paragraph separators
    ("\u0378".encode(), "\\xcd\\xb8"),  # unassigned
    ("\uffff\ufffe".encode(), "\\xef\\xbf\\xbf\\xef\\xbf\\xbe"),  # noncharacters
    ("\U0002fffe\U0010ffff".encode(), "\\xf0\\xaf\\xbf\\xbe\\xf4\\x8f\\xbf\\xbf"),
    ("\u00a0\u00ad\u200b\u2060\ufeff\u061c\U000e0001".encode(), "\u00a0\u00ad\u200b\u2060\ufeff\u061c\U000e0001"),
    ("\ue000\U000f0000".encode(), "\ue000\U000f0000"),  # private use
    ("\u3000\u4e2d\u0300\U0001f600\U0001f1e6\U0001d173".encode(), "\u3000\u4e2d\u0300\U0001f600\U0001f1e6\U0001d173"),
    (b"bs\\x41", "bs\\x5cx41"),
    (b"bs\\y", "bs\\y"),
    (b"end\\", "end\\"),
    (b"tab\there", "tab\\x09here"),
    (b"cr\rx", "cr\\x0dx"),
    (b"nl\nx", "nl\\x0ax"),
    (b"esc\x1b[1m", "esc\\x1b[1m"),
    (b"surr\xed\xa0\x80x", "surr\\xed\\xa0\\x80x"),  # an encoded surrogate is not UTF-8
    (b"over\xc0\x80x", "over\\xc0\\x80x"),  # nor an overlong NUL
    (b"trunc\xe4\xb8", "trunc\\xe4\\xb8"),
    (b"bad\xff\xfeutf", "bad\\xff\\xfeutf"),
]


@pytest.mark.parametrize(("argument", "printed"), LSNS_PRINTED)
def test_a_command_line_cell_is_what_lsns_printed(argument: bytes, printed: str) -> None:
    assert cell(command_line(b"sh\0" + argument + b"\0")) == f"sh {printed}"


def test_the_command_line_is_read_as_lsns_reads_it() -> None:
    # Every NUL a space but the last byte, which lsns drops: empty arguments at the end show.
    assert command_line(b"a\0\0mid  dle\0\0\0") == "a  mid  dle  "
    assert command_line(b"") == ""
    # lsns reads 8 KiB of it and drops the last byte read.
    assert command_line(b"a" * 10000 + b"\0") == "a" * 8191
    # A character cut there is bytes that are not UTF-8.
    assert cell(command_line(b"a" * 8189 + "\u4e2d".encode() + b"\0")) == "a" * 8189 + "\\xe4\\xb8"


def test_json_text_is_the_text_but_bytes_that_are_not_utf8() -> None:
    raw = command_line(b'a\nb\x1b\\x"q\xff\0')
    assert json.loads(json.dumps(json_text(raw))) == 'a\nb\x1b\\x"q\\xff'


def test_a_row_is_one_line_whatever_its_command_line_holds() -> None:
    row = Row(4026532292, "uts", 1, 7, "root", command_line(b"sh\0-c\0a\nb\rc\0\0"), ("process 7 sh",))
    assert table([row], headings=False) == "4026532292 uts 1 7 root process:1 - sh -c a\\x0ab\\x0dc \n"
    assert json.loads(as_json([row]))["namespaces"][0]["command"] == "sh -c a\nb\rc "


def test_a_command_name_from_holders_is_shown_escaped_too() -> None:
    entry = Listed(CHILD_NET, ("process 12 a\\012b\\134x\x1b",))  # as the daemon escapes a name
    row = row_of(entry, lambda _pid: (0, ""))
    assert row.command == "a\nb\\x\x1b"
    assert row.cells()["COMMAND"] == "a\\x0ab\\x5cx\\x1b"


def test_a_holders_file_splits_at_newlines_only() -> None:
    # The daemon escapes a newline in a name; \x0c, \x1c, \x85 and U+2028 it leaves as they are.
    text = "process 7 a\x0cb\x1cc\x85d\u2028e\rf\nfd 7 3\n"
    assert holder_lines(text) == ("process 7 a\x0cb\x1cc\x85d\u2028e\rf", "fd 7 3")
    assert holder_lines("") == ()


def test_nsfs_paths_are_cells_of_their_own() -> None:
    row = Row(4026532292, "net", 0, None, None, None, (), "unassigned", ("/run/netns/a\nb", "/run/netns/c"))
    assert row.cells()["NSFS"] == "/run/netns/a\\x0ab,/run/netns/c"
    assert row.as_json(net=True)["nsfs"] == "/run/netns/a\nb\n/run/netns/c"


def test_a_dot_label_escapes_backslashes_and_quotes_a_trailing_backslash_too() -> None:
    assert dot_label(["net:[1]", 'say "hi"\\', "a\nb"]) == '"net:[1]\\nsay \\"hi\\"\\\\\\na\\\\x0ab"'
    # A long line is cut into physical lines, which the DOT grammar joins again.
    long = dot_label(["x" * 3000])
    assert long.count("\\\n") == 2
    assert long.replace("\\\n", "") == '"' + "x" * 3000 + '"'
