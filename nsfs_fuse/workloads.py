"""Which container, pod or systemd service a process belongs to, from what the host shows:
no engine daemon is asked.

A process is placed first by its cgroup (`cgroup_path`, then `placed_by_cgroup`): engines name
the cgroups they make after their containers, and systemd names a unit's after the unit. The
layouts recognised, on cgroup v2 and v1 alike (the same paths, from another line):

- docker: `docker-ID.scope` (the systemd driver; rootless, under `user@UID.service`), `/docker/ID`;
- a Kubernetes pod's container, below `kubepods…pod<UID>` (the kubelet's systemd driver writes the
  UID's dashes as `_`): `cri-containerd-ID.scope` (containerd), `crio-ID.scope` or `crio-ID`
  (CRI-O), `docker-ID.scope` (dockershim); a bare `ID` (the cgroupfs driver) does not say which
  engine runs it, so it is placed as `KUBERNETES` and the engine is the one whose state has it;
- podman: `libpod-ID.scope`, `/libpod_parent/[POD/]libpod-ID`, `libpod-payload-ID` (--cgroups=split);
- `nerdctl-ID.scope` (containerd), `runc-ID.scope` (runc with the systemd driver);
- LXC: `lxc.payload.NAME`, `lxc.payload/NAME`, `/lxc/NAME`;
- systemd-nspawn: `systemd-nspawn@NAME.service`, and `machine-NAME.scope` for any machine
  systemd-machined registered (its name unescaped);
- systemd services: the first unit of the path, if it is a `.service` (a scope is not a
  service); below `user@UID.service`, the user manager's unit.

The outermost container of a path wins (a container's own sub-cgroups, a container inside it,
are its), and any container wins over the service around it. What an engine's monitor sits in
(`libpod-conmon-…`, `crio-conmon-…`, `lxc.monitor…`, nspawn's `supervisor`) places nothing.

Where no cgroup says (rootless podman on cgroup v1 makes none; a plain `runc run` leaves its
container where runc was), the container's monitor does: its arguments name the container
(`placed_by_monitor`: conmon, podman's or CRI-O's; a containerd shim; `runc run`; systemd-nspawn).
Arguments are what a process says of itself: a monitor is worth what its owner is.

Names and pods come from the engines' own state on the host (`Names`): runc's state.json (its
labels carry the bundle's annotations), containerd's bundles, CRI-O's userdata, docker's
config.v2.json, podman's containers.json; a rootless engine's under its user's home, and only
what that user owns. An engine that is absent costs a failed open per container met. A state
that is missing, unreadable or malformed gives the id alone, and is read again after a while
(an engine writes it just after its container starts); a file gone or denied is just missing,
any other error is judged as errors.py says and costs only that container's name.
"""

from __future__ import annotations

import json
import os
import posixpath
import pwd
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from . import errors
from .model import Container

DOCKER: Final = "docker"
CONTAINERD: Final = "containerd"
CRIO: Final = "cri-o"
PODMAN: Final = "podman"
RUNC: Final = "runc"
LXC: Final = "lxc"
NSPAWN: Final = "systemd-nspawn"
SYSTEMD: Final = "systemd"
# A Kubernetes pod's container whose cgroup does not say which engine runs it (the kubelet's
# cgroupfs driver): Names gives it the engine whose state has it, or leaves it so.
KUBERNETES: Final = "kubernetes"

# containerd's namespaces for docker's containers and for the CRI's.
MOBY: Final = "moby"
K8S: Final = "k8s.io"

STATE_READ: Final = 4 << 20  # an engine's state file larger than this is not read
REMEMBERED: Final = 4096  # containers whose names Names keeps (and as many misses)
RETRY_AFTER: Final = 5.0  # seconds before a state not found is looked for again
_LISTS_KEPT: Final = 64  # podman containers.json files kept parsed (one per storage)
# The storage drivers whose container directories containers/storage names `DRIVER-containers`.
_DRIVERS: Final = ("overlay", "vfs", "btrfs", "zfs")


