"""lsnsfs's layouts of its rows: lsns's aligned table, lsns -J's JSON (flat or as a tree), the
tree order of entries (-T), Graphviz source (--dot), and the kernel's limits beside what each
user owns (--limits).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import NsKey, charged_uid
from .mounted import Listed, summary_words
from .rows import ProcessFacts, Row, row_of, user_name
from .shown import dot_label

COLUMNS = ("NS", "TYPE", "NPROCS", "PID", "USER", "HOLDERS", "CONTAINER", "COMMAND")
# With -t net, lsns adds NETNSID and NSFS after USER, and so does lsnsfs.
NET_COLUMNS = ("NS", "TYPE", "NPROCS", "PID", "USER", "NETNSID", "NSFS", "HOLDERS", "CONTAINER", "COMMAND")
_RIGHT = frozenset({"NS", "NPROCS", "PID", "NETNSID"})  # numbers, aligned right as lsns does


def table(rows: Sequence[Row], headings: bool = True, ns_cells: Sequence[str] | None = None, net: bool = False) -> str:
    """The columns aligned as lsns aligns them (NETNSID and NSFS too if `net`); `ns_cells`
    replaces the NS column (a tree)."""
    columns = NET_COLUMNS if net else COLUMNS
    cells = [row.cells() for row in rows]
    if ns_cells is not None:
        for cell, ns in zip(cells, ns_cells, strict=True):
            cell["NS"] = ns
    lines = [dict(zip(columns, columns, strict=True))] if headings else []
    lines += cells
    widths = {c: max(len(line[c]) for line in lines) for c in columns}
    right = _RIGHT - {"NS"} if ns_cells is not None else _RIGHT
    *padded, last = columns
    out = []
    for line in lines:
        words = [line[c].rjust(widths[c]) if c in right else line[c].ljust(widths[c]) for c in padded]
        # The last column as it is, as lsns prints it: not padded, nor stripped of the spaces
        # a command line may end with.
        out.append(" ".join([*words, line[last]]) + "\n")
    return "".join(out)


def as_json(rows: Iterable[Row], net: bool = False) -> str:
    return json.dumps({"namespaces": [row.as_json(net) for row in rows]}, indent=3) + "\n"


def as_json_tree(depths: Sequence[int], rows: Sequence[Row], net: bool = False) -> str:
    """lsns -J -T's shape: each namespace with the namespaces it owns as its `children`."""
    top: list[dict[str, Any]] = []
    levels = [top]
    nodes = []
    for depth, row in zip(depths, rows, strict=True):
        del levels[depth + 1 :]
        node = row.as_json(net)
        levels[depth].append(node)
        levels.append(node.setdefault("children", []))
        nodes.append(node)
    for node in nodes:
        if not node["children"]:
            del node["children"]
    return json.dumps({"namespaces": top}, indent=3) + "\n"


@dataclass(frozen=True, slots=True)
class Placed:
    """An entry's place in the tree: its depth, and its NS cell with the tree drawn in front."""

    entry: Listed
    depth: int
    drawn: str


def tree_order(entries: Sequence[Listed]) -> list[Placed]:
    """Depth first from each root, each namespace under the user namespace that owns it, with
    the tree drawn in front of its inode as lsns -T draws it. A root is an entry whose owner
    the reader cannot see (the initial user namespace; a container's own)."""
    by_key = {e.key: e for e in entries}
    children: dict[NsKey, list[Listed]] = {}
    roots = []
    for entry in entries:
        if entry.owner in by_key:
            children.setdefault(entry.owner, []).append(entry)
        else:
            roots.append(entry)
    out: list[Placed] = []

    def walk(entry: Listed, prefix: str, last: bool | None, depth: int) -> None:
        branch = "" if last is None else "└─" if last else "├─"
        out.append(Placed(entry, depth, f"{prefix}{branch}{entry.key.inode}"))
        below = children.get(entry.key, [])
        deeper = prefix + ("" if last is None else "  " if last else "│ ")
        for i, child in enumerate(below):
            walk(child, deeper, i == len(below) - 1, depth + 1)

    for root in roots:
        walk(root, "", None, 0)
    return out


