"""spiderpoolctl with SpiderMultusConfigs in the embedded mode: apply (defaults and the webhook's
rules), get smc, delete, and ``multus render`` printing the conflist a CNI runtime takes."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from spiderpool_controller.domain import models, multus_config, nad_render

from tests.component.test_spiderpoolctl import ControllerThread, ctl, rows

MACVLAN = """
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata:
  name: macvlan-ens192
  annotations:
    multus.spidernet.io/cni-version: "1.0.0"
spec:
  cniType: macvlan
  macvlan:
    master: [ens192]
    vlanID: 100
    ippools:
      ipv4: [vlan100-v4]
"""


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerThread]:
    sock_dir = Path(tempfile.mkdtemp(prefix="spctl-", dir="/tmp"))
    try:
        with ControllerThread(tmp_path / "state.db", sock_dir / "controller.sock") as thread:
            yield thread
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_apply_and_get_a_spidermultusconfig_in_the_default_namespace(controller: ControllerThread) -> None:
    """apply stores it defaulted (coordinator block, pools) in namespace default; get smc lists it."""
    applied = ctl(controller.address, "apply", "-f", "-", stdin=MACVLAN)
    assert applied.code == 0, applied.err
    assert applied.out == "spidermultusconfig.spiderpool.spidernet.io/macvlan-ens192 created\n"
    table = ctl(controller.address, "get", "smc")
    assert table.code == 0, table.err
    assert [r[0] for r in rows(table.out)] == ["NAME", "macvlan-ens192"] and rows(table.out)[0] == [
        "NAME",
        "AGE",
    ]
    stored = yaml.safe_load(ctl(controller.address, "get", "smc", "macvlan-ens192", "-o", "yaml").out)
    assert stored["metadata"]["namespace"] == "default"
    assert stored["spec"]["coordinator"]["mode"] == "auto" and stored["spec"]["enableCoordinator"] is True
    again = ctl(controller.address, "apply", "-f", "-", stdin=MACVLAN)
    assert again.out == "spidermultusconfig.spiderpool.spidernet.io/macvlan-ens192 unchanged\n"


def test_multus_render_prints_the_conflist_the_cluster_mode_writes(controller: ControllerThread) -> None:
    """multus render prints spec.config of the NAD the controller would generate (ifacer for the VLAN,
    the pools as IPAM defaults, the annotation's CNI version); -o json prints the whole NAD."""
    assert ctl(controller.address, "apply", "-f", "-", stdin=MACVLAN).code == 0
    rendered = ctl(controller.address, "multus", "render", "macvlan-ens192")
    assert rendered.code == 0, rendered.err
    stored = json.loads(ctl(controller.address, "get", "smc", "macvlan-ens192", "-o", "json").out)
    expected = nad_render.render(multus_config.apply_defaults(stored))["spec"]["config"]
    assert rendered.out == expected + "\n"
    conflist = json.loads(rendered.out)
    assert conflist["cniVersion"] == "1.0.0"
    assert [p["type"] for p in conflist["plugins"]] == ["ifacer", "macvlan", "coordinator"]
    assert conflist["plugins"][1]["master"] == "ens192.100"
    nad = json.loads(ctl(controller.address, "multus", "render", "macvlan-ens192", "-o", "json").out)
    assert nad["metadata"]["ownerReferences"][0]["uid"] == stored["metadata"]["uid"]


def test_an_invalid_spidermultusconfig_is_refused_by_field_and_not_stored(
    controller: ControllerThread,
) -> None:
    """Two masters without a bond: the webhook's message, exit 1, nothing stored."""
    bad = MACVLAN.replace("master: [ens192]", "master: [ens192, ens224]")
    result = ctl(controller.address, "apply", "-f", "-", stdin=bad)
    assert result.code == 1
    assert "spec.macvlan.bond: required with 2 master interfaces" in result.err
    listed = ctl(controller.address, "get", "smc")
    assert listed.out == "" and "No resources found in default namespace." in listed.err


def test_the_cr_name_annotation_cannot_be_added_after_creation(controller: ControllerThread) -> None:
    """An update is validated against the stored object: the NAD's name is fixed once created."""
    assert ctl(controller.address, "apply", "-f", "-", stdin=MACVLAN).code == 0
    renamed = MACVLAN.replace("  annotations:\n", "  annotations:\n    multus.spidernet.io/cr-name: other\n")
    result = ctl(controller.address, "apply", "-f", "-", stdin=renamed)
    assert result.code == 1
    assert "cannot be added after creation" in result.err


def test_render_of_a_missing_config_and_delete_by_alias(controller: ControllerThread) -> None:
    """render names a missing object as kubectl does; delete smc removes it."""
    missing = ctl(controller.address, "multus", "render", "nope", "-n", "kube-system")
    assert missing.code == 1
    assert 'SpiderMultusConfig "kube-system/nope" not found' in missing.err
    assert ctl(controller.address, "apply", "-f", "-", stdin=MACVLAN).code == 0
    deleted = ctl(controller.address, "delete", "smc", "macvlan-ens192")
    assert deleted.code == 0, deleted.err
    assert deleted.out == 'spidermultusconfig.spiderpool.spidernet.io "macvlan-ens192" deleted\n'
    assert models.resolve_kind("smc") == models.KIND_MULTUS_CONFIG