@dataclass(frozen=True, slots=True)
class Placed:
    """What a cgroup path or a monitor's argv tells of a process's container, before names."""

    engine: str
    id: str
    name: str = ""  # where the place itself names it (LXC, nspawn machines, systemd units, conmon -n)
    pod_uid: str = ""  # kubepods: the pod's UID, dashes restored (the systemd driver writes them as _)
    uid: int | None = None  # rootless: the user whose storage keeps its state (from user@UID.service)
    namespace: str = ""  # containerd's namespace where known (shim argv -namespace): moby -> docker, k8s.io -> CRI
    pod: str = ""  # "NAMESPACE/NAME" where the place itself names the pod (CRI-O's conmon -n)


# -- /proc/PID/cgroup ---------------------------------------------------------

_CGROUP_LINE: Final = re.compile(r"([0-9]+):([^:]*):(/.*)")


def cgroup_path(text: str) -> str:
    """The one path that places a process, from its /proc/PID/cgroup: the v2 line ("0::PATH") if not "/",
    else the name=systemd line's, else the first controller line whose path is not "/"; "/" if none.

    The kernel writes each hierarchy once, one line each. A text where one comes twice, or a line
    is not of that form (a cgroup name with a newline in it makes more lines), places nothing:
    "/"."""
    v2 = named = controller = "/"
    hierarchies: set[str] = set()
    controllers: set[str] = set()
    for line in text.split("\n"):
        if not line:
            continue
        match = _CGROUP_LINE.fullmatch(line)
        if match is None:
            return "/"
        hierarchy, names, path = match.groups()
        listed = names.split(",") if names else []
        if hierarchy in hierarchies or controllers.intersection(listed):
            return "/"
        hierarchies.add(hierarchy)
        controllers.update(listed)
        if hierarchy == "0" and not names:
            v2 = path
        elif "name=systemd" in listed:
            named = path
        elif controller == "/":
            controller = path
    for path in (v2, named, controller):
        if path != "/":
            return path
    return "/"


# -- cgroup paths -------------------------------------------------------------

_HEX64: Final = "[0-9a-f]{64}"
# An id as runc takes it, and a file name (at most NAME_MAX): letters, digits, _ + - . ; not . or ..
_ID: Final = re.compile(r"[A-Za-z0-9_+.-]{1,255}")
_POD_UID: Final = "[0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_POD: Final = re.compile(rf"(?:(.*)-)?pod({_POD_UID})(\.slice)?")
_USER_MANAGER: Final = re.compile(r"user@([0-9]{1,10})\.service")
_UNIT: Final = re.compile(
    r"[A-Za-z0-9:_.\\@-]{1,255}\.(service|scope|slice|socket|mount|swap|target|device|path|timer)"
)
_MONITOR: Final = re.compile(rf"(?:libpod|crio)-conmon-{_HEX64}(?:\.scope)?|lxc\.monitor(?:\..*)?|lxc\.pivot")
_NSPAWN_UNIT: Final = re.compile(r"systemd-nspawn@(.+)\.service")
_MACHINE_SCOPE: Final = re.compile(r"machine-(.+)\.scope")
_LXC_PAYLOAD: Final = re.compile(r"lxc\.payload\.(.+)")
_RUNC_SCOPE: Final = re.compile(r"runc-(.+)\.scope")
# (engine, containerd namespace) by the prefix of a container's own unit or cgroup.
_SCOPES: Final = {
    "docker": (DOCKER, ""),
    "libpod": (PODMAN, ""),
    "libpod-payload": (PODMAN, ""),
    "cri-containerd": (CONTAINERD, K8S),
    "crio": (CRIO, ""),
    "nerdctl": (CONTAINERD, ""),
}
_SCOPE: Final = re.compile(rf"({'|'.join(re.escape(p) for p in _SCOPES)})-({_HEX64})(\.scope)?")
# Which of those make a cgroup without .scope (a cgroupfs driver's): the rest are systemd units only.
_BARE: Final = frozenset({"libpod", "libpod-payload", "crio"})
_ESCAPE: Final = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def safe_id(text: str) -> bool:
    """Whether `text` can be an engine's id, and so a file name in its state (never a path)."""
    return _ID.fullmatch(text) is not None and text not in (".", "..")


