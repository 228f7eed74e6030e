"""Names and pods of containers, from the engines' own state on the host (`Names`); see the
package's doc (workloads/__init__.py) for what is read where.
"""

from __future__ import annotations

import json
import os
import posixpath
import pwd
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .. import errors
from ..model import Container
from .placing import (
    CONTAINERD,
    CONTAINERD_NAMESPACE,
    CRIO,
    DOCKER,
    K8S,
    KUBERNETES,
    PODMAN,
    RUNC,
    Placed,
    safe_id,
)

STATE_READ: Final = 4 << 20  # an engine's state file larger than this is not read
REMEMBERED: Final = 4096  # containers whose names Names keeps (and as many misses)
# Seconds before a state not found is looked for again. None: an engine writes it just after
# its container's first process starts, and a read at its fork that remembered the miss gave the
# read at its exec, which is the one kept, no name (runc: seen for 30 s in a loaded run). A miss
# costs a few failed opens, paid by each read of a container's processes until it is found.
RETRY_AFTER: Final = 0.0
_LISTS_KEPT: Final = 64  # podman containers.json files kept parsed (one per storage)
# The storage drivers whose container directories containers/storage names `DRIVER-containers`.
_DRIVERS: Final = ("overlay", "vfs", "btrfs", "zfs")


# -- the engines' state -------------------------------------------------------


def user_home(uid: int) -> str | None:
    """A user's home directory, as the password database has it; None for an unknown user."""
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class _Raw:
    """A state file as read: whether something is at its path (so its engine keeps state for
    the container), and its bytes and identity where it could be read."""

    there: bool
    data: bytes | None = None
    identity: tuple[int, int, int, int] | None = None  # device, inode, size, mtime: a change shows


