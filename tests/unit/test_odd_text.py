"""Any command line, command name and bind-mount path, drawn at random: lsnsfs's table row
stays one line that gives back every byte, -J is JSON whose command is lsns -J's, --dot is DOT
that the real dot reads, whose labels come back as the text. Rows and pictures are built from
the drawn text directly (row_of, dot), with no process per example; tests/test_ecosystem.py
holds one real process to lsns."""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsfs_fuse.model import Creds, Holder, HolderKind, NsKey, holder_line
from nsfs_fuse.mountinfo import escape
from nsfs_fuse.readers.formats import as_json, dot, table
from nsfs_fuse.readers.mounted import Listed, holder_lines
from nsfs_fuse.readers.rows import Row, command_line, row_of
from tests.support.lsns import lsns_json

PID = 4242
UTS = NsKey("uts", 4026532311)
USER = NsKey("user", 4026531837)

# What makes text odd: every control character, backslashes before anything (an escape lsns
# might print: \x0a), quotes, DOT's and the label's own escapes, line separators, unassigned
# code points; among any other character.
_ODD = ["\\", "\\x", "\\x0a", "\\x5c", '"', '\\"', "'", "\\N", "\\G", "\\n", "\\l", "\\\n", "\n", "\r", "\t"]
_ODD += ["\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u0378", "\uffff", " ", "<", ">", "&", "{", "}", ";", ",", "="]
_PIECE = st.one_of(st.sampled_from(_ODD), st.characters(exclude_categories=["Cs"]))


