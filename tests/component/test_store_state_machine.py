"""The SQLite store against a plain in-memory model, by hypothesis' RuleBasedStateMachine.

Random sequences of create, update, update_status and delete (current, stale or missing
resourceVersions; finalizers coming and going) and reopening the file must leave the
store exactly where the model of the API server's rules says: same objects, same
generations, a resourceVersion that moves by one per change and not at all for a no-op,
and an event log that replays to the listed state.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from spiderpool_common.errors import InvalidRequest
from spiderpool_controller.store.contract import (
    Obj,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
)
from spiderpool_controller.store.sqlite import SqliteStore

KIND = "SpiderIPPool"
T = TypeVar("T")

names = st.sampled_from(["a", "b", "c"])
specs = st.integers(0, 2).map(lambda n: {"v": n})
statuses = st.one_of(st.none(), st.integers(0, 2).map(lambda n: {"n": n}))
label_sets = st.sampled_from([{}, {"x": "1"}, {"x": "2"}])
finalizer_sets = st.sampled_from([[], ["f.io/one"], ["f.io/one", "f.io/two"], ["f.io/two"]])
versions = st.sampled_from(["current", "stale", "none"])


@dataclass(frozen=True)
class Expected:
    """What the API server's rules say one object must look like."""

    uid: str
    rv: int
    spec: dict[str, int]
    status: dict[str, int] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deleting: bool = False
    generation: int = 1


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="store-sm-"))
        self.store = SqliteStore(self.dir / "state.db")
        self.model: dict[str, Expected] = {}
        self.rv = 0  # the store's global version, as the model counts it

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def request(self, name: str, version: str, **sections: Any) -> Obj:
        meta: dict[str, Any] = {"name": name}
        current = self.model.get(name)
        if current is not None and version == "current":
            meta["resourceVersion"] = str(current.rv)
        elif current is not None and version == "stale":
            meta["resourceVersion"] = str(current.rv - 1)
        return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": KIND, "metadata": meta, **sections}

    def changed(self, name: str, stored: Obj, expected: Expected) -> None:
        """Record a write that must have taken the next global version."""
        self.rv += 1
        assert int(stored["metadata"]["resourceVersion"]) == self.rv
        self.model[name] = replace(expected, rv=self.rv)

    @rule(name=names, spec=specs, labels=label_sets, finalizers=finalizer_sets)
    def create(self, name: str, spec: dict[str, int], labels: dict[str, str], finalizers: list[str]) -> None:
        obj = self.request(name, "none", spec=spec)
        obj["metadata"].update(labels=labels, finalizers=finalizers)
        if name in self.model:
            with pytest.raises(ObjectAlreadyExists):
                self.run(self.store.create(obj))
            return
        stored = self.run(self.store.create(obj))
        expected = Expected(stored["metadata"]["uid"], 0, spec, None, labels, tuple(finalizers))
        self.changed(name, stored, expected)

    @rule(name=names, spec=specs, labels=label_sets, finalizers=finalizer_sets, version=versions)
    def update(
        self, name: str, spec: dict[str, int], labels: dict[str, str], finalizers: list[str], version: str
    ) -> None:
        obj = self.request(name, version, spec=spec)
        obj["metadata"].update(labels=labels, finalizers=finalizers)
        old = self.model.get(name)
        if old is None:
            with pytest.raises(ObjectNotFound):
                self.run(self.store.update(obj))
            return
        if version == "stale":
            with pytest.raises(StaleResourceVersion):
                self.run(self.store.update(obj))
            return
        if old.deleting and not set(finalizers) <= set(old.finalizers):
            with pytest.raises(InvalidRequest):
                self.run(self.store.update(obj))
            return
        stored = self.run(self.store.update(obj))
        new = replace(
            old,
            spec=spec,
            labels=labels,
            finalizers=tuple(finalizers),
            generation=old.generation + (spec != old.spec),
        )
        if new == old:
            assert int(stored["metadata"]["resourceVersion"]) == old.rv
        elif old.deleting and not finalizers:
            self.changed(name, stored, new)
            del self.model[name]
        else:
            self.changed(name, stored, new)

    @rule(name=names, status=statuses, version=versions)
    def update_status(self, name: str, status: dict[str, int] | None, version: str) -> None:
        obj = self.request(name, version, spec={"ignored": True})
        if status is not None:
            obj["status"] = status
        old = self.model.get(name)
        if old is None:
            with pytest.raises(ObjectNotFound):
                self.run(self.store.update_status(obj))
            return
        if version == "stale":
            with pytest.raises(StaleResourceVersion):
                self.run(self.store.update_status(obj))
            return
        stored = self.run(self.store.update_status(obj))
        if status == old.status:
            assert int(stored["metadata"]["resourceVersion"]) == old.rv
        else:
            self.changed(name, stored, replace(old, status=status))

    @rule(name=names, version=versions)
    def delete(self, name: str, version: str) -> None:
        old = self.model.get(name)
        rv = None
        if old is not None and version != "none":
            rv = str(old.rv if version == "current" else old.rv - 1)
        if old is None:
            with pytest.raises(ObjectNotFound):
                self.run(self.store.delete(KIND, name))
            return
        if version == "stale":
            with pytest.raises(StaleResourceVersion):
                self.run(self.store.delete(KIND, name, resource_version=rv))
            return
        stored = self.run(self.store.delete(KIND, name, resource_version=rv))
        assert stored is not None
        if not old.finalizers:
            self.changed(name, stored, old)
            del self.model[name]
        elif old.deleting:
            assert int(stored["metadata"]["resourceVersion"]) == old.rv
        else:
            self.changed(name, stored, replace(old, deleting=True, generation=old.generation + 1))

    @rule()
    def reopen(self) -> None:
        self.run(self.store.close())
        self.store = SqliteStore(self.dir / "state.db")

    @precondition(lambda self: self.rv > 0)
    @rule()
    def event_log_replays_to_the_listed_state(self) -> None:
        async def replay() -> dict[str, Obj]:
            state: dict[str, Obj] = {}
            events = self.store.watch(KIND, resource_version="0")
            async with asyncio.timeout(5):
                for _ in range(self.rv):  # one event per version: history is not compacted here
                    event = await anext(events)
                    if event.type == "DELETED":
                        del state[event.object["metadata"]["name"]]
                    else:
                        state[event.object["metadata"]["name"]] = event.object
            await events.aclose()  # type: ignore[attr-defined]
            return state

        replayed = self.run(replay())
        items, _ = self.run(self.store.list(KIND))
        assert replayed == {o["metadata"]["name"]: o for o in items}

    @invariant()
    def store_matches_the_model(self) -> None:
        items, list_rv = self.run(self.store.list(KIND))
        assert int(list_rv) == self.rv
        assert [o["metadata"]["name"] for o in items] == sorted(self.model)
        for obj in items:
            meta = obj["metadata"]
            expected = self.model[meta["name"]]
            assert meta["uid"] == expected.uid
            assert int(meta["resourceVersion"]) == expected.rv
            assert obj["spec"] == expected.spec
            assert obj.get("status") == expected.status
            assert meta.get("labels", {}) == expected.labels
            assert tuple(meta.get("finalizers", ())) == expected.finalizers
            assert ("deletionTimestamp" in meta) == expected.deleting
            assert meta["generation"] == expected.generation

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


TestSqliteStoreStateMachine = StoreMachine.TestCase
TestSqliteStoreStateMachine.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