def with_owners(entries: Sequence[Listed], chosen: Iterable[Listed]) -> list[Listed]:
    """`chosen` and the user namespaces above them: the skeleton a tree hangs on."""
    by_key = {e.key: e for e in entries}
    keep: set[NsKey] = set()
    for entry in chosen:
        key: NsKey | None = entry.key
        while key is not None and key in by_key and key not in keep:
            keep.add(key)
            key = by_key[key].owner
    return [e for e in entries if e.key in keep]


def dot(entries: Sequence[Listed], facts: ProcessFacts) -> str:
    """Graphviz source: a node per namespace (user namespaces as ellipses) with what holds it,
    an arrow from each user namespace to what it owns, a dashed one from a pid namespace to
    its children. Written here rather than through a DOT library: labels carry whatever a
    process named itself, and only dot_label quotes every such text right."""
    shown = {e.key for e in entries}
    out = ["digraph namespaces {", "\tgraph [rankdir=LR]", "\tnode [shape=box]"]
    for entry in entries:
        label = dot_label(label_lines(entry, row_of(entry, facts)))
        shape = "ellipse" if entry.key.type == "user" else "box"
        out.append(f"\t{_node_id(entry.key)} [label={label} shape={shape}]")
    for entry in entries:
        if entry.owner in shown:
            out.append(f"\t{_node_id(entry.owner)} -> {_node_id(entry.key)}")
        if entry.key.type == "pid" and entry.parent in shown:
            out.append(f"\t{_node_id(entry.parent)} -> {_node_id(entry.key)} [style=dashed]")
    return "\n".join([*out, "}"]) + "\n"


def label_lines(entry: Listed, row: Row) -> list[str]:
    """A node's label, line by line: the name, what holds it, and the process shown with the
    start of its command line (raw text: dot_label escapes it)."""
    lines = [entry.name, " ".join(summary_words(entry.holders)) or "(no holder seen)"]
    if row.command:
        lines.append(f"{row.pid} {row.command[:LABEL_COMMAND]}")
    return lines


LABEL_COMMAND = 40  # characters of a command line a node shows


def _node_id(key: NsKey) -> str:
    # Not the name itself: "net:[N]" would read as a node and a port in an edge.
    return f"{key.type}_{key.inode}"


# -- the command --------------------------------------------------------------


def limits_table(
    entries: Sequence[Listed], chosen: Iterable[Listed], limits: dict[str, int], headings: bool = True
) -> str:
    """How many of the `chosen` namespaces of each type count against each user's limit, beside
    the kernel's limit (/proc/sys/user/max_TYPE_namespaces), as far as the reader sees them (the
    user namespaces among `entries` say whom each counts against): one line per type and user,
    the fullest first."""
    users = {e.key: (e.parent, e.owner_uid) for e in entries if e.key.type == "user"}
    counted: Counter[tuple[str, int]] = Counter()
    for e in chosen:
        if e.key.type != "user" or e.parent is not None:  # the top user namespace was made by none
            counted[e.key.type, charged_uid(e.key if e.key.type == "user" else e.owner, users)] += 1
    rows = []
    for (nstype, uid), number in counted.items():
        limit = limits.get(nstype)
        use = "-" if not limit else f"{100 * number / limit:.1f}%"
        rows.append((number / limit if limit else 0.0, nstype, user_name(uid), str(number), str(limit or "-"), use))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    lines = [("TYPE", "USER", "NAMESPACES", "LIMIT", "USE")] if headings else []
    lines += [r[1:] for r in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    right = (False, False, True, True, True)
    return "".join(
        " ".join(w.rjust(n) if r else w.ljust(n) for w, n, r in zip(line, widths, right, strict=True)).rstrip() + "\n"
        for line in lines
    )
