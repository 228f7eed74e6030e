"""mountinfo lines and the escaping `holders` shares with them."""

from __future__ import annotations

import pytest

from nsfs_fuse.mountinfo import Mount, escape, parse, unescape


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a b", "a\\040b"),
        ("tab\there", "tab\\011here"),
        ("new\nline", "new\\012line"),
        ("back\\slash", "back\\134slash"),
        ("ünïcode", "ünïcode"),
        ("", ""),
    ],
)
def test_escape_and_unescape_are_inverse(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped
    assert unescape(escaped) == raw


def test_unescape_leaves_what_is_not_an_escape() -> None:
    assert unescape("a\\04") == "a\\04"
    assert unescape("a\\x41") == "a\\x41"
    assert unescape("end\\") == "end\\"


LINES = [
    "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n",
    "620 29 0:4 net:[4026532178] /run/netns/blue rw shared:12 - nsfs nsfs rw\n",
    "621 29 0:4 net:[4026532179] /run/my\\040ns rw - nsfs nsfs rw\n",
    "broken line without a separator\n",
    "1 2 3 - nsfs\n",  # too few fields before the separator
    "1 2 0:4 / /x rw -\n",  # nothing after the separator
    "\n",
]


def test_parse_keeps_well_formed_lines_and_unescapes_mountpoints() -> None:
    assert list(parse(LINES)) == [
        Mount("/", "/proc", "proc"),
        Mount("net:[4026532178]", "/run/netns/blue", "nsfs"),
        Mount("net:[4026532179]", "/run/my ns", "nsfs"),
    ]


def test_a_path_keeps_what_mountinfo_leaves_unescaped() -> None:
    # \x0c, \x1c, \x85 and U+2028 are whitespace to str.split() and line ends to splitlines().
    line = "622 29 0:4 net:[4026532180] /run/a\x0cb\x1cc\x85d\u2028e\udcff rw - nsfs nsfs rw\n"
    assert list(parse([line])) == [Mount("net:[4026532180]", "/run/a\x0cb\x1cc\x85d\u2028e\udcff", "nsfs")]
