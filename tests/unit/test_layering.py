"""The one import rule import-linter cannot express: an allowlist for the shims.

The layering contracts (the domain imports no grpc, protobuf, Kubernetes client or pyroute2,
even through ``spiderpool_common``; servicers never import the store; the plugins import
nothing from the services; the services' layers) are import-linter contracts in
pyproject.toml, run by ``make lint``. import-linter can forbid modules but cannot say
"only these", which is what the shims need: everything the container runtime executes,
followed transitively through our own modules, imports only a few C-level stdlib modules.
tests/component/test_shim_imports.py checks the same at run time, on the installed shims.
"""

from __future__ import annotations

import grimp
import pytest

SHIM_MODULES = frozenset(
    {
        *(
            f"spiderpool_cni.{m}"
            for m in ("shim", "ipam_main", "h2unary", "hpack", "wire", "cnijson", "codes", "spool")
        ),
        "spiderpool_coordinator.shim",
    }
)
# The packages' own __init__ modules run too; both are empty.
SHIM_PACKAGES = frozenset({"spiderpool_cni", "spiderpool_coordinator"})
SHIM_STDLIB = frozenset({"_json", "_socket", "posix", "sys", "time", "binascii", "traceback", "errno"})


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*SHIM_PACKAGES, include_external_packages=True, cache_dir=None)


def violations(graph: grimp.ImportGraph, module: str) -> list[str]:
    """What ``module`` reaches, directly or through other modules, outside the shims' allowlist."""
    reached = set(graph.find_upstream_modules(module)) - {"__future__"}
    ours = {m for m in reached if m.split(".")[0] in SHIM_PACKAGES}
    return sorted((ours - SHIM_MODULES - SHIM_PACKAGES) | (reached - ours - SHIM_STDLIB))


@pytest.mark.parametrize("module", sorted(SHIM_MODULES))
def test_shim_modules_reach_only_light_stdlib_and_other_shim_modules(
    graph: grimp.ImportGraph, module: str
) -> None:
    """A shim module reaches, transitively, only the listed C-level stdlib modules and other shim modules."""
    assert violations(graph, module) == []


def test_a_heavy_module_two_imports_away_is_reported() -> None:
    """shim -> wire -> json and shim -> wire -> spiderpool_cni.install are both violations."""
    g = grimp.ImportGraph()
    for name in ("spiderpool_cni", "spiderpool_cni.shim", "spiderpool_cni.wire", "spiderpool_cni.install"):
        g.add_module(name)
    g.add_module("json", is_squashed=True)
    g.add_module("posix", is_squashed=True)
    g.add_import(importer="spiderpool_cni.shim", imported="spiderpool_cni.wire")
    g.add_import(importer="spiderpool_cni.shim", imported="posix")
    g.add_import(importer="spiderpool_cni.wire", imported="json")
    g.add_import(importer="spiderpool_cni.wire", imported="spiderpool_cni.install")
    assert violations(g, "spiderpool_cni.shim") == ["json", "spiderpool_cni.install"]
