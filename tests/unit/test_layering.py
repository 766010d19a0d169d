"""The architecture's import rules, checked on the source (style.md "Layout"):

- domain logic imports neither grpc, kubernetes_asyncio, pyroute2 nor generated protobuf;
- gRPC servicer modules translate only: they never reach into the store;
- the plugins import nothing from the services;
- the shims' modules import only the standard library's light modules and each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "services/controller/spiderpool_controller/domain"
SERVICERS = ROOT / "services/controller/spiderpool_controller/grpcapi"
PLUGINS = ROOT / "plugins"
SHIM_MODULES = [
    *(
        ROOT / "plugins/ipam/spiderpool_cni" / f"{m}.py"
        for m in ("shim", "ipam_main", "h2unary", "hpack", "wire", "cnijson", "codes", "spool")
    ),
    ROOT / "plugins/coordinator/spiderpool_coordinator/shim.py",
]
SHIM_STDLIB = {"_json", "_socket", "posix", "sys", "time", "binascii", "traceback", "errno", "__future__"}
SERVICE_PACKAGES = {"spiderpool_controller", "spiderpool_agent", "spiderpool_common", "spiderpool_tools"}


def imported_roots(path: Path) -> set[str]:
    """Top-level module names a file imports (module level and inside functions)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_logic_imports_no_transport_kubernetes_or_netlink(path: Path) -> None:
    """A domain module is plain logic: no grpc, kubernetes_asyncio, pyroute2 or generated code."""
    forbidden = imported_roots(path) & {"grpc", "kubernetes_asyncio", "pyroute2", "spiderpool", "google"}
    assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", sorted(SERVICERS.glob("*.py")), ids=lambda p: p.name)
def test_servicers_translate_and_never_touch_the_store(path: Path) -> None:
    """gRPC servicers call services and engines; state is reached only through them."""
    store = {m for m in imported_modules(path) if m.startswith("spiderpool_controller.store")}
    assert not store, f"{path.relative_to(ROOT)} imports {sorted(store)}"


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_import_nothing_from_the_services(path: Path) -> None:
    """The plugins (shims and the coordinator library) depend on no service package."""
    forbidden = imported_roots(path) & SERVICE_PACKAGES
    assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", SHIM_MODULES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_shim_modules_import_only_light_stdlib_modules(path: Path) -> None:
    """What the container runtime executes imports only a few C-level stdlib modules and its own."""
    own = {"spiderpool_cni", "spiderpool_coordinator"}
    extra = imported_roots(path) - SHIM_STDLIB - own
    assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"
