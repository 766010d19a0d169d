"""The Store contract suite: every backend behaves like the Kubernetes API server.

One suite, parametrized over backends by the ``store`` fixture. Today the backends are
the SQLite file and the same file behind ``InstrumentedStore`` (which must change no
semantics); the Kubernetes backend against the project's fake API server joins by adding
one entry to ``BACKENDS`` and one branch to ``open_backend``. Each backend under test
keeps a watch history of ``HISTORY`` events, so the ``Gone`` case needs few writes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import Conflict, InvalidRequest
from spiderpool_controller.store.contract import (
    Gone,
    Obj,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    Store,
    WatchEvent,
)
from spiderpool_controller.store.instrumented import InstrumentedStore
from spiderpool_controller.store.kubernetes import KubernetesStore
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.kube_backend import kube_store

BACKENDS = ["sqlite", "instrumented-sqlite", "kubernetes"]
HISTORY = 40
KIND = "SpiderIPPool"
NS_KIND = "SpiderEndpoint"
API_VERSION = "spiderpool.spidernet.io/v2beta1"
FINALIZER = "spiderpool.spidernet.io"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DEADLINE_S = 5.0


def open_backend(name: str, tmp_path: Path) -> Store:
    """A fresh, empty store of backend ``name`` retaining ``HISTORY`` watch events."""
    if name == "sqlite":
        return SqliteStore(tmp_path / "state.db", history_events=HISTORY)
    if name == "instrumented-sqlite":
        return InstrumentedStore(SqliteStore(tmp_path / "state.db", history_events=HISTORY))
    raise ValueError(f"unknown backend {name}")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "kubernetes":  # the test API server, over real HTTP
        async with kube_store(history=HISTORY) as kube:
            yield kube
        return
    backend = open_backend(request.param, tmp_path)
    yield backend
    await backend.close()


def pool(name: str, labels: dict[str, str] | None = None, **sections: Any) -> Obj:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, **sections}


def endpoint(name: str, namespace: str, labels: dict[str, str] | None = None) -> Obj:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": NS_KIND, "metadata": meta}


def rv_of(obj: Obj) -> int:
    return int(obj["metadata"]["resourceVersion"])


def names(items: list[Obj]) -> list[str]:
    return [o["metadata"]["name"] for o in items]


async def next_events(events: AsyncIterator[WatchEvent], count: int) -> list[tuple[str, str]]:
    """The next ``count`` events as (type, name), failing if they do not come in time."""
    out: list[tuple[str, str]] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(out) < count:
            event = await anext(events)
            out.append((event.type, event.object["metadata"]["name"]))
    return out


async def close_watch(events: AsyncIterator[WatchEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


# -- create and get ---------------------------------------------------------------------


async def test_create_fills_identity_version_and_timestamp(store: Store) -> None:
    """Create sets uid, resourceVersion, an RFC 3339 UTC creationTimestamp and generation 1."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    meta = created["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert meta["resourceVersion"].isdigit()
    assert RFC3339_UTC.match(meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert created["spec"] == {"subnet": "10.0.0.0/24"}
    assert await store.get(KIND, "p1") == created


async def test_create_ignores_status_like_the_status_subresource(store: Store) -> None:
    """Status sent with a create is dropped: only update_status writes status."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}, status={"allocatedIPCount": 3}))
    assert "status" not in created
    assert "status" not in await store.get(KIND, "p1")


async def test_create_does_not_change_the_callers_object(store: Store) -> None:
    """The caller's dict is not mutated by create."""
    obj = pool("p1", spec={"subnet": "10.0.0.0/24"})
    snapshot = repr(obj)
    await store.create(obj)
    assert repr(obj) == snapshot


async def test_create_of_a_taken_name_raises_already_exists(store: Store) -> None:
    """A second create of the same kind and name fails with ObjectAlreadyExists."""
    await store.create(pool("p1"))
    with pytest.raises(ObjectAlreadyExists):
        await store.create(pool("p1"))


async def test_create_without_a_name_is_refused(store: Store) -> None:
    """An object with neither name nor generateName is an invalid request."""
    with pytest.raises(InvalidRequest, match="name"):
        await store.create({"apiVersion": API_VERSION, "kind": KIND, "metadata": {}})


async def test_create_with_a_resource_version_is_refused(store: Store) -> None:
    """Objects to be created must not carry a resourceVersion, as the API server demands."""
    obj = pool("p1")
    obj["metadata"]["resourceVersion"] = "7"
    with pytest.raises(InvalidRequest, match="resourceVersion"):
        await store.create(obj)


async def test_generate_name_appends_a_random_suffix(store: Store) -> None:
    """generateName yields distinct names: the prefix plus five random characters."""
    made = []
    for _ in range(5):
        obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"generateName": "auto4-"}}
        made.append((await store.create(obj))["metadata"]["name"])
    assert len(set(made)) == 5
    assert all(re.fullmatch(r"auto4-[a-z0-9]{5}", n) for n in made)
    items, _ = await store.list(KIND)
    assert sorted(names(items)) == sorted(made)


