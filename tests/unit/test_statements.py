"""What each file was last stated as to the kernel: kept for the open and fstat that follow,
those of open files whatever comes after."""

from __future__ import annotations

from nsfs_fuse.statements import STATED_BYTES, STATED_KEPT, Stated, Statements


def stated(content: bytes = b"x\n") -> Stated:
    return Stated((None, 1), content, 0, 0)


def test_the_least_recently_stated_go_first_and_open_ones_stay() -> None:
    statements = Statements()
    for inode in range(1, 4):
        statements.put(inode, stated())
    statements.opened(1)
    statements.put(2, stated())  # stated again: now the most recent
    for inode in range(100, 100 + STATED_KEPT - 2):
        statements.put(inode, stated())
    assert statements.get(3) is None  # the least recently stated that is not open
    assert statements.get(1) is not None and statements.get(2) is not None
    statements.put(1000, stated())
    assert statements.get(1) is not None and statements.get(2) is None
    statements.released(1)
    statements.put(1001, stated())
    assert statements.get(1) is None


def test_a_file_stated_twice_keeps_its_latest_content() -> None:
    statements = Statements()
    statements.put(7, stated(b"old\n"))
    statements.put(7, stated(b"new\n"))
    found = statements.get(7)
    assert found is not None and found.content == b"new\n"


def test_bytes_are_bounded_too() -> None:
    statements = Statements()
    big = b"x" * (STATED_BYTES // 3)
    for inode in range(1, 5):
        statements.put(inode, stated(big))
    assert statements.get(1) is None and all(statements.get(i) is not None for i in (2, 3, 4))
