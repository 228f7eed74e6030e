"""Who sees what: the visibility rule over a snapshot, and the per-snapshot cache."""

from __future__ import annotations

import dataclasses

from nsfs_fuse.model import Entry, Holders, NsKey, Snapshot
from nsfs_fuse.visibility import NOTHING, Views, compute_view

HOST = NsKey("user", 100)
CHILD = NsKey("user", 200)  # created on the host
GRANDCHILD = NsKey("user", 300)  # created in CHILD
SIBLING = NsKey("user", 250)  # created on the host too


def e(key: NsKey, owner: NsKey | None, parent: NsKey | None = None, serial: int = 0) -> Entry:
    return Entry(key, serial or key.inode, None, None, None, owner, parent, None, 0)


ENTRIES = [
    e(HOST, None),
    e(NsKey("net", 101), HOST),
    e(CHILD, HOST, HOST),
    e(NsKey("net", 201), CHILD),
    e(GRANDCHILD, CHILD, CHILD),
    e(NsKey("uts", 301), GRANDCHILD),
    e(SIBLING, HOST, HOST),
    e(NsKey("net", 251), SIBLING),
    e(NsKey("pid", 50), None),  # owner out of the daemon's reach: belongs to the top
]


def snapshot(entries: list[Entry], generation: int = 1) -> Snapshot:
    return Snapshot.of(entries, {}, generation)


def listing(userns: NsKey) -> list[str]:
    return [x.name for x in compute_view(snapshot(ENTRIES), userns).listing]


def test_the_top_sees_everything_in_inode_order() -> None:
    assert listing(HOST) == [
        "pid:[50]",
        "user:[100]",
        "net:[101]",
        "user:[200]",
        "net:[201]",
        "user:[250]",
        "net:[251]",
        "user:[300]",
        "uts:[301]",
    ]


def test_a_child_sees_its_subtree_and_nothing_else() -> None:
    assert listing(CHILD) == ["user:[200]", "net:[201]", "user:[300]", "uts:[301]"]
    assert listing(GRANDCHILD) == ["user:[300]", "uts:[301]"]
    assert listing(SIBLING) == ["user:[250]", "net:[251]"]


def test_a_user_namespace_not_in_the_index_sees_nothing() -> None:
    assert listing(NsKey("user", 999)) == []


def test_sees_answers_by_name() -> None:
    view = compute_view(snapshot(ENTRIES), CHILD)
    assert view.sees(NsKey("net", 201))
    assert not view.sees(NsKey("net", 101))
    assert not view.sees(None)


def test_views_are_kept_for_one_generation() -> None:
    views = Views()
    first = snapshot(ENTRIES, generation=1)
    assert views.get(first, CHILD) is views.get(first, CHILD)
    only_holders_changed = dataclasses.replace(first, holders={"net:[201]": Holders(())})
    assert views.get(only_holders_changed, CHILD) is views.get(first, CHILD)
    fewer = snapshot(ENTRIES[:4], generation=2)
    assert [x.name for x in views.get(fewer, CHILD).listing] == ["user:[200]", "net:[201]"]
    assert views.get(fewer, None) is NOTHING
