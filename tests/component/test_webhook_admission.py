"""The webhooks' decisions over a real SQLite store: the embedded mode's rules, answered as verdicts."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import Conflict, InvalidObject
from spiderpool_controller.domain import models, multus_config, validation
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.resource_service import ResourceService
from spiderpool_controller.store.contract import Obj, StoreUnavailable
from spiderpool_controller.store.fenced import FencedStore
from spiderpool_controller.store.sqlite import SqliteStore
from spiderpool_controller.webhook.admission import Admission, StoreReadFailed
from spiderpool_controller.webhook.review import AdmissionRequest, Verdict

from tests.kubeapi.patch import json_patch  # an independent RFC 6902 implementation


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    await s.close()


@pytest.fixture
def service(store: SqliteStore) -> ResourceService:
    """The embedded mode's front door on the same store."""
    return ResourceService(store)


def pool(name: str = "pool-a", **spec: Any) -> Obj:
    base: dict[str, Any] = {"subnet": "10.6.0.0/24", "ips": ["10.6.0.10-10.6.0.20"], "gateway": "10.6.0.1"}
    base.update(spec)
    return models.new_object(models.KIND_IPPOOL, name, spec={k: v for k, v in base.items() if v is not None})


def request(operation: str, obj: Obj | None, old: Obj | None = None, **fields: Any) -> AdmissionRequest:
    """A review as the API server sends it for ``obj`` (or ``old`` on DELETE)."""
    subject = obj if obj is not None else old
    assert subject is not None
    return AdmissionRequest(
        uid="uid-1",
        operation=operation,
        kind=fields.pop("kind", subject["kind"]),
        group=fields.pop("group", models.API_GROUP),
        version="v2beta1",
        name=subject["metadata"]["name"],
        object=obj,
        old_object=old,
        **fields,
    )


async def allocate(store: SqliteStore, name: str, ips: dict[str, str]) -> Obj:
    """Record allocations as the IPAM engine does: a status write on the pool."""
    current = await store.get(models.KIND_IPPOOL, name)
    records = {ip: models.AllocationRecord(pod=pod, pod_uid=f"uid-{pod}") for ip, pod in ips.items()}
    status = models.pool_status_dict(records, current["status"]["totalIPCount"])
    return await store.update_status({**current, "status": status})


