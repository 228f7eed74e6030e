"""What a follower of the listing is sent after each change, worked out from what changed,
is what comparing the whole listing before and after would send (events_socket.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nsfs_fuse.events_socket import EventsSocket
from nsfs_fuse.model import NsKey, ProcessRead
from nsfs_fuse.registry import Registry
from nsfs_fuse.tasks import Alarm

from .test_registry import TREE, USER0, USER1, FakePins, read

KEYS = sorted(TREE)
PIDS = (1, 2, 3, 4)

# One step: a process read holding some namespaces, a process gone, or the probes confirmed.
step: st.SearchStrategy[tuple[str, int, set[NsKey]]] = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(PIDS), st.sets(st.sampled_from(KEYS), max_size=4)),
    st.tuples(st.just("gone"), st.sampled_from(PIDS), st.just(set())),
    st.tuples(st.just("confirm"), st.just(0), st.just(set())),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, max_size=25), userns=st.sampled_from([USER0, USER1]), own=st.booleans())
def test_the_difference_from_what_changed_is_the_difference_of_the_whole_listings(
    steps: list[tuple[str, int, set[NsKey]]], userns: NsKey, own: bool
) -> None:
    registry = Registry(FakePins())
    registry.update([read(9, 0.0, USER0)])
    watchers = EventsSocket(registry, None, Alarm())  # type: ignore[arg-type]  # only its arithmetic is used
    owned = frozenset({"net:[30]"} if own else set())
    snapshot = registry.snapshot
    shown = watchers._shown(snapshot, userns, owned)
    for at, (what, pid, keys) in enumerate(steps, start=1):
        if what == "read":
            registry.update([read(pid, float(at), *keys)])
        elif what == "gone":
            registry.update([ProcessRead(pid, float(at))])
        else:
            registry.confirm(registry.suspensions)
        before, snapshot = snapshot, registry.snapshot
        gone, new = watchers._difference(before, snapshot, shown, userns, owned)
        listed = watchers._shown(snapshot, userns, owned)
        assert set(gone) == {s for n, s in shown.items() if listed.get(n) != s}
        assert set(new) == {s for n, s in listed.items() if shown.get(n) != s}
        for s in gone:
            del shown[s.name]
        shown.update((s.name, s) for s in new)
        assert shown == listed
