"""The leader's SpiderMultusConfig reconciler against the test API server: each configuration's
NetworkAttachmentDefinition created, kept equal to what it renders (edits, deletions and
conflicts repaired), deleted with it by garbage collection, and a NAD it does not own left alone
with an Event saying why."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.domain import nad_render
from spiderpool_controller.multus_reconciler import REASON_INVALID, REASON_NOT_OURS, MultusConfigReconciler

from tests.component.cluster_api import NADS, SPIDER, ClusterApi, cluster_api, eventually

NS = "net"


def smc(
    name: str, master: str = "ens192", annotations: dict[str, str] | None = None, **macvlan: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    body = {"cniType": "macvlan", "macvlan": {"master": [master], **macvlan}}
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": mc.KIND, "metadata": meta, "spec": body}


def smc_path(name: str = "") -> str:
    base = f"{SPIDER}/namespaces/{NS}/spidermultusconfigs"
    return f"{base}/{name}" if name else base


def nad_path(name: str = "") -> str:
    base = f"{NADS}/namespaces/{NS}/network-attachment-definitions"
    return f"{base}/{name}" if name else base


class Running:
    def __init__(self, api: ClusterApi) -> None:
        self.api = api
        self.reconciler = MultusConfigReconciler(api.rest, retry_base_s=0.05, retry_max_s=0.5)

    async def nad(self, name: str) -> dict[str, Any] | None:
        return await self.api.get(nad_path(name))

    async def expected_config(self, name: str) -> str:
        stored = await self.api.get(smc_path(name))
        assert stored is not None
        return str(nad_render.render(mc.apply_defaults(stored))["spec"]["config"])

    async def events(self, reason: str) -> list[dict[str, Any]]:
        listing = await self.api.rest.get(f"/api/v1/namespaces/{NS}/events")
        return [e for e in listing.get("items") or [] if e.get("reason") == reason]


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async with cluster_api() as api:
        await api.namespace(NS)
        run = Running(api)
        task = asyncio.create_task(run.reconciler.run())
        try:
            yield run
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _has_config(run: Running, name: str, config: str) -> bool:
    nad = await run.nad(name)
    return nad is not None and (nad.get("spec") or {}).get("config") == config


async def test_a_spidermultusconfig_gets_its_nad_controlled_by_it(running: Running) -> None:
    """Created with kubectl's semantics, the configuration's NAD appears with the rendered conflist
    and a controller owner reference carrying the configuration's UID."""
    created = await running.api.create(smc_path(), smc("macvlan-a", ippools={"ipv4": ["pool-a"]}))
    nad = await eventually(lambda: running.nad("macvlan-a"), "the NAD")
    assert nad["spec"]["config"] == await running.expected_config("macvlan-a")
    assert json.loads(nad["spec"]["config"])["plugins"][0]["ipam"] == {
        "type": "spiderpool",
        "default_ipv4_ippool": ["pool-a"],
    }
    (owner,) = nad["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "SpiderMultusConfig",
        "macvlan-a",
        created["metadata"]["uid"],
        True,
    )


async def test_an_edit_of_the_configuration_reaches_its_nad(running: Running) -> None:
    """Changing the master (a merge patch, as kubectl edit sends) rewrites spec.config."""
    await running.api.create(smc_path(), smc("macvlan-b"))
    await eventually(lambda: running.nad("macvlan-b"), "the NAD")
    await running.api.rest.merge_patch(smc_path("macvlan-b"), {"spec": {"macvlan": {"master": ["ens224"]}}})
    expected = await running.expected_config("macvlan-b")
    assert '"master":"ens224"' in expected
    await eventually(lambda: _has_config(running, "macvlan-b", expected), "the new master in the NAD")


async def test_a_deleted_or_edited_nad_is_put_back(running: Running) -> None:
    """Deleting the NAD re-creates it; editing its config by hand is reverted."""
    await running.api.create(smc_path(), smc("macvlan-c"))
    first = await eventually(lambda: running.nad("macvlan-c"), "the NAD")
    expected = first["spec"]["config"]
    await running.api.delete(nad_path("macvlan-c"))

    async def recreated() -> bool:
        nad = await running.nad("macvlan-c")
        return nad is not None and nad["metadata"]["uid"] != first["metadata"]["uid"]

    await eventually(recreated, "the NAD re-created")
    await running.api.rest.merge_patch(nad_path("macvlan-c"), {"spec": {"config": '{"hand":"edit"}'}})
    await eventually(lambda: _has_config(running, "macvlan-c", expected), "the hand edit reverted")


async def test_a_conflict_on_replace_is_retried(running: Running) -> None:
    """A 409 on the NAD's update (someone wrote it in between) is tried again until it lands."""
    await running.api.create(smc_path(), smc("macvlan-d"))
    await eventually(lambda: running.nad("macvlan-d"), "the NAD")
    faults = running.api.server.faults
    faults.conflicts(2, verb="update", resource="network-attachment-definitions")
    before = faults.count("update", "network-attachment-definitions")
    await running.api.rest.merge_patch(smc_path("macvlan-d"), {"spec": {"macvlan": {"mtu": 1400}}})
    expected = await running.expected_config("macvlan-d")
    await eventually(lambda: _has_config(running, "macvlan-d", expected), "the MTU in the NAD")
    assert faults.count("update", "network-attachment-definitions") - before >= 3