class _Monitor(Exception):
    """The path is an engine's monitor's cgroup, not a container's."""


def placed_by_cgroup(path: str) -> Placed | None:
    """The container (or systemd service) that a process in cgroup `path` belongs to, as the
    path says; None if it says none (the module's docstring lists the layouts)."""
    # A path outside the reader's cgroup namespace starts with "..": what follows still names it.
    parts = [part for part in path.split("/") if part not in ("", ".", "..")]
    try:
        for at in range(len(parts)):
            placed = _container_at(parts, at)
            if placed is not None:
                return placed
    except _Monitor:
        return None
    return _service(parts)


def _owner(parts: list[str]) -> int | None:
    """The user whose manager's tree `parts` (a path's leading parts) is in, if any."""
    uid = None
    for part in parts:
        if (match := _USER_MANAGER.fullmatch(part)) is not None:
            uid = int(match.group(1))
    return uid


def _container_at(parts: list[str], at: int) -> Placed | None:
    """The container whose own cgroup is `parts[at]` (or, for a layout of two, begins there)."""
    part = parts[at]
    after = parts[at + 1] if at + 1 < len(parts) else None
    if _MONITOR.fullmatch(part) or (part == "conmon" and "libpod_parent" in parts[:at]):
        raise _Monitor
    if (pod := _POD.fullmatch(part)) is not None and _in_kubepods(parts[:at], pod):
        return _pod_container(parts, at, pod.group(2).replace("_", "-"), after)
    if (match := _SCOPE.fullmatch(part)) is not None and (match.group(3) or match.group(1) in _BARE):
        engine, namespace = _SCOPES[match.group(1)]
        return Placed(engine, match.group(2), uid=_owner(parts[:at]), namespace=namespace)
    if part == "docker" and after is not None and re.fullmatch(_HEX64, after):
        return Placed(DOCKER, after, uid=_owner(parts[:at]))
    if (match := _RUNC_SCOPE.fullmatch(part)) is not None and safe_id(match.group(1)):
        return Placed(RUNC, match.group(1), uid=_owner(parts[:at]))
    lxc = _LXC_PAYLOAD.fullmatch(part)
    name = lxc.group(1) if lxc is not None else after if part in ("lxc.payload", "lxc") else None
    if name is not None:
        return Placed(LXC, name, name, uid=_owner(parts[:at]))
    machine = _NSPAWN_UNIT.fullmatch(part) or _MACHINE_SCOPE.fullmatch(part)
    if machine is not None:
        if after == "supervisor":  # --keep-unit: nspawn itself, beside its payload
            raise _Monitor
        name = _unescape(machine.group(1))
        return Placed(NSPAWN, name, name, uid=_owner(parts[:at]))
    return None


def _in_kubepods(above: list[str], pod: re.Match[str]) -> bool:
    """Whether a part that reads pod<UID> is a kubelet's pod cgroup: below kubepods, and either
    bare (cgroupfs) or a slice named down from a kubepods slice (systemd)."""
    if not any("kubepods" in part for part in above):
        return False
    prefix, slice_ = pod.group(1), pod.group(3)
    if slice_ is None:
        return prefix is None
    return prefix is not None and "kubepods" in prefix


def _pod_container(parts: list[str], at: int, pod_uid: str, after: str | None) -> Placed | None:
    """The container of a pod whose cgroup is `parts[at]`, from the part below it."""
    uid = _owner(parts[:at])
    if after is None:
        return None  # in the pod's own cgroup: no container's
    if _MONITOR.fullmatch(after):
        raise _Monitor
    if (match := _SCOPE.fullmatch(after)) is not None and (match.group(3) or match.group(1) in _BARE):
        engine, namespace = _SCOPES[match.group(1)]
        return Placed(engine, match.group(2), pod_uid=pod_uid, uid=uid, namespace=namespace)
    if not after.endswith((".scope", ".slice")) and safe_id(after):  # cgroupfs: the id alone
        return Placed(KUBERNETES, after, pod_uid=pod_uid, uid=uid)
    return None