def _text(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    return st.lists(_PIECE, min_size=min_size, max_size=max_size).map("".join)


_TEXT = _text()


def _long(text: str, size: int) -> str:
    """`text` over and over, to `size` characters at least (hypothesis draws less at once)."""
    return text * (size // len(text) + 1)


_LONG_TEXT = _text(min_size=1, max_size=10)
# argv words as bytes: odd text, raw bytes (not UTF-8, mostly), or long (across lsns's 8 KiB).
_WORD = st.one_of(
    _TEXT.map(str.encode),
    st.binary(max_size=40),
    _LONG_TEXT.map(lambda text: _long(text, 8200).encode()),
).map(lambda word: word.replace(b"\0", b""))  # NUL ends a word: none can hold one
_ARGV = st.lists(_WORD, max_size=4)
# A command name is at most 15 bytes (no NUL), which the daemon reads with bad bytes replaced.
_COMM = st.one_of(_TEXT.map(str.encode), st.binary(max_size=15)).map(
    lambda raw: raw.replace(b"\0", b"")[:15].decode("utf-8", "replace")
)
# Where a bind mount holds it, if one does: long paths make labels past dot's 16 KiB token.
_PATH = st.one_of(st.none(), _TEXT, _LONG_TEXT.map(lambda text: _long(text, 17000)))
MNT = "mnt:[4026531832]"


class _Reader:
    """Reads a holders file in the daemon's pid namespace."""

    def sees_name(self, name: str) -> bool:
        return True

    def pid(self, host_pid: int) -> int | None:
        return host_pid

    def reads(self, pid: int, creds: Creds | None) -> bool:
        return True  # root's view: every process's lines


def _entry(comm: str, path: str | None) -> Listed:
    """The entry as lsnsfs reads it from the mount: its `holders` file is a process line and
    perhaps a bind mount's, written as the daemon writes them."""
    holders = [Holder(HolderKind.PROCESS, PID, text=comm)]
    if path is not None:
        holders.append(Holder(HolderKind.MOUNT, text=path, ns=MNT))
    text = "".join(f"{holder_line(holder, _Reader())}\n" for holder in holders)
    return Listed(UTS, holder_lines(text), owner=USER)


def _summary(path: str | None) -> list[str]:
    """The holders summary's words: the mount's path as the file has it (octal escapes)."""
    return ["process:1"] + ([] if path is None else [f"mount:{escape(path)}"])


def _cmdline(argv: list[bytes]) -> bytes:
    """/proc/PID/cmdline of a process run with `argv`."""
    return b"".join(word + b"\0" for word in argv)


def _raw_command(cmdline: bytes, comm: str) -> bytes:
    """The bytes lsns shows as the command: its command line (8 KiB of it, the last byte read
    dropped, NULs as spaces), or the name if it has none."""
    shown = cmdline[:8192][:-1].replace(b"\0", b" ")
    return shown or comm.encode()


def _lsns_bytes(cell: str) -> bytes:
    """A cell lsns printed, back to the bytes it shows: its \\xHH are bytes."""
    parts = re.split(r"\\x([0-9a-f]{2})", cell)
    return b"".join(bytes([int(part, 16)]) if i % 2 else part.encode() for i, part in enumerate(parts))


def _lsns_prints(char: str) -> bool:
    """Whether lsns prints a character as it is (iswprint() in C.UTF-8: tests/unit/test_lsnsfs.py)."""
    return unicodedata.category(char) not in ("Cc", "Zl", "Zp", "Cn", "Cs")


_JSON_SHORT = {0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}


def _lsns_json_string(raw: bytes) -> bytes:
    """A string as lsns -J writes it (libsmartcols' fputs_quoted_json): quotes and backslashes
    escaped, control characters as JSON escapes, every other byte as it is."""
    out = bytearray(b'"')
    for byte in raw:
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif byte < 0x20:
            out += _JSON_SHORT.get(byte, b"\\u%04x" % byte)
        else:
            out.append(byte)
    return bytes(out + b'"')


def _label_text(label: str) -> str:
    """What a label shows for a DOT label string: \\\\ is a backslash, \\n a line break."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), label, flags=re.S)


def _drawn(argv: list[bytes], comm: str, path: str | None) -> tuple[Listed, Row, bytes]:
    cmdline = _cmdline(argv)
    entry = _entry(comm, path)
    row = row_of(entry, lambda pid: (0, command_line(cmdline)) if pid == PID else None)
    return entry, row, _raw_command(cmdline, comm)


_SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_ARGV, _COMM, _PATH)
def test_a_row_is_one_line_that_gives_back_every_byte(argv: list[bytes], comm: str, path: str | None) -> None:
    _, row, raw = _drawn(argv, comm, path)
    # No line break of any kind: splitlines() knows them all.
    (line,) = table([row], headings=False).splitlines()
    *cells, rest = line.split(" ", 5)
    holders, container, command = rest.split(" ", 2)  # the daemon's escapes leave no space in a path
    assert cells == [str(UTS.inode), "uts", "1", str(PID), "root"]
    assert container == "-"
    assert all(_lsns_prints(char) for char in holders + command), line
    assert _lsns_bytes(holders) == ",".join(_summary(path)).encode("utf-8", "surrogateescape")
    assert _lsns_bytes(command) == (raw or b"-")  # nothing to show: lsnsfs's blank


@_SETTINGS
@given(_ARGV, _COMM, _PATH)
def test_json_is_valid_and_its_command_is_lsns_json_s(argv: list[bytes], comm: str, path: str | None) -> None:
    _, row, raw = _drawn(argv, comm, path)
    text = as_json([row])
    text.encode("utf-8")  # valid UTF-8: no lone surrogate
    parsed: dict[str, Any] = json.loads(text)
    (shown,) = parsed["namespaces"]
    assert shown["command"] == lsns_json(_lsns_json_string(raw))
    assert shown["holders"] == list(row.holders)  # the daemon's lines: text already


def _dot_json(source: str) -> dict[str, Any]:
    drawn = subprocess.run(["dot", "-Tjson"], input=source.encode(), capture_output=True, check=False, timeout=60)
    assert (drawn.returncode, drawn.stderr) == (0, b""), (drawn.stderr, source)
    parsed: dict[str, Any] = json.loads(drawn.stdout)
    return parsed


@_SETTINGS
@given(_ARGV, _COMM, _PATH)
def test_dot_reads_the_picture_and_each_label_comes_back(argv: list[bytes], comm: str, path: str | None) -> None:
    entry, row, _ = _drawn(argv, comm, path)
    owner = Listed(USER, ("process 1 init",))
    graph = _dot_json(dot([owner, entry], lambda pid: (0, command_line(_cmdline(argv))) if pid == PID else None))
    assert [(e["tail"], e["head"]) for e in graph["edges"]] == [(0, 1)]
    labels = {obj["name"]: _label_text(obj["label"]) for obj in graph["objects"]}
    name, holders, *process = labels["uts_4026532311"].split("\n")
    assert name == UTS.name
    assert _lsns_bytes(holders) == " ".join(_summary(path)).encode("utf-8", "surrogateescape")
    if not row.command:  # no command line, no name: no process line
        assert process == []
        return
    pid, _, command = process[0].partition(" ")
    assert pid == str(PID)
    assert all(_lsns_prints(char) for char in command)
    assert _lsns_bytes(command) == row.command[:40].encode("utf-8", "surrogateescape")