async def test_deleting_the_configuration_deletes_its_nad(running: Running) -> None:
    """The owner reference lets the API server's garbage collector delete the NAD; nothing re-creates it."""
    await running.api.create(smc_path(), smc("macvlan-e"))
    await eventually(lambda: running.nad("macvlan-e"), "the NAD")
    syncs = running.reconciler.syncs
    await running.api.delete(smc_path("macvlan-e"))
    await eventually(lambda: _gone(running, "macvlan-e"), "the NAD collected")
    await eventually(lambda: running.reconciler.syncs > syncs, "the reconciler to see the NAD go")
    assert await running.nad("macvlan-e") is None


async def _gone(run: Running, name: str) -> bool:
    return await run.nad(name) is None


async def test_a_users_nad_of_that_name_is_left_alone_with_an_event(running: Running) -> None:
    """A NAD no SpiderMultusConfig owns is never overwritten: a Warning Event says so; once the
    user deletes it, the configuration generates its own."""
    user_nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "macvlan-f", "namespace": NS},
        "spec": {"config": '{"cniVersion":"0.3.1","name":"mine","type":"bridge"}'},
    }
    mine = await running.api.create(nad_path(), user_nad)
    await running.api.create(smc_path(), smc("macvlan-f"))
    (event,) = await eventually(lambda: running.events(REASON_NOT_OURS), "the Event")
    assert event["involvedObject"]["name"] == "macvlan-f" and event["type"] == "Warning"
    assert "already exists and is managed by no SpiderMultusConfig: it is left as it is" in event["message"]
    untouched = await running.nad("macvlan-f")
    assert (
        untouched is not None
        and untouched["metadata"]["resourceVersion"] == mine["metadata"]["resourceVersion"]
    )
    await running.api.delete(nad_path("macvlan-f"))
    expected = await running.expected_config("macvlan-f")
    await eventually(lambda: _has_config(running, "macvlan-f", expected), "the generated NAD")
    assert len(await running.events(REASON_NOT_OURS)) == 1  # said once


async def test_a_nad_another_configuration_generates_is_not_taken_over(running: Running) -> None:
    """Two configurations naming one NAD (cr-name): the first keeps it; the second gets it once
    the first is deleted and its NAD collected."""
    await running.api.create(smc_path(), smc("first", annotations={mc.ANNO_CR_NAME: "shared"}))
    await eventually(lambda: running.nad("shared"), "the first's NAD")
    await running.api.create(
        smc_path(), smc("second", master="ens224", annotations={mc.ANNO_CR_NAME: "shared"})
    )
    (event,) = await eventually(lambda: running.events(REASON_NOT_OURS), "the Event")
    assert event["involvedObject"]["name"] == "second"
    assert "managed by SpiderMultusConfig 'first'" in event["message"]
    nad = await running.nad("shared")
    assert nad is not None and nad["metadata"]["ownerReferences"][0]["name"] == "first"
    await running.api.delete(smc_path("first"))

    async def seconds() -> bool:
        current = await running.nad("shared")
        return current is not None and current["metadata"]["ownerReferences"][0]["name"] == "second"

    await eventually(seconds, "the second's NAD")
    assert '"master":"ens224"' in (await running.nad("shared") or {})["spec"]["config"]


async def test_a_predecessors_nad_is_adopted_by_a_configuration_of_that_name(running: Running) -> None:
    """A NAD owned by a SpiderMultusConfig of this name with another UID (deleted and created
    again) gets the new owner UID and the new config."""
    stale = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "macvlan-g",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "spiderpool.spidernet.io/v2beta1",
                    "kind": "SpiderMultusConfig",
                    "name": "macvlan-g",
                    "uid": "00000000-dead-4000-8000-000000000000",
                    "controller": True,
                }
            ],
        },
        "spec": {"config": "{}"},
    }
    await running.api.create(nad_path(), stale)
    created = await running.api.create(smc_path(), smc("macvlan-g"))
    expected = await running.expected_config("macvlan-g")
    await eventually(lambda: _has_config(running, "macvlan-g", expected), "the adopted NAD")
    nad = await running.nad("macvlan-g")
    assert nad is not None and nad["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]


async def test_a_configuration_the_webhook_would_refuse_gets_an_event_and_no_nad(running: Running) -> None:
    """Two masters without a bond pass the schema but not validation: an Event names the field."""
    bad = smc("macvlan-h")
    bad["spec"]["macvlan"]["master"] = ["ens192", "ens224"]
    await running.api.create(smc_path(), bad)
    (event,) = await eventually(lambda: running.events(REASON_INVALID), "the Event")
    assert "spec.macvlan.bond: required with 2 master interfaces" in event["message"]
    assert await running.nad("macvlan-h") is None
    await running.api.rest.merge_patch(
        smc_path("macvlan-h"), {"spec": {"macvlan": {"bond": {"name": "bond0", "mode": 1}}}}
    )
    nad = await eventually(lambda: running.nad("macvlan-h"), "the NAD once fixed")
    assert json.loads(nad["spec"]["config"])["plugins"][0]["type"] == "ifacer"
