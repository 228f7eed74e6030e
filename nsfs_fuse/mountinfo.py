"""/proc/PID/mountinfo lines, and the octal escaping it uses: pure text, no files read.

mountinfo escapes space, tab, newline and backslash as \\ooo; the `holders` file
uses the same convention for the command names and paths it prints, so that a
shell's `read` splits its lines right (docs/design.md, "The filesystem").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

_ESCAPED = " \t\n\\"
_ESCAPES = str.maketrans({c: f"\\{ord(c):03o}" for c in _ESCAPED})


def escape(text: str) -> str:
    """Octal-escape what would break a whitespace split, as mountinfo does."""
    return text.translate(_ESCAPES)


def unescape(field: str) -> str:
    """Undo mountinfo's \\ooo escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class Mount(NamedTuple):
    """The fields of one mountinfo line that nsfs uses."""

    root: str  # field 4: for an nsfs bind mount, the namespace's name ("net:[4026532178]")
    mountpoint: str  # field 5, unescaped
    fstype: str  # the first field after the " - " separator


def parse(lines: Iterable[str]) -> Iterator[Mount]:
    """Each well-formed line of a mountinfo file; a line without the separator is skipped."""
    for line in lines:
        # Fields are apart by one space. Not str.split(): it also splits at \x0c, \x1c or \x85,
        # which mountinfo leaves as they are in a path.
        fields = line.rstrip("\n").split(" ")
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if sep < 5 or len(fields) <= sep + 1:
            continue
        yield Mount(fields[3], unescape(fields[4]), fields[sep + 1])
