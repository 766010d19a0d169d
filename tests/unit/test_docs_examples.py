"""Every manifest, annotation and network configuration the docs show is one the code accepts:
spiderpool objects pass the controller's defaulting and validation (a SpiderMultusConfig's generated
conflist the agent's parser too), pod and namespace annotations
pass the parsers the controller and agent use, CNI configurations pass the agent's own parser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from spiderpool_agent.cni_call import parse_network_config, parse_pod_metadata
from spiderpool_agent.pod_annotations import check_pod_annotations
from spiderpool_controller.domain import annotations as anno
from spiderpool_controller.domain import multus_config, nad_render, validation

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
SPIDER_KINDS = {"SpiderIPPool", "SpiderSubnet", "SpiderReservedIP"}


def blocks(language: str) -> list[tuple[str, str]]:
    """(page:line, text) of every fenced block of ``language`` in docs/."""
    out: list[tuple[str, str]] = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(rf"```{language}\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return out


def check_annotations(annotations: dict[str, str], namespace: str = "default") -> None:
    check_pod_annotations(annotations)
    anno.parse_ippool(annotations)
    anno.parse_ippools(annotations)
    anno.parse_routes(annotations)
    anno.parse_default_route_nic(annotations)
    anno.parse_namespace_default_pools(annotations)
    anno.parse_multus_networks(annotations, namespace)


def check_network(obj: dict[str, Any]) -> None:
    """A conflist's spiderpool plugin (name and version from the list), or a plugin config."""
    if "plugins" in obj:
        plugin = next(p for p in obj["plugins"] if (p.get("ipam") or {}).get("type") == "spiderpool")
        obj = {**plugin, "name": obj["name"], "cniVersion": obj["cniVersion"]}
    config = parse_network_config(json.dumps(obj).encode(), None)
    assert config.ipam is not None


def check_document(doc: dict[str, Any]) -> None:
    kind = doc.get("kind")
    meta = doc.get("metadata") or {}
    if kind in SPIDER_KINDS:
        validation.validate_create(validation.default_object(doc))
    elif kind == "NetworkAttachmentDefinition":
        check_network(json.loads(doc["spec"]["config"]))
    elif kind == "SpiderMultusConfig":  # valid, and the conflist it generates is one the agent takes
        defaulted = multus_config.apply_defaults(doc)
        multus_config.validate(defaulted)
        check_network(json.loads(nad_render.render(defaulted)["spec"]["config"]))
    check_annotations(meta.get("annotations") or {}, meta.get("namespace", "default"))


@pytest.mark.parametrize(("where", "text"), [pytest.param(w, t, id=w) for w, t in blocks("yaml")])
def test_yaml_examples_are_accepted(where: str, text: str) -> None:
    """Objects validate, annotations parse (a snippet of metadata counts as the pod's)."""
    for doc in yaml.safe_load_all(text):
        assert isinstance(doc, dict), where
        check_document(doc)


@pytest.mark.parametrize(("where", "text"), [pytest.param(w, t, id=w) for w, t in blocks("json")])
def test_json_examples_are_accepted(where: str, text: str) -> None:
    """Network configurations parse as an ADD's; an ``args`` fragment's ``args.cni`` parses."""
    stripped = text.strip()
    obj = json.loads(stripped if stripped.startswith("{") else "{" + stripped + "}")
    if "args" in obj and len(obj) == 1:
        parse_pod_metadata(obj)
    else:
        check_network(obj)


def test_the_docs_show_examples_of_each_kind() -> None:
    """The checks above have something to check: pools, a NAD, a conflist, annotations."""
    yaml_text = " ".join(text for _, text in blocks("yaml"))
    for needle in ("kind: SpiderIPPool", "kind: SpiderReservedIP", "kind: SpiderSubnet",
                   "kind: NetworkAttachmentDefinition", "ipam.spidernet.io/ippools"):  # fmt: skip
        assert needle in yaml_text
    assert any('"plugins"' in text for _, text in blocks("json"))