def _read(path: str, owner: int | None, known: tuple[int, int, int, int] | None = None) -> _Raw:
    """A state file, if it is a regular file (of `owner`, if given) of at most STATE_READ bytes;
    its identity alone if that is `known` (read before, unchanged since). Gone or denied is not
    there; any other error is a fault (judged): there, but unread.

    Opened without blocking (a FIFO put there would hang a plain open) and checked before it
    is read: under a user's home only what that user owns is taken as their engine's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        return _Raw(errors.judge(exc, "state_read", path) is None)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or (owner is not None and status.st_uid != owner):
            return _Raw(True)
        identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        if identity == known:
            return _Raw(True, None, identity)
        chunks: list[bytes] = []
        size = 0
        while size <= STATE_READ:
            chunk = os.read(fd, STATE_READ + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        errors.judge(exc, "state_read", path)
        return _Raw(True)
    finally:
        os.close(fd)
    if size > STATE_READ:
        return _Raw(True)
    return _Raw(True, b"".join(chunks), identity)


def _parse(data: bytes) -> Any:
    """JSON, or None where it is not (malformed, cut short, nested past the parser's depth)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True, slots=True)
class _State:
    there: bool  # something is at that path
    value: Any = None  # its JSON; None where it could not be read or parsed


def _load(path: str, owner: int | None = None) -> _State:
    raw = _read(path, owner)
    return _State(raw.there, None if raw.data is None else _parse(raw.data))


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _strings(value: Any) -> dict[str, str] | None:
    """A JSON object's string members; None if it is not an object."""
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _annotations(spec: Any) -> dict[str, str] | None:
    """An OCI bundle's config.json's annotations ({} where it has none); None if it is not a
    spec, or its annotations are not an object."""
    if not isinstance(spec, dict):
        return None
    return _strings(spec["annotations"]) if "annotations" in spec else {}


def _pod(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace and name else ""


def _named(engine: str, cid: str, notes: Mapping[str, str] | None, plain: str) -> Container:
    """A container named by its annotations (or labels): the CRI's as containerd writes them, or
    as CRI-O (and dockershim's labels) do, or nerdctl's; else `plain`. A pod's sandbox (its
    pause container) is named after the pod. `notes` None: the state could not be read."""
    if notes is None:
        return Container(engine, cid)
    if "io.kubernetes.cri.sandbox-name" in notes or "io.kubernetes.cri.container-name" in notes:
        sandbox = notes.get("io.kubernetes.cri.sandbox-name", "")
        pod = _pod(notes.get("io.kubernetes.cri.sandbox-namespace", ""), sandbox)
        if notes.get("io.kubernetes.cri.container-type") == "sandbox":
            return Container(engine, cid, sandbox, pod)
        return Container(engine, cid, notes.get("io.kubernetes.cri.container-name", ""), pod)
    if "io.kubernetes.pod.name" in notes or "io.kubernetes.container.name" in notes:
        name = notes.get("io.kubernetes.pod.name", "")
        pod = _pod(notes.get("io.kubernetes.pod.namespace", ""), name)
        is_sandbox = (
            notes.get("io.kubernetes.cri-o.ContainerType") == "sandbox"
            or notes.get("io.kubernetes.docker.type") == "podsandbox"
            or notes.get("io.kubernetes.container.name") == "POD"
        )
        return Container(engine, cid, name if is_sandbox else notes.get("io.kubernetes.container.name", ""), pod)
    if notes.get("nerdctl/name"):
        return Container(engine, cid, notes["nerdctl/name"])
    return Container(engine, cid, plain)


class Names:
    """Names of containers from the engines' state on the host, remembered.

    `root` prefixes every state path (unit tests give a tree of their own); `home(uid)` is a
    rootless user's home (under `root` too). A container found named is kept (the `remembered`
    most recently asked); one whose state gave no name is read again only `retry_after` seconds
    (of `clock`) after the last try. Callable from any thread: files are read outside the lock.
    A name found is kept while the container is remembered: one renamed since keeps its old name.
    """

    def __init__(
        self,
        root: str = "/",
        home: Callable[[int], str | None] = user_home,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = REMEMBERED,
    ) -> None:
        self._root = root
        self._home = home
        self._retry_after = retry_after
        self._clock = clock
        self._remembered = remembered
        self._lock = threading.Lock()
        self._found: OrderedDict[Placed, Container] = OrderedDict()
        self._missed: OrderedDict[Placed, tuple[float, Container]] = OrderedDict()
        # podman's containers.json, parsed, by path: (its identity, id -> name)
        self._lists: OrderedDict[str, tuple[tuple[int, int, int, int], dict[str, str]]] = OrderedDict()
        self._readers: dict[str, Callable[[Placed], Container | None]] = {
            DOCKER: self._docker,
            CONTAINERD: self._containerd,
            CRIO: self._crio,
            PODMAN: self._podman,
            RUNC: self._runc,
            KUBERNETES: self._kubernetes,
        }

    def container(self, placed: Placed) -> Container:
        """The container `placed` is, named (and its pod) where the engine's state says; where it
        does not, the name (and pod) the place gave, if any."""
        reader = self._readers.get(placed.engine)
        if reader is None or not safe_id(placed.id):  # named by its place, or not to be looked up
            return Container(placed.engine, placed.id, placed.name, placed.pod)
        now = self._clock()
        with self._lock:
            if (found := self._found.get(placed)) is not None:
                self._found.move_to_end(placed)
                return found
            missed = self._missed.get(placed)
            if missed is not None and now - missed[0] < self._retry_after:
                return missed[1]
        read = reader(placed) or Container(placed.engine, placed.id)
        container = Container(read.engine, read.id, read.name or placed.name, read.pod or placed.pod)
        with self._lock:
            if read.name:
                self._missed.pop(placed, None)
                self._keep(self._found, placed, container)
            else:
                self._keep(self._missed, placed, (now, container))
        return container

    def _keep(self, kept: OrderedDict[Placed, Any], placed: Placed, value: Any) -> None:
        kept[placed] = value
        kept.move_to_end(placed)
        while len(kept) > self._remembered:
            kept.popitem(last=False)

    def _path(self, path: str) -> str:
        return os.path.join(self._root, path.lstrip("/"))

    def _user_path(self, uid: int, path: str) -> str | None:
        """`path` under user `uid`'s home (as the host names it); None if the user has none."""
        home = self._home(uid)
        if not home or not home.startswith("/"):
            return None
        return posixpath.join(home, path)

    # Each reader: the container as its engine's state has it; None if that engine keeps no
    # state for it here (for KUBERNETES, where the next engine is asked).

    def _docker(self, placed: Placed) -> Container | None:
        """docker's config.v2.json: its Name ("/NAME"); dockershim's labels for a pod's container."""
        data = "/var/lib/docker" if placed.uid is None else self._user_path(placed.uid, ".local/share/docker")
        if data is None:
            return None
        state = _load(os.path.join(self._path(data), "containers", placed.id, "config.v2.json"), placed.uid)
        if not state.there:
            return None
        if not isinstance(state.value, dict):
            return Container(DOCKER, placed.id)
        name = state.value.get("Name")
        plain = name.removeprefix("/") if isinstance(name, str) else ""
        return _named(DOCKER, placed.id, _strings(_get(state.value, "Config", "Labels")) or {}, plain)

    def _containerd(self, placed: Placed) -> Container | None:
        """A containerd task's bundle, in its namespace (each, if not known): the CRI's or nerdctl's
        annotations name it; containerd itself has no names but ids."""
        if placed.uid is not None:
            return None  # a rootless containerd keeps its bundles elsewhere
        tasks = self._path("/run/containerd/io.containerd.runtime.v2.task")
        namespaces = [placed.namespace] if placed.namespace else sorted(self._listdir(tasks))
        for namespace in namespaces:
            if CONTAINERD_NAMESPACE.fullmatch(namespace) is None:
                continue
            state = _load(os.path.join(tasks, namespace, placed.id, "config.json"))
            if state.there:
                return _named(CONTAINERD, placed.id, _annotations(state.value), placed.id)
        return None

    def _crio(self, placed: Placed) -> Container | None:
        """CRI-O's userdata config.json: the kubelet's labels, which CRI-O copies to annotations."""
        if placed.uid is not None:
            return None
        for driver in _DRIVERS:
            path = f"/run/containers/storage/{driver}-containers/{placed.id}/userdata/config.json"
            state = _load(self._path(path))
            if state.there:
                return _named(CRIO, placed.id, _annotations(state.value), "")
        return None

    def _podman(self, placed: Placed) -> Container | None:
        """podman's containers.json (and volatile-containers.json, of containers made with --rm):
        the container's first name. A podman pod is not a Kubernetes pod: no pod."""
        storage = (
            "/var/lib/containers/storage"
            if placed.uid is None
            else self._user_path(placed.uid, ".local/share/containers/storage")
        )
        if storage is None:
            return None
        there = False
        for driver in _DRIVERS:
            for listing in ("containers.json", "volatile-containers.json"):
                path = os.path.join(self._path(storage), f"{driver}-containers", listing)
                found, names = self._podman_names(path, placed.uid)
                if names is not None and placed.id in names:
                    return Container(PODMAN, placed.id, names[placed.id])
                there = there or found
        return Container(PODMAN, placed.id) if there else None

    def _podman_names(self, path: str, owner: int | None) -> tuple[bool, dict[str, str] | None]:
        """Whether a containers.json is there, and its names by id (parsed again only when the
        file changed: one file has every container's)."""
        with self._lock:
            kept = self._lists.get(path)
        raw = _read(path, owner, None if kept is None else kept[0])
        if kept is not None and raw.data is None and raw.identity == kept[0]:
            return True, kept[1]
        if raw.data is None or raw.identity is None:
            return raw.there, None
        listed = _parse(raw.data)
        names: dict[str, str] = {}
        for entry in listed if isinstance(listed, list) else ():
            cid, given = _get(entry, "id"), _get(entry, "names")
            if isinstance(cid, str) and isinstance(given, list) and given and isinstance(given[0], str):
                names[cid] = given[0]
        with self._lock:
            self._lists[path] = (raw.identity, names)
            self._lists.move_to_end(path)
            while len(self._lists) > _LISTS_KEPT:
                self._lists.popitem(last=False)
        return True, names

    def _runc(self, placed: Placed) -> Container | None:
        """runc's state.json: its labels are its bundle's annotations (and "bundle=PATH"); where
        they hold none, the bundle's config.json is read (a rootful runc's only). No annotation
        of a pod's: the id is its name."""
        run = "/run/runc" if placed.uid is None else f"/run/user/{placed.uid}/runc"
        state = _load(os.path.join(self._path(run), placed.id, "state.json"), placed.uid)
        if not state.there:
            return None
        labels = _get(state.value, "config", "labels")
        if not isinstance(labels, list):
            return Container(RUNC, placed.id)
        notes: dict[str, str] | None = {}
        bundle = ""
        for label in labels:
            key, equals, value = label.partition("=") if isinstance(label, str) else ("", "", "")
            if key == "bundle" and equals:
                bundle = value
            elif equals and notes is not None:
                notes[key] = value
        if not notes and placed.uid is None and bundle.startswith("/"):
            notes = _annotations(_load(os.path.join(self._path(bundle), "config.json")).value)
        return _named(RUNC, placed.id, notes, placed.id)

    def _kubernetes(self, placed: Placed) -> Container | None:
        """A pod's container whose engine its cgroup did not say: the first engine whose state has
        it (containerd's CRI namespace, CRI-O, docker, then runc's own)."""
        found = self._containerd(Placed(CONTAINERD, placed.id, uid=placed.uid, namespace=K8S))
        if found is None:
            found = self._crio(placed)
        if found is None:
            found = self._docker(placed)
        if found is None:
            found = self._runc(placed)
        return found

    def _listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except OSError as exc:
            errors.judge(exc, "state_list", path)
            return []