async def test_get_of_a_missing_object_raises_not_found(store: Store) -> None:
    """Getting a name that was never created raises ObjectNotFound."""
    with pytest.raises(ObjectNotFound):
        await store.get(KIND, "nope")


# -- list -------------------------------------------------------------------------------


async def test_list_is_sorted_and_carries_the_current_version(store: Store) -> None:
    """List returns objects of the kind sorted by name and a version no older than any of them."""
    for name in ("c", "a", "b"):
        await store.create(pool(name))
    await store.create(endpoint("x", "ns1"))
    items, list_rv = await store.list(KIND)
    assert names(items) == ["a", "b", "c"]
    assert int(list_rv) >= max(rv_of(o) for o in items)


async def test_list_filters_by_label_selector(store: Store) -> None:
    """Label selectors in list select exactly the objects the API server would."""
    await store.create(pool("v4a", {"ipam.spidernet.io/ip-version": "IPv4", "tier": "a"}))
    await store.create(pool("v4b", {"ipam.spidernet.io/ip-version": "IPv4"}))
    await store.create(pool("v6", {"ipam.spidernet.io/ip-version": "IPv6", "tier": "b"}))
    await store.create(pool("bare"))
    cases = {
        "ipam.spidernet.io/ip-version=IPv4": ["v4a", "v4b"],
        "ipam.spidernet.io/ip-version!=IPv4": ["bare", "v6"],
        "tier in (a,b)": ["v4a", "v6"],
        "tier notin (a)": ["bare", "v4b", "v6"],
        "tier": ["v4a", "v6"],
        "!tier": ["bare", "v4b"],
        "ipam.spidernet.io/ip-version=IPv4,!tier": ["v4b"],
        "": ["bare", "v4a", "v4b", "v6"],
    }
    for selector, expected in cases.items():
        items, _ = await store.list(KIND, label_selector=selector)
        assert names(items) == expected, selector


async def test_list_with_a_malformed_selector_is_an_invalid_request(store: Store) -> None:
    """A selector that does not parse is refused, not treated as matching everything."""
    with pytest.raises(InvalidRequest):
        await store.list(KIND, label_selector="tier in a")


async def test_namespaced_objects_are_listed_per_namespace(store: Store) -> None:
    """Equal names in two namespaces are two objects; list narrows to one namespace or spans all."""
    await store.create(endpoint("pod", "b"))
    await store.create(endpoint("pod", "a"))
    await store.create(endpoint("other", "a"))
    everywhere, _ = await store.list(NS_KIND)
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everywhere] == [
        ("a", "other"),
        ("a", "pod"),
        ("b", "pod"),
    ]
    only_a, _ = await store.list(NS_KIND, namespace="a")
    assert names(only_a) == ["other", "pod"]
    got = await store.get(NS_KIND, "pod", "b")
    assert got["metadata"]["namespace"] == "b"
    with pytest.raises(ObjectNotFound):
        await store.get(NS_KIND, "other", "b")
    with pytest.raises(ObjectNotFound):
        await store.get(NS_KIND, "pod")