def _unescape(name: str) -> str:
    """A name as systemd escapes it in a unit's name: \\xNN is that byte (of its UTF-8)."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not text read from a file
        return name
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode("utf-8", "surrogateescape")


def _service(parts: list[str]) -> Placed | None:
    """The systemd service a cgroup path is in: its first unit that is not a slice, if that is a
    service; the user manager's own unit below `user@UID.service`."""
    units = [(at, part) for at, part in enumerate(parts) if not part.endswith(".slice")]
    if not units or _UNIT.fullmatch(units[0][1]) is None or not units[0][1].endswith(".service"):
        return None
    at, unit = units[0]
    manager = _USER_MANAGER.fullmatch(unit)
    if manager is None:
        return Placed(SYSTEMD, unit, unit)
    inner = [part for part in parts[at + 1 :] if not part.endswith(".slice")]
    if not inner:
        return Placed(SYSTEMD, unit, unit)
    if _UNIT.fullmatch(inner[0]) is None or not inner[0].endswith(".service"):
        return None
    return Placed(SYSTEMD, f"{unit}/{inner[0]}", inner[0], uid=int(manager.group(1)))


# -- monitors' arguments ------------------------------------------------------

# Options that take a value, as each monitor parses its arguments; any other option is taken as
# a flag. conmon (GLib's option parser: it reads past operands):
_CONMON_VALUED: Final = _words(
    "b bundle c cid P conmon-pidfile p container-pidfile u cuuid exec-process-spec exit-command "
    "exit-command-arg exit-delay exit-dir log-level l log-path log-size-max log-global-size-max log-tag "
    "log-label n name 0 persist-dir pidfile restore restore-arg r runtime runtime-arg runtime-opt "
    "sdnotify-socket socket-dir-path T timeout log-max-files log-allowlist-dir"
)
# A containerd shim (Go's flag package: -name or --name, and it stops at the first operand).
_SHIM_VALUED: Final = _words(
    "namespace id address publish-binary bundle socket workdir containerd-binary runtime-root criu ttrpc-address"
)
_SHIM: Final = re.compile(r"(?:docker-)?containerd-shim(?:-.+)?")
# runc (urfave/cli: global options, the command, its options, then the id).
_RUNC_VALUED: Final = _words(
    "log log-format root criu rootless b bundle console-socket pidfd-socket pid-file preserve-fds"
)
# systemd-nspawn (getopt_long, stopping at the first operand: the command to run).
_NSPAWN_SHORT_VALUED: Final = frozenset("DuLMSZipE")
_NSPAWN_VALUED: Final = _words(
    "directory template user uuid capability ambient-capability drop-capability no-new-privileges "
    "link-journal bind bind-ro tmpfs overlay overlay-ro inaccessible machine hostname slice setenv "
    "selinux-context selinux-apifs-context register network-interface network-macvlan network-ipvlan "
    "network-veth-extra network-bridge network-zone network-namespace-path personality image port property "
    "private-users-ownership kill-signal settings chdir pivot-root notify-ready root-hash root-hash-sig "
    "verity-data system-call-filter rlimit oom-score-adjust cpu-affinity resolv-conf timezone console "
    "oci-bundle set-credential load-credential bind-user suppress-sync image-policy"
)
_MACHINE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The containerd namespace a shim names (containerd's own rule for one).
_NAMESPACE: Final = re.compile(r"(?=.{1,255}\Z)[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def _options(
    args: Sequence[str], valued: frozenset[str], *, permute: bool = False, short_valued: frozenset[str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The options in `args` (name -> value, "" for a flag; the last one wins) and the operands.

    `--name=value`, `--name value` and `-name value` (one dash, Go's way) are read alike; with
    `short_valued`, a single dash starts a cluster of one-letter options, as getopt reads them
    (the first that takes a value takes the rest of the word, or the next). Options stop at "--",
    and, unless `permute`, at the first operand: what follows is all operands."""
    found: dict[str, str] = {}
    operands: list[str] = []
    at = 0
    while at < len(args):
        word = args[at]
        at += 1
        if word == "--":
            operands.extend(args[at:])
            break
        if not word.startswith("-") or word == "-":
            operands.append(word)
            if not permute:
                operands.extend(args[at:])
                break
            continue
        if short_valued is not None and not word.startswith("--"):
            for index, letter in enumerate(word[1:], start=1):
                if letter in short_valued:
                    value = word[index + 1 :]
                    if not value and at < len(args):
                        value, at = args[at], at + 1
                    found[letter] = value
                    break
                found[letter] = ""
            continue
        name, equals, value = word.lstrip("-").partition("=")
        if not equals and name in valued and at < len(args):
            value, at = args[at], at + 1
        found[name] = value
    return found, operands


def _option(found: Mapping[str, str], *names: str) -> str:
    for name in names:
        if name in found:
            return found[name]
    return ""


def placed_by_monitor(argv: Sequence[str]) -> Placed | None:
    """The container a monitor process runs, from its arguments (`argv`, its /proc/PID/cmdline);
    None if they are not a known monitor's, or name no container soundly."""
    if not argv:
        return None
    program = posixpath.basename(argv[0])
    if program == "conmon":
        return _conmon(argv[1:])
    if _SHIM.fullmatch(program):
        return _shim(argv[1:])
    if program == "runc":
        return _runc(argv[1:])
    if program == "systemd-nspawn":
        return _nspawn(argv[1:])
    return None


def _conmon(args: Sequence[str]) -> Placed | None:
    """conmon, podman's or CRI-O's: podman always gives it the command to run when the container
    exits (`--exit-command`), CRI-O never does. CRI-O names a container
    k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT (a pod's infra container is CONTAINER "POD")."""
    found, _operands = _options(args, _CONMON_VALUED, permute=True)
    cid, name = _option(found, "c", "cid"), _option(found, "n", "name")
    if not safe_id(cid):
        return None
    if "exit-command" in found:
        return Placed(PODMAN, cid, name)
    words = name.split("_")
    if len(words) != 6 or words[0] != "k8s" or not words[5].isdigit() or not all(words[1:5]):
        return Placed(CRIO, cid)
    _k8s, container, pod, namespace, uid, _attempt = words
    return Placed(CRIO, cid, pod if container == "POD" else container, pod_uid=uid, pod=f"{namespace}/{pod}")


def _shim(args: Sequence[str]) -> Placed | None:
    """A containerd shim: `-namespace NS -id ID` (a v1 shim: the id is its -workdir's last part).
    A pod's containers share one shim, started for the pod's sandbox: its id is the sandbox's."""
    found, _operands = _options(args, _SHIM_VALUED)
    cid = found.get("id") or posixpath.basename(found.get("workdir", "").rstrip("/"))
    namespace = found.get("namespace", "")
    if not safe_id(cid) or (namespace and _NAMESPACE.fullmatch(namespace) is None):
        return None
    return Placed(DOCKER if namespace == MOBY else CONTAINERD, cid, namespace=namespace)


def _runc(args: Sequence[str]) -> Placed | None:
    """`runc [global options] run|create [options] ID`: runc itself, in the foreground."""
    _global, operands = _options(args, _RUNC_VALUED)
    if not operands or operands[0] not in ("run", "create"):
        return None
    _own, operands = _options(operands[1:], _RUNC_VALUED)
    if not operands or not safe_id(operands[0]):
        return None
    return Placed(RUNC, operands[0])


def _nspawn(args: Sequence[str]) -> Placed | None:
    """systemd-nspawn: its machine's name is -M's, else the last part of its directory (or of its
    image, less .raw); an ephemeral machine without -M has a random name."""
    found, _operands = _options(args, _NSPAWN_VALUED, short_valued=_NSPAWN_SHORT_VALUED)
    name = _option(found, "M", "machine")
    if not name and not ("x" in found or "ephemeral" in found):
        directory = _option(found, "D", "directory").rstrip("/")
        image = _option(found, "i", "image").rstrip("/")
        name = posixpath.basename(directory) if directory else posixpath.basename(image).removesuffix(".raw")
    if _MACHINE_NAME.fullmatch(name) is None:
        return None
    return Placed(NSPAWN, name, name)


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
            if _NAMESPACE.fullmatch(namespace) is None:
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
