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

from .names import REMEMBERED, RETRY_AFTER, STATE_READ, Names, user_home
from .placing import (
    CONTAINERD,
    CRIO,
    DOCKER,
    K8S,
    KUBERNETES,
    LXC,
    MOBY,
    NSPAWN,
    PODMAN,
    RUNC,
    SYSTEMD,
    Placed,
    cgroup_path,
    placed_by_cgroup,
    placed_by_cgroup_file,
    placed_by_monitor,
    safe_id,
)

__all__ = [
    "CONTAINERD",
    "CRIO",
    "DOCKER",
    "K8S",
    "KUBERNETES",
    "LXC",
    "MOBY",
    "NSPAWN",
    "PODMAN",
    "REMEMBERED",
    "RETRY_AFTER",
    "RUNC",
    "STATE_READ",
    "SYSTEMD",
    "Names",
    "Placed",
    "cgroup_path",
    "placed_by_cgroup",
    "placed_by_cgroup_file",
    "placed_by_monitor",
    "safe_id",
    "user_home",
]
