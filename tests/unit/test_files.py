"""The files of an entry, from the table: which an entry has for a reader, and what they say."""

from __future__ import annotations

from nsfs_fuse.files import BY_NAME, BY_SLOT, FILES, SLOT_OF, SLOTS, files_of
from nsfs_fuse.model import Entry, NsKey

USER0, USER1, PID0, PID1 = NsKey("user", 1), NsKey("user", 2), NsKey("pid", 3), NsKey("pid", 4)


class Reading:
    def __init__(self, sees: set[NsKey], uid_map: dict[int, int] | None = None) -> None:
        self._sees = sees
        self._uid_map = uid_map

    def sees(self, key: NsKey | None) -> bool:
        return key in self._sees

    def uid(self, kuid: int) -> int | None:
        return None if self._uid_map is None else self._uid_map.get(kuid, 65534)

    def pin_path(self, pin: int) -> str:
        return f"/proc/42/fd/{pin}"

    def holders(self, entry: Entry) -> str:
        return f"process 1 for {entry.name}\n"

    def containers(self, entry: Entry) -> str:
        return f"podman 3f2a web for {entry.name}\n"


def entry(
    key: NsKey,
    *,
    owner: NsKey | None = None,
    parent: NsKey | None = None,
    pin: int | None = 7,
    ns_id: int | None = 99,
    creator_uid: int | None = None,
) -> Entry:
    return Entry(key, 1, pin, None, ns_id, owner, parent, creator_uid, 0)


def names(e: Entry, reading: Reading) -> list[str]:
    return [f.name for f in files_of(e, reading)]


def content(e: Entry, reading: Reading) -> dict[str, str | None]:
    return {f.name: f.content(e, reading) for f in files_of(e, reading)}


def test_slots_are_stable_and_fit() -> None:
    assert [(SLOT_OF[f.name], f.name) for f in FILES] == [
        (1, "nstype"),
        (2, "owner"),
        (3, "parent"),
        (4, "owner_uid"),
        (5, "id"),
        (6, "ns"),
        (7, "holders"),
        (8, "containers"),
    ]
    assert len(FILES) < SLOTS
    assert all(BY_SLOT[SLOT_OF[f.name]] is f is BY_NAME[f.name] for f in FILES)


def test_a_user_namespace_seen_from_its_parent() -> None:
    e = entry(USER1, owner=USER0, parent=USER0, creator_uid=1000)
    reading = Reading({USER0, USER1}, {1000: 0})
    assert content(e, reading) == {
        "nstype": "user\n",
        "owner": "../user:[1]",
        "parent": "../user:[1]",
        "owner_uid": "0\n",
        "id": "99\n",
        "ns": "/proc/42/fd/7",
        "holders": "process 1 for user:[2]\n",
        "containers": "podman 3f2a web for user:[2]\n",
    }


def test_a_container_sees_no_link_to_what_it_cannot_see() -> None:
    e = entry(USER1, owner=USER0, parent=USER0, creator_uid=1000)
    assert names(e, Reading({USER1}, {})) == ["nstype", "owner_uid", "id", "ns", "holders", "containers"]
    assert content(e, Reading({USER1}, {}))["owner_uid"] == "65534\n"


def test_a_pid_namespace_has_a_parent_other_types_do_not() -> None:
    everything = Reading({USER0, PID0})
    assert names(entry(PID1, owner=USER0, parent=PID0), everything) == [
        "nstype",
        "owner",
        "parent",
        "id",
        "ns",
        "holders",
        "containers",
    ]
    assert names(entry(NsKey("net", 5), owner=USER0), everything) == [
        "nstype",
        "owner",
        "id",
        "ns",
        "holders",
        "containers",
    ]


def test_without_id_or_pin_there_is_no_id_or_ns() -> None:
    assert names(entry(NsKey("net", 5), owner=USER0, pin=None, ns_id=None), Reading({USER0})) == [
        "nstype",
        "owner",
        "holders",
        "containers",
    ]


def test_owner_uid_of_a_reader_gone_is_none() -> None:
    e = entry(USER1, owner=USER0, parent=USER0, creator_uid=1000)
    assert BY_NAME["owner_uid"].content(e, Reading({USER1}, None)) is None


def test_only_owner_uid_holders_and_containers_differ_by_reader_and_only_owner_parent_ns_are_links() -> None:
    assert [f.name for f in FILES if f.per_reader] == ["owner_uid", "holders", "containers"]
    assert [f.name for f in FILES if f.is_link] == ["owner", "parent", "ns"]
