"""Nothing on the mount can be changed, and odd names are simply not there."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from tests.support.daemon import Daemon
from tests.support.oracles import ns_of


def _net(nsfs: Daemon) -> str:
    return ns_of(os.getpid(), "net")


# (what, operation on (mountpoint, entry directory, a file in it, a link in it))
CHANGES: list[tuple[str, Callable[[str, str, str, str], object]]] = [
    ("open a file for writing", lambda m, d, f, ln: os.open(f, os.O_WRONLY)),
    ("open a file read-write", lambda m, d, f, ln: os.open(f, os.O_RDWR)),
    ("truncate on open", lambda m, d, f, ln: os.open(f, os.O_RDONLY | os.O_TRUNC)),
    ("truncate", lambda m, d, f, ln: os.truncate(f, 0)),
    ("create a file in the root", lambda m, d, f, ln: os.open(f"{m}/new", os.O_CREAT | os.O_WRONLY, 0o644)),
    ("create a file in an entry", lambda m, d, f, ln: os.open(f"{d}/new", os.O_CREAT | os.O_WRONLY, 0o644)),
    ("mkdir", lambda m, d, f, ln: os.mkdir(f"{m}/net:[1]")),
    ("rmdir an entry", lambda m, d, f, ln: os.rmdir(d)),
    ("unlink a file", lambda m, d, f, ln: os.unlink(f)),
    ("unlink a link", lambda m, d, f, ln: os.unlink(ln)),
    ("rename an entry", lambda m, d, f, ln: os.rename(d, f"{m}/renamed")),
    ("rename a file", lambda m, d, f, ln: os.rename(f, f"{d}/renamed")),
    ("symlink", lambda m, d, f, ln: os.symlink("/", f"{d}/link")),
    ("hard link", lambda m, d, f, ln: os.link(f, f"{d}/hard")),
    ("chmod", lambda m, d, f, ln: os.chmod(f, 0o666)),
    ("chown", lambda m, d, f, ln: os.chown(f, 1000, 1000)),
    ("utime", lambda m, d, f, ln: os.utime(f, (0, 0))),
    ("setxattr", lambda m, d, f, ln: os.setxattr(f, "user.x", b"1")),
    ("removexattr", lambda m, d, f, ln: os.removexattr(f, "user.x")),
    ("mknod", lambda m, d, f, ln: os.mknod(f"{d}/fifo", 0o600 | 0o010000)),
]


@pytest.mark.parametrize(("what", "change"), CHANGES, ids=[c[0] for c in CHANGES])
def test_every_change_is_erofs(nsfs: Daemon, what: str, change: Callable[[str, str, str, str], object]) -> None:
    entry = str(nsfs.path(_net(nsfs)))
    before = sorted(os.listdir(entry)), nsfs.read(_net(nsfs), "nstype")
    with pytest.raises(OSError) as raised:
        change(str(nsfs.mountpoint), entry, f"{entry}/nstype", f"{entry}/owner")
    assert raised.value.errno == errno.EROFS, f"{what}: {raised.value}"
    # Nothing changed, and the daemon still answers.
    assert (sorted(os.listdir(entry)), nsfs.read(_net(nsfs), "nstype")) == before


MALFORMED = [
    "net:[",
    "net:[]",
    "net:[abc]",
    "net:[-1]",
    "net:[+4026531833]",
    "net:[04026531833]",
    "net:[99999999999999999999]",
    "net:[99999999999]",
    "net:[4294967296]",
    "bogus:[1]",
    "NET:[4026531833]",
    "net:[4026531833] ",
    "net:[4026531833]x",
    "net[4026531833]",
    "pid_for_children:[4026531836]",
    "x" * 255,
    ".hidden",
]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_names_are_enoent(nsfs: Daemon, name: str) -> None:
    with pytest.raises(FileNotFoundError):
        os.stat(nsfs.path(name))
    assert _net(nsfs) in nsfs.names()


def test_unknown_files_in_an_entry_are_enoent(nsfs: Daemon) -> None:
    entry = nsfs.path(_net(nsfs))
    for name in ("parent", "owner_uid", "holders_x", "nstype2", "NSTYPE"):
        with pytest.raises(FileNotFoundError):
            os.lstat(entry / name)
    with pytest.raises(NotADirectoryError):
        os.stat(entry / "nstype" / "x")


def test_reads_at_any_offset_and_size(nsfs: Daemon) -> None:
    path = nsfs.path(_net(nsfs), "nstype")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 1 << 20, 0) == b"net\n"
        assert os.pread(fd, 2, 1) == b"et"
        assert os.pread(fd, 4096, 4) == b""
        assert os.pread(fd, 4096, 1 << 40) == b""
    finally:
        os.close(fd)


# (what, path under the mount, the errno every lookup of it gives)
ODD_PATHS = [
    ("a name one byte too long", "x" * 256, errno.ENAMETOOLONG),
    ("a namespace name padded to the limit", "net:[4026531833]" + "0" * 239, errno.ENOENT),
    ("a file of a file", "{net}/nstype/x", errno.ENOTDIR),
    ("a link of a link", "{net}/owner/owner_uid/x", errno.ENOTDIR),
]


@pytest.mark.parametrize(("what", "path", "error"), ODD_PATHS, ids=[p[0] for p in ODD_PATHS])
def test_odd_paths(nsfs: Daemon, what: str, path: str, error: int) -> None:
    with pytest.raises(OSError) as raised:
        os.stat(nsfs.path(path.format(net=_net(nsfs))))
    assert raised.value.errno == error, what
    assert _net(nsfs) in nsfs.names()


def test_dot_and_dot_dot_chains_resolve_like_any_directory(nsfs: Daemon) -> None:
    net, user = _net(nsfs), ns_of(os.getpid(), "user")
    chain = nsfs.path(net, ".", "..", net, "..", user, ".", "nstype")
    assert chain.read_text() == "user\n"
    assert os.path.realpath(nsfs.path(net, "..", "..")) == str(nsfs.mountpoint.parent)
    # Following owner and then .. lands back in the mount's root.
    assert os.stat(nsfs.path(net, "owner", "..")).st_ino == os.stat(nsfs.mountpoint).st_ino


def test_xattrs_are_not_supported_and_cannot_be_set(nsfs: Daemon) -> None:
    path = nsfs.path(_net(nsfs), "nstype")
    for call in (lambda: os.getxattr(path, "user.x"), lambda: os.listxattr(path)):
        with pytest.raises(OSError) as raised:
            call()
        assert raised.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as raised:
        os.setxattr(path, "user.x", b"1")
    assert raised.value.errno == errno.EROFS
