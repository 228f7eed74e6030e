"""The metrics: counted from a snapshot, written in the Prometheus text format, and read back
with the official client's own parser."""

from __future__ import annotations

import errno

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nsfs_fuse.metrics import Health, NamespaceCollector, registry_of
from nsfs_fuse.model import UNSEEN, Entry, Holder, HolderKind, Holders, NsKey, Snapshot

HOST = NsKey("user", 1)
NETS = [NsKey("net", n) for n in (10, 11, 12, 13, 14)]
HEALTH = Health(
    pins=6,
    fds=30,
    fd_budget=1000,
    fd_budget_used=7,
    mount_tables=2,
    sweeps=41,
    last_sweep_seconds=0.25,
    last_sweep_cpu_seconds=0.125,
    following_events=True,
)


def entry(key: NsKey) -> Entry:
    return Entry(key, key.inode, 3, None, None, None if key == HOST else HOST, None, None, 0)


def snapshot() -> Snapshot:
    mount = Holder(HolderKind.MOUNT, text="/run/netns/a", ns="mnt:[5]")
    held = {
        HOST: (Holder(HolderKind.PROCESS, 1, text="init"), *(Holder(HolderKind.OWNER_OF, ns=k.name) for k in NETS)),
        NETS[0]: (Holder(HolderKind.PROCESS, 1, text="init"), Holder(HolderKind.PROCESS, 2, text="sh")),
        NETS[1]: (mount,),  # ip netns add, and forgotten
        NETS[2]: (UNSEEN,),
        NETS[3]: (mount, Holder(HolderKind.FD, 2, 5)),  # something still uses it
        NETS[4]: (),  # between two reads: no holder yet
    }
    holders = {key.name: Holders((found,)) for key, found in held.items()}
    return Snapshot.of([entry(key) for key in held], holders, 1)


FAULTS = {("readlink", errno.EIO): 3, ("open_by_handle", errno.EMFILE): 1}


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry_of(NamespaceCollector(snapshot, lambda: HEALTH, lambda: FAULTS))).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_namespaces_are_counted_by_type() -> None:
    found = samples()
    by_type = {dict(labels)["type"]: v for (name, labels), v in found.items() if name == "nsfs_namespaces"}
    assert by_type == {"cgroup": 0, "ipc": 0, "mnt": 0, "net": 5, "pid": 0, "time": 0, "user": 1, "uts": 0}


def test_namespaces_are_counted_by_the_kinds_that_hold_them() -> None:
    held = {
        (dict(labels)["type"], dict(labels)["kind"]): v
        for (name, labels), v in samples().items()
        if name == "nsfs_namespaces_held" and v
    }
    assert held == {
        ("user", "process"): 1,
        ("user", "owner-of"): 1,
        ("net", "process"): 1,  # one namespace, however many processes
        ("net", "mount"): 2,
        ("net", "unseen"): 1,
        ("net", "fd"): 1,
    }


def test_a_leak_candidate_is_a_network_namespace_held_only_by_mounts_or_unseen() -> None:
    assert samples()[("nsfs_leak_candidates", (("type", "net"),))] == 2


def test_the_daemons_health_is_exported_as_it_says_it() -> None:
    found = samples()
    health = {name: value for (name, labels), value in found.items() if not labels}
    assert health == {
        "nsfs_pins": 6,
        "nsfs_open_fds": 30,
        "nsfs_fd_budget": 1000,
        "nsfs_fd_budget_used": 7,
        "nsfs_mount_tables_followed": 2,
        "nsfs_sweeps_total": 41,  # a counter, as Prometheus names them
        "nsfs_last_sweep_seconds": 0.25,
        "nsfs_last_sweep_cpu_seconds": 0.125,
        "nsfs_process_events_followed": 1,
    }


def test_errors_the_policy_does_not_expect_are_counted_by_operation_and_errno() -> None:
    counted = {labels: value for (name, labels), value in samples().items() if name == "nsfs_errors_total"}
    assert counted == {
        (("errno", "EIO"), ("operation", "readlink")): 3,
        (("errno", "EMFILE"), ("operation", "open_by_handle")): 1,
    }
