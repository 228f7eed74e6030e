"""Text as lsnsfs prints it: table cells as lsns escapes them, JSON strings, DOT labels.

Command lines, command names and mount paths are whatever bytes a process chose:
newlines, escape sequences, quotes, backslashes, bytes that are not UTF-8. They
arrive here as str, with the bytes that were not UTF-8 kept as lone surrogates
(Python's "surrogateescape"), and each output escapes them its own way, so that a
table row stays one line, -J stays valid JSON and --dot stays valid DOT.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# What lsns (libsmartcols, in a UTF-8 locale) will not print as it is: what the C library's
# iswprint() refuses, which is control characters, the line and paragraph separators and
# code points Unicode has not assigned (noncharacters among them). Format characters and
# private use are printed. Surrogates are never valid UTF-8. Checked against util-linux
# 2.38's lsns (tests/unit/test_lsnsfs.py has the characters it was checked with).
_UNPRINTABLE = frozenset({"Cc", "Zl", "Zp", "Cn", "Cs"})
_SURROGATE = re.compile("[\ud800-\udfff]")


def _as_bytes(char: str) -> str:
    """`char` as \\xHH per byte: the byte it stands for if it is a surrogateescape'd one
    (U+DC80-U+DCFF), else its UTF-8 encoding."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))


def cell(text: str) -> str:
    """`text` as lsns prints it in a table: every character it would not print, and every
    byte that is not UTF-8, as \\xHH per byte, and a backslash before an `x` as \\x5c, so
    that the escapes can be told from the text. Never a line break, whatever `text` holds."""
    if text.isprintable() and "\\x" not in text:  # isprintable() refuses more: only a shortcut
        return text
    out = []
    for i, char in enumerate(text):
        if char == "\\" and text.startswith("x", i + 1):
            out.append("\\x5c")
        elif unicodedata.category(char) in _UNPRINTABLE:
            out.append(_as_bytes(char))
        else:
            out.append(char)
    return "".join(out)


def json_text(text: str) -> str:
    """`text` for a JSON string: as it is (json.dumps escapes control characters as lsns -J
    does), but for bytes that are not UTF-8, as \\xHH. lsns -J writes those bytes raw,
    which no JSON parser accepts."""
    return _SURROGATE.sub(lambda found: _as_bytes(found.group()), text)


# A quoted DOT string is one token to dot's scanner, which refuses a run of more than 16 KiB
# between two escapes (Graphviz 2.43): long labels are cut into physical lines joined by a
# backslash-newline, which the DOT grammar drops.
_DOT_PIECE = 1024
_DOT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def dot_label(lines: Sequence[str]) -> str:
    """A quoted DOT string for a label showing `lines`, each as a table cell (no control
    characters left), one under the other. In a label a backslash starts an escape (\\n,
    \\N, ...) and a quote ends the string, so both are escaped, a trailing backslash too."""
    escaped = []
    for line in lines:
        shown = cell(line)
        pieces = [shown[i : i + _DOT_PIECE] for i in range(0, len(shown), _DOT_PIECE)] or [""]
        escaped.append("\\\n".join(piece.translate(_DOT_ESCAPES) for piece in pieces))
    return '"' + "\\n".join(escaped) + '"'
