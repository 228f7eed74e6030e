"""Where a process is placed, before any name: its cgroup path (`cgroup_path`,
`placed_by_cgroup`) and its container's monitor's arguments (`placed_by_monitor`). Pure text:
nothing is read here. The layouts are in the package's doc (workloads/__init__.py).
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

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


# Distinct cgroup files remembered: most processes share a few (a service's, a container's).
CGROUP_FILES_KEPT: Final = 1024


@functools.lru_cache(maxsize=CGROUP_FILES_KEPT)
def placed_by_cgroup_file(text: str) -> Placed | None:
    """`placed_by_cgroup(cgroup_path(text))` for a /proc/PID/cgroup's `text`, remembered: a
    process read pays for the parse only the first time its cgroups are met."""
    return placed_by_cgroup(cgroup_path(text))


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
CONTAINERD_NAMESPACE: Final = re.compile(r"(?=.{1,255}\Z)[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


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
    if not safe_id(cid) or (namespace and CONTAINERD_NAMESPACE.fullmatch(namespace) is None):
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