# -- update and update_status -----------------------------------------------------------


async def test_update_replaces_metadata_and_spec_but_keeps_status(store: Store) -> None:
    """Update writes labels, annotations and spec, bumps generation, and leaves status alone."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    with_status = await store.update_status({**created, "status": {"allocatedIPCount": 2}})
    change = {
        **with_status,
        "metadata": {**with_status["metadata"], "labels": {"a": "b"}, "annotations": {"note": "x"}},
        "spec": {"subnet": "10.0.0.0/16"},
        "status": {"allocatedIPCount": 99},
    }
    updated = await store.update(change)
    assert updated["spec"] == {"subnet": "10.0.0.0/16"}
    assert updated["status"] == {"allocatedIPCount": 2}
    assert updated["metadata"]["labels"] == {"a": "b"}
    assert updated["metadata"]["annotations"] == {"note": "x"}
    assert updated["metadata"]["generation"] == 2
    assert rv_of(updated) > rv_of(with_status)
    assert await store.get(KIND, "p1") == updated


async def test_update_keeps_server_set_metadata(store: Store) -> None:
    """uid and creationTimestamp cannot be changed by an update; a metadata-only change keeps generation."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    meta = {
        **created["metadata"],
        "creationTimestamp": "2001-01-01T00:00:00Z",
        "generation": 40,
        "labels": {"x": "y"},
    }
    updated = await store.update({**created, "metadata": meta})
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert updated["metadata"]["generation"] == 1


async def test_update_status_changes_only_status(store: Store) -> None:
    """update_status writes status and ignores spec, labels and generation in the request."""
    created = await store.create(pool("p1", {"a": "b"}, spec={"subnet": "10.0.0.0/24"}))
    request = {
        **created,
        "metadata": {**created["metadata"], "labels": {"a": "changed"}},
        "spec": {"subnet": "192.168.0.0/16"},
        "status": {"allocatedIPCount": 1, "allocatedIPs": '{"10.0.0.1":{"pod":"ns/p"}}'},
    }
    updated = await store.update_status(request)
    assert updated["status"] == request["status"]
    assert updated["spec"] == {"subnet": "10.0.0.0/24"}
    assert updated["metadata"]["labels"] == {"a": "b"}
    assert updated["metadata"]["generation"] == 1
    assert rv_of(updated) > rv_of(created)


async def test_stale_resource_version_conflicts_on_every_write(store: Store) -> None:
    """update, update_status and delete with an old resourceVersion fail with 409 and change nothing."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    current = await store.update({**created, "spec": {"subnet": "10.0.0.0/16"}})
    with pytest.raises(StaleResourceVersion) as info:
        await store.update({**created, "spec": {"subnet": "10.9.0.0/16"}})
    assert isinstance(info.value, Conflict)
    with pytest.raises(StaleResourceVersion):
        await store.update_status({**created, "status": {"allocatedIPCount": 5}})
    with pytest.raises(StaleResourceVersion):
        await store.delete(KIND, "p1", resource_version=created["metadata"]["resourceVersion"])
    assert await store.get(KIND, "p1") == current


async def test_writes_without_resource_version_are_unconditional(store: Store) -> None:
    """A write carrying no resourceVersion applies to whatever version is stored."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    await store.update({**created, "spec": {"subnet": "10.1.0.0/24"}})
    blind_meta = {"name": "p1"}
    updated = await store.update({**pool("p1"), "metadata": blind_meta, "spec": {"subnet": "10.2.0.0/24"}})
    assert updated["spec"] == {"subnet": "10.2.0.0/24"}
    status = await store.update_status({**pool("p1"), "status": {"allocatedIPCount": 1}})
    assert status["status"] == {"allocatedIPCount": 1}
    assert status["spec"] == {"subnet": "10.2.0.0/24"}