class FailingReader:
    """A reader that fails (or hangs) on list, recording that it was asked."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls = 0

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        raise AssertionError("get is not used by the rules")

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")


# --- mutating ------------------------------------------------------------------------------


async def test_mutation_patches_the_sent_object_into_the_embedded_defaults(
    store: SqliteStore, service: ResourceService
) -> None:
    """The patch gives the object the version, label, finalizer and merged ranges embedded apply stores."""
    manifest = pool(ips=["10.6.0.15-10.6.0.20", "10.6.0.10-10.6.0.14"], excludeIPs=["10.6.0.12", "10.6.0.11"])
    sent = copy.deepcopy(manifest)
    sent["metadata"].update(uid="u", creationTimestamp="2026-01-01T00:00:00Z", generation=1)
    verdict = await Admission(store).mutate(models.KIND_IPPOOL, request("CREATE", sent))
    assert verdict.allowed and verdict.patch
    patched = json_patch(sent, list(verdict.patch))
    embedded, _, _ = await service.apply(manifest)
    assert patched["spec"] == embedded["spec"]
    assert patched["spec"]["ips"] == ["10.6.0.10-10.6.0.20"] and patched["spec"]["excludeIPs"] == [
        "10.6.0.11-10.6.0.12"
    ]
    assert (
        patched["metadata"]["labels"]
        == embedded["metadata"]["labels"]
        == {"ipam.spidernet.io/ippool-cidr": "10-6-0-0-24"}
    )
    assert (
        patched["metadata"]["finalizers"] == embedded["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    )
    assert patched["metadata"]["uid"] == "u"  # server fields are kept, not removed by the patch


async def test_mutation_of_a_defaulted_object_needs_no_patch(store: SqliteStore) -> None:
    """Re-sending an already defaulted pool (e.g. an UPDATE of labels only) answers without a patch."""
    obj = validation.default_object(pool())
    verdict = await Admission(store).mutate(models.KIND_IPPOOL, request("UPDATE", obj, obj))
    assert verdict == Verdict.allow()


async def test_mutation_leaves_an_object_being_deleted_alone(store: SqliteStore) -> None:
    """Removing the finalizer of a terminating pool is not undone by the mutating webhook."""
    going = validation.default_object(pool())
    going["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[])
    verdict = await Admission(store).mutate(models.KIND_IPPOOL, request("UPDATE", going, going))
    assert verdict == Verdict.allow()


async def test_coordinator_and_reserved_ip_get_their_defaults(store: SqliteStore) -> None:
    """A SpiderCoordinator gets the finalizer and upstream's spec defaults; a SpiderReservedIP its version."""
    coordinator = models.new_object(models.KIND_COORDINATOR, "default", spec={"podCIDRType": "auto"})
    verdict = await Admission(store).mutate(models.KIND_COORDINATOR, request("CREATE", coordinator))
    patched = json_patch(coordinator, list(verdict.patch))
    assert patched == validation.default_object(coordinator)
    assert patched["spec"]["mode"] == "auto" and patched["spec"]["vethMTU"] == 1500
    assert patched["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    reserved = models.new_object(models.KIND_RESERVED_IP, "r", spec={"ips": ["fd00::10"]})
    verdict = await Admission(store).mutate(models.KIND_RESERVED_IP, request("CREATE", reserved))
    assert json_patch(reserved, list(verdict.patch))["spec"]["ipVersion"] == 6


# --- validating ----------------------------------------------------------------------------


async def test_overlapping_subnet_is_denied_from_the_stored_pools(
    store: SqliteStore, service: ResourceService
) -> None:
    """A pool whose subnet overlaps a stored pool's is denied 422 with the embedded mode's message."""
    await service.apply(pool("existing", subnet="10.6.0.0/16", ips=["10.6.1.10"], gateway=None))
    new = validation.default_object(pool())
    verdict = await Admission(store).validate(models.KIND_IPPOOL, request("CREATE", new))
    message = (
        'SpiderIPPool "pool-a": spec.subnet: 10.6.0.0/24 overlaps spec.subnet 10.6.0.0/16 '
        'of SpiderIPPool "existing"'
    )
    assert verdict == Verdict.deny(422, "Invalid", message)
    with pytest.raises(InvalidObject, match=r"overlaps spec\.subnet 10\.6\.0\.0/16"):
        await service.apply(pool())  # the embedded mode refuses the same pool the same way


async def test_a_valid_pool_is_allowed(store: SqliteStore, service: ResourceService) -> None:
    """A pool that breaks no rule is allowed, with its peers read from the store."""
    await service.apply(pool("other", subnet="10.7.0.0/24", ips=["10.7.0.10"], gateway="10.7.0.1"))
    verdict = await Admission(store).validate(
        models.KIND_IPPOOL, request("CREATE", validation.default_object(pool()))
    )
    assert verdict == Verdict.allow()


async def test_removing_an_allocated_ip_is_denied_naming_the_pod(
    store: SqliteStore, service: ResourceService
) -> None:
    """An UPDATE dropping an IP a pod holds is denied; the old object carries the allocation."""
    await service.apply(pool())
    old = await allocate(store, "pool-a", {"10.6.0.20": "team-a/web-0"})
    new = copy.deepcopy(old)
    new["spec"]["ips"] = ["10.6.0.10-10.6.0.19"]
    verdict = await Admission(store).validate(models.KIND_IPPOOL, request("UPDATE", new, old))
    assert not verdict.allowed and verdict.code == 422
    assert verdict.message.startswith(
        'SpiderIPPool "pool-a": spec.ips: remove an IP address 10.6.0.20 that is being used by '
        "Pod team-a/web-0; a pool's IPs are spec.ips minus spec.excludeIPs."
    )
    # The pool annotation that forces a range change lets the same UPDATE through
    # (issue 12: the pod keeps its address; spiderpoolctl check reports it).
    new["metadata"].setdefault("annotations", {})["ipam.spidernet.io/ippool-force-range-change"] = "true"
    forced = await Admission(store).validate(models.KIND_IPPOOL, request("UPDATE", new, old))
    assert forced.allowed, forced.message


async def test_immutable_subnet_is_denied_on_update(store: SqliteStore) -> None:
    """spec.subnet cannot change: 422 with the immutable message."""
    old = validation.default_object(pool())
    new = validation.default_object(pool(subnet="10.9.0.0/24", ips=[], gateway=None))
    verdict = await Admission(store).validate(models.KIND_IPPOOL, request("UPDATE", new, old))
    assert verdict.message.startswith('SpiderIPPool "pool-a": spec.subnet: is immutable (stored: 10.6.0.0/24')


async def test_deleting_a_pool_in_use_is_forbidden_when_enabled(
    store: SqliteStore, service: ResourceService
) -> None:
    """DELETE with allocations: 403 with validate_deletes on; else allowed with a warning why it stays."""
    await service.apply(pool())
    in_use = await allocate(store, "pool-a", {"10.6.0.10": "ns/a"})
    strict = Admission(store, ValidationSettings(validate_deletes=True))
    verdict = await strict.validate(models.KIND_IPPOOL, request("DELETE", None, in_use))
    assert (verdict.allowed, verdict.code, verdict.reason) == (False, 403, "Forbidden")
    assert verdict.message.startswith('SpiderIPPool "pool-a": cannot delete an IPPool with allocated IPs(1)')
    lenient = await Admission(store).validate(models.KIND_IPPOOL, request("DELETE", None, in_use))
    assert lenient.allowed and lenient.warnings == (
        'SpiderIPPool "pool-a" still has 1 allocated IPs: it stays (Terminating, no new allocations) '
        "until their pods release them",
    )
    idle, _, _ = await service.apply(pool("idle", subnet="10.8.0.0/24", ips=["10.8.0.10"], gateway=None))
    assert await strict.validate(models.KIND_IPPOOL, request("DELETE", None, idle)) == Verdict.allow()


async def test_embedded_delete_shares_the_delete_rule(store: SqliteStore) -> None:
    """The embedded mode with validate_deletes refuses the same delete and changes nothing."""
    service = ResourceService(store, ValidationSettings(validate_deletes=True))
    await service.apply(pool())
    await allocate(store, "pool-a", {"10.6.0.10": "ns/a"})
    with pytest.raises(Conflict, match=r"cannot delete an IPPool with allocated IPs\(1\)"):
        await service.delete(models.KIND_IPPOOL, "pool-a")
    assert "deletionTimestamp" not in (await store.get(models.KIND_IPPOOL, "pool-a"))["metadata"]


async def test_an_update_of_a_pool_being_deleted_is_forbidden(store: SqliteStore) -> None:
    """While our finalizer holds it a terminating pool cannot change (403); dropping the finalizer can."""
    old = validation.default_object(pool())
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    new = copy.deepcopy(old)
    new["spec"]["ips"] = ["10.6.0.10-10.6.0.30"]
    verdict = await Admission(store).validate(models.KIND_IPPOOL, request("UPDATE", new, old))
    assert (verdict.code, verdict.reason) == (403, "Forbidden")
    released = copy.deepcopy(old)
    released["metadata"]["finalizers"] = []
    reader = FailingReader(StoreUnavailable("down"))
    assert (
        await Admission(reader).validate(models.KIND_IPPOOL, request("UPDATE", released, old))
        == Verdict.allow()
    )
    assert reader.calls == 0  # nothing to compare against for an object on its way out


async def test_a_standby_replica_judges_with_reads_only(store: SqliteStore, service: ResourceService) -> None:
    """Through a store fenced for writes (a standby), the webhooks still read peers and decide."""
    await service.apply(pool("existing", subnet="10.6.0.0/16", ips=["10.6.1.10"], gateway=None))
    standby = FencedStore(store, may_write=lambda: False)
    new = validation.default_object(pool())
    verdict = await Admission(standby).validate(models.KIND_IPPOOL, request("CREATE", new))
    assert verdict.code == 422 and "overlaps spec.subnet 10.6.0.0/16" in verdict.message


async def test_coordinator_with_a_bad_mac_prefix_is_denied(store: SqliteStore) -> None:
    """A podMACPrefix whose first byte is multicast is denied with the coordinator rule's message."""
    bad = validation.default_object(
        models.new_object(
            models.KIND_COORDINATOR, "default", spec={"podCIDRType": "auto", "podMACPrefix": "0b:01"}
        )
    )
    verdict = await Admission(store).validate(models.KIND_COORDINATOR, request("CREATE", bad))
    assert (verdict.allowed, verdict.code) == (False, 422)
    assert verdict.message.startswith("SpiderCoordinator default: spec.podMACPrefix: ")
    with pytest.raises(InvalidObject) as info:
        validation.validate_create(bad)
    assert info.value.message == verdict.message


async def test_own_field_errors_are_reported_without_reading_the_store() -> None:
    """A gateway outside the subnet is denied before any peer is listed."""
    reader = FailingReader(StoreUnavailable("down"))
    bad = validation.default_object(pool(gateway="10.9.0.1"))
    verdict = await Admission(reader).validate(models.KIND_IPPOOL, request("CREATE", bad))
    assert (
        verdict.message
        == 'SpiderIPPool "pool-a": spec.gateway: 10.9.0.1 is not inside spec.subnet 10.6.0.0/24'
    )
    assert reader.calls == 0


async def test_a_store_that_cannot_answer_is_an_internal_error() -> None:
    """A failing or hanging store read denies with 500 and says which read and why."""
    obj = validation.default_object(pool())
    failing = await Admission(FailingReader(StoreUnavailable("API server unreachable"))).validate(
        models.KIND_IPPOOL, request("CREATE", obj)
    )
    assert (failing.code, failing.reason) == (500, "InternalError")
    assert failing.message == (
        "cannot check SpiderIPPool against other objects: listing SpiderIPPools failed: "
        "API server unreachable; try again"
    )
    hanging = await Admission(FailingReader(None), read_timeout_s=0.05).validate(
        models.KIND_IPPOOL, request("CREATE", obj)
    )
    assert hanging.message == (
        "cannot check SpiderIPPool against other objects: listing SpiderIPPools took longer than 0.05s; "
        "try again"
    )


async def test_a_review_for_another_kind_is_a_bad_request(store: SqliteStore) -> None:
    """A SpiderSubnet sent to the SpiderIPPool webhook (a misregistration) is denied 400, not validated."""
    subnet = models.new_object(models.KIND_SUBNET, "s", spec={"subnet": "10.6.0.0/16"})
    verdict = await Admission(store).validate(models.KIND_IPPOOL, request("CREATE", subnet))
    assert (verdict.code, verdict.reason) == (400, "BadRequest")
    assert verdict.message == (
        "this webhook serves spiderpool.spidernet.io SpiderIPPool; the review is for spiderpool.spidernet.io "
        "SpiderSubnet (check the webhook configuration's rules)"
    )


def multus(name: str = "macvlan-ens192", annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    """A SpiderMultusConfig in namespace kube-system (macvlan on ens192 unless ``spec`` says otherwise)."""
    obj = models.new_object(
        models.KIND_MULTUS_CONFIG,
        name,
        "kube-system",
        spec=spec or {"cniType": "macvlan", "macvlan": {"master": ["ens192"]}},
    )
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


class NadOwners:
    """A NetworkAttachmentDefinition lookup answering from a table, recording the names asked."""

    def __init__(self, owners: dict[tuple[str, str], str], error: Exception | None = None) -> None:
        self.owners = owners
        self.error = error
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, namespace: str, name: str) -> str | None:
        self.asked.append((namespace, name))
        if self.error is not None:
            raise self.error
        return self.owners.get((namespace, name))


async def test_multus_config_gets_the_domain_defaults_and_rules(store: SqliteStore) -> None:
    """SpiderMultusConfig is defaulted and validated by domain/multus_config.py, the embedded rules."""
    smc = multus()
    verdict = await Admission(store).mutate(models.KIND_MULTUS_CONFIG, request("CREATE", smc))
    patched = json_patch(smc, list(verdict.patch))
    assert patched == multus_config.apply_defaults(smc)
    assert patched["spec"]["macvlan"]["vlanID"] == 0 and patched["spec"]["coordinator"]["mode"] == "auto"
    assert (
        await Admission(store).validate(models.KIND_MULTUS_CONFIG, request("CREATE", patched))
        == Verdict.allow()
    )
    bad = multus_config.apply_defaults(multus(cniType="macvlan"))
    denied = await Admission(store).validate(models.KIND_MULTUS_CONFIG, request("CREATE", bad))
    assert denied == Verdict.deny(
        422,
        "Invalid",
        'SpiderMultusConfig "kube-system/macvlan-ens192": spec.macvlan: '
        "required when spec.cniType is macvlan",
    )


async def test_a_multus_config_cannot_take_over_another_configs_nad(store: SqliteStore) -> None:
    """A config whose NAD another config manages is refused; a NAD of its own, or none, is fine."""
    owners = NadOwners({("kube-system", "shared"): "first", ("kube-system", "mine"): "macvlan-ens192"})
    admission = Admission(store, nad_owners=owners)
    takeover = multus_config.apply_defaults(multus(annotations={multus_config.ANNO_CR_NAME: "shared"}))
    verdict = await admission.validate(models.KIND_MULTUS_CONFIG, request("CREATE", takeover))
    assert (verdict.code, verdict.reason) == (422, "Invalid")
    assert verdict.message == (
        'SpiderMultusConfig "kube-system/macvlan-ens192": metadata.annotations[multus.spidernet.io/cr-name]: '
        "the NetworkAttachmentDefinition 'shared' already exists and is managed by SpiderMultusConfig 'first'"
    )
    own = multus_config.apply_defaults(multus(annotations={multus_config.ANNO_CR_NAME: "mine"}))
    assert await admission.validate(models.KIND_MULTUS_CONFIG, request("CREATE", own)) == Verdict.allow()
    fresh = multus_config.apply_defaults(multus())
    assert await admission.validate(models.KIND_MULTUS_CONFIG, request("CREATE", fresh)) == Verdict.allow()
    assert owners.asked == [
        ("kube-system", "shared"),
        ("kube-system", "mine"),
        ("kube-system", "macvlan-ens192"),
    ]
    bad = multus_config.apply_defaults(multus(cniType="macvlan"))
    await admission.validate(models.KIND_MULTUS_CONFIG, request("CREATE", bad))
    assert len(owners.asked) == 3  # an invalid config is refused before anything is read


async def test_a_nad_lookup_that_fails_is_an_internal_error(store: SqliteStore) -> None:
    """The NAD owner cannot be read (an error, or no answer in time): denied 500 saying which read failed."""
    failing = NadOwners({}, StoreReadFailed("cannot check who manages NetworkAttachmentDefinition x: down"))
    smc = multus_config.apply_defaults(multus())
    verdict = await Admission(store, nad_owners=failing).validate(
        models.KIND_MULTUS_CONFIG, request("CREATE", smc)
    )
    assert (verdict.code, verdict.message) == (
        500,
        "cannot check who manages NetworkAttachmentDefinition x: down",
    )

    async def never(namespace: str, name: str) -> str | None:
        await asyncio.Event().wait()
        return None

    hanging = Admission(store, nad_owners=never, read_timeout_s=0.05)
    verdict = await hanging.validate(models.KIND_MULTUS_CONFIG, request("CREATE", smc))
    assert (verdict.code, verdict.message) == (
        500,
        "cannot check who manages NetworkAttachmentDefinition kube-system/macvlan-ens192: "
        "the read took longer than 0.05s; try again",
    )