async def test_update_with_a_different_uid_conflicts(store: Store) -> None:
    """An update naming the uid of a deleted-and-recreated object is refused with a conflict."""
    first = await store.create(pool("p1"))
    await store.delete(KIND, "p1")
    await store.create(pool("p1"))
    stale = {**pool("p1"), "metadata": {"name": "p1", "uid": first["metadata"]["uid"]}}
    with pytest.raises(StaleResourceVersion):
        await store.update(stale)


async def test_update_of_a_missing_object_raises_not_found(store: Store) -> None:
    """Neither update nor update_status creates an object."""
    with pytest.raises(ObjectNotFound):
        await store.update(pool("ghost", spec={}))
    with pytest.raises(ObjectNotFound):
        await store.update_status(pool("ghost", status={}))
    items, _ = await store.list(KIND)
    assert items == []


async def test_a_write_that_changes_nothing_keeps_the_version(store: Store) -> None:
    """Re-sending the stored object changes neither its resourceVersion nor the list's."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    _, before = await store.list(KIND)
    assert await store.update(created) == created
    assert await store.update_status(created) == created
    _, after = await store.list(KIND)
    assert after == before


# -- delete and finalizers --------------------------------------------------------------


async def test_delete_without_finalizers_removes_the_object(store: Store) -> None:
    """Delete of an object without finalizers removes it and returns its last state."""
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    last = await store.delete(KIND, "p1")
    assert last is not None
    assert last["metadata"]["uid"] == created["metadata"]["uid"]
    assert last["spec"] == created["spec"]
    with pytest.raises(ObjectNotFound):
        await store.get(KIND, "p1")
    with pytest.raises(ObjectNotFound):
        await store.delete(KIND, "p1")


async def test_delete_with_finalizers_only_marks_the_object(store: Store) -> None:
    """Delete of an object with finalizers sets deletionTimestamp and keeps it readable."""
    obj = pool("p1", spec={"subnet": "10.0.0.0/24"})
    obj["metadata"]["finalizers"] = [FINALIZER]
    created = await store.create(obj)
    marked = await store.delete(KIND, "p1")
    assert marked is not None
    assert RFC3339_UTC.match(marked["metadata"]["deletionTimestamp"])
    assert marked["metadata"]["finalizers"] == [FINALIZER]
    assert rv_of(marked) > rv_of(created)
    assert await store.get(KIND, "p1") == marked
    again = await store.delete(KIND, "p1")
    assert again == marked


async def test_a_deleting_object_keeps_its_deletion_timestamp_and_finalizer_set(store: Store) -> None:
    """While terminating, an update cannot unset deletionTimestamp nor add finalizers."""
    obj = pool("p1", spec={"subnet": "10.0.0.0/24"})
    obj["metadata"]["finalizers"] = [FINALIZER, "other.io/keep"]
    await store.create(obj)
    marked = await store.delete(KIND, "p1")
    assert marked is not None
    cleared = {k: v for k, v in marked["metadata"].items() if k != "deletionTimestamp"}
    updated = await store.update({**marked, "metadata": {**cleared, "labels": {"seen": "yes"}}})
    assert updated["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    more = {**updated["metadata"], "finalizers": [FINALIZER, "other.io/keep", "new.io/late"]}
    with pytest.raises(InvalidRequest, match="finalizer"):
        await store.update({**updated, "metadata": more})
    status = await store.update_status({**updated, "status": {"allocatedIPCount": 0}})
    assert status["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]


async def test_emptying_the_finalizers_of_a_deleting_object_removes_it(store: Store) -> None:
    """The object disappears once an update leaves a terminating object without finalizers."""
    obj = pool("p1")
    obj["metadata"]["finalizers"] = [FINALIZER, "other.io/keep"]
    await store.create(obj)
    marked = await store.delete(KIND, "p1")
    assert marked is not None
    one_left = await store.update(
        {**marked, "metadata": {**marked["metadata"], "finalizers": ["other.io/keep"]}}
    )
    assert (await store.get(KIND, "p1"))["metadata"]["finalizers"] == ["other.io/keep"]
    await store.update({**one_left, "metadata": {**one_left["metadata"], "finalizers": []}})
    with pytest.raises(ObjectNotFound):
        await store.get(KIND, "p1")


async def test_removing_finalizers_of_a_live_object_does_not_delete_it(store: Store) -> None:
    """Without a deletionTimestamp, an empty finalizer list is just an update."""
    obj = pool("p1")
    obj["metadata"]["finalizers"] = [FINALIZER]
    created = await store.create(obj)
    updated = await store.update({**created, "metadata": {**created["metadata"], "finalizers": []}})
    assert not updated["metadata"].get("finalizers")
    assert (await store.get(KIND, "p1"))["metadata"]["uid"] == created["metadata"]["uid"]


# -- watch ------------------------------------------------------------------------------


async def test_watch_from_a_list_version_sees_every_later_change_in_order(store: Store) -> None:
    """A watch from a list's resourceVersion yields ADDED, MODIFIED and DELETED in commit order."""
    await store.create(pool("before"))
    _, list_rv = await store.list(KIND)
    events = store.watch(KIND, resource_version=list_rv)
    obj = pool("p1", spec={"subnet": "10.0.0.0/24"})
    obj["metadata"]["finalizers"] = [FINALIZER]
    created = await store.create(obj)
    await store.create(endpoint("other-kind", "ns"))
    updated = await store.update({**created, "spec": {"subnet": "10.0.0.0/16"}})
    status = await store.update_status({**updated, "status": {"allocatedIPCount": 1}})
    marked = await store.delete(KIND, "p1")
    assert marked is not None
    await store.update({**marked, "metadata": {**marked["metadata"], "finalizers": []}})
    await store.create(pool("p2"))
    await store.delete(KIND, "p2")
    seen: list[WatchEvent] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(seen) < 7:
            seen.append(await anext(events))
    await close_watch(events)
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [
        ("ADDED", "p1"),
        ("MODIFIED", "p1"),
        ("MODIFIED", "p1"),
        ("MODIFIED", "p1"),
        ("DELETED", "p1"),
        ("ADDED", "p2"),
        ("DELETED", "p2"),
    ]
    versions = [rv_of(e.object) for e in seen]
    assert versions == sorted(set(versions))
    assert int(list_rv) < versions[0]
    assert seen[0].object == created
    assert seen[2].object == status
    assert seen[3].object["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]


async def test_watch_from_now_skips_earlier_changes(store: Store) -> None:
    """A watch without a resourceVersion starts after the writes made before it was opened."""
    await store.create(pool("old"))
    events = store.watch(KIND)
    await store.create(pool("new"))
    assert await next_events(events, 1) == [("ADDED", "new")]
    await close_watch(events)


async def test_watch_waits_for_writes_made_after_it_started_waiting(store: Store) -> None:
    """A watcher already blocked on an idle store is woken by the next commit."""
    _, list_rv = await store.list(KIND)
    events = store.watch(KIND, resource_version=list_rv)
    waiting = asyncio.create_task(next_events(events, 2))
    await asyncio.sleep(0)  # let the watcher reach its wait: a yield, not a delay
    assert not waiting.done()
    created = await store.create(pool("late"))
    await store.update_status({**created, "status": {"allocatedIPCount": 1}})
    assert await waiting == [("ADDED", "late"), ("MODIFIED", "late")]
    await close_watch(events)


async def test_watch_narrows_to_a_namespace(store: Store) -> None:
    """A namespaced watch yields only that namespace's events."""
    _, list_rv = await store.list(NS_KIND)
    events = store.watch(NS_KIND, namespace="a", resource_version=list_rv)
    await store.create(endpoint("x", "b"))
    await store.create(endpoint("y", "a"))
    await store.create(endpoint("x", "a"))
    assert await next_events(events, 2) == [("ADDED", "y"), ("ADDED", "x")]
    await close_watch(events)


async def test_watch_with_a_selector_sees_objects_enter_and_leave_it(store: Store) -> None:
    """Under a label selector, an object gaining the label is ADDED and losing it is DELETED."""
    _, list_rv = await store.list(KIND)
    events = store.watch(KIND, resource_version=list_rv, label_selector="team=net")
    plain = await store.create(pool("p1"))
    await store.create(pool("other", {"team": "ops"}))
    joined = await store.update({**plain, "metadata": {**plain["metadata"], "labels": {"team": "net"}}})
    changed = await store.update_status({**joined, "status": {"allocatedIPCount": 1}})
    await store.update({**changed, "metadata": {**changed["metadata"], "labels": {"team": "ops"}}})
    await store.create(pool("sentinel", {"team": "net"}))
    assert await next_events(events, 4) == [
        ("ADDED", "p1"),
        ("MODIFIED", "p1"),
        ("DELETED", "p1"),
        ("ADDED", "sentinel"),
    ]
    await close_watch(events)


async def test_watch_from_a_compacted_version_raises_gone(store: Store) -> None:
    """A watch from a resourceVersion older than the retained history fails with 410 Gone."""
    created = await store.create(pool("p1"))
    old_rv = created["metadata"]["resourceVersion"]
    obj = created
    for i in range(HISTORY + 5):
        obj = await store.update_status({**obj, "status": {"allocatedIPCount": i + 1}})
    with pytest.raises(Gone):
        async with asyncio.timeout(DEADLINE_S):
            async for _ in store.watch(KIND, resource_version=old_rv):
                pass
    recent = store.watch(KIND, resource_version=obj["metadata"]["resourceVersion"])
    await store.delete(KIND, "p1")
    assert await next_events(recent, 1) == [("DELETED", "p1")]
    await close_watch(recent)


# -- concurrency ------------------------------------------------------------------------


async def test_concurrent_read_modify_write_loses_no_update(store: Store) -> None:
    """Concurrent writers incrementing one counter with CAS and retry end at exactly their total
    (20 in-process; 6 over HTTP, where each retry is a real round trip)."""
    writers, rounds = (6 if isinstance(store, KubernetesStore) else 20), 5
    created = await store.create(pool("counter"))
    await store.update_status({**created, "status": {"count": 0}})
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        while True:
            current = await store.get(KIND, "counter")
            await asyncio.sleep(0)  # hand the loop to the other writers between read and write
            try:
                await store.update_status({**current, "status": {"count": current["status"]["count"] + 1}})
            except StaleResourceVersion:
                conflicts += 1
                continue
            return

    async def writer() -> None:
        for _ in range(rounds):
            await increment()

    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        for _ in range(writers):
            group.create_task(writer())
    final = await store.get(KIND, "counter")
    assert final["status"]["count"] == writers * rounds
    assert conflicts > 0  # the writers really raced: CAS refused stale writes


async def test_concurrent_creates_of_one_name_have_one_winner(store: Store) -> None:
    """Of many concurrent creates of the same name exactly one succeeds."""

    async def attempt() -> bool:
        await asyncio.sleep(0)
        try:
            await store.create(pool("contested"))
        except ObjectAlreadyExists:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert results.count(True) == 1


async def test_create_keeps_status_for_a_kind_without_the_status_subresource(store: Store) -> None:
    """A SpiderEndpoint (no status subresource in its CRD) is created with its status in one write."""
    obj = endpoint("pod", "a")
    obj["status"] = {"current": {"uid": "u1", "node": "n1", "ips": []}}
    created = await store.create(obj)
    assert created["status"] == obj["status"]
    assert (await store.get(NS_KIND, "pod", "a"))["status"] == obj["status"]
