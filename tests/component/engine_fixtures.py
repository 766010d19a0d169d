"""Helpers for IPAM engine tests: a real SQLite store in a temp dir, pools, requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spiderpool_controller.domain.models import new_object
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.sqlite import SqliteStore


def pool_manifest(name: str, subnet: str, ips: list[str], **spec: Any) -> dict[str, Any]:
    version = 6 if ":" in subnet else 4
    return new_object("SpiderIPPool", name, spec={"ipVersion": version, "subnet": subnet, "ips": ips, **spec})


def request(n: int | str, ifname: str = "eth0", **kw: Any) -> AllocationRequest:
    kw.setdefault("pod_uid", f"uid-{n}")
    kw.setdefault("pod_namespace", "ns")
    kw.setdefault("pod_name", f"pod-{n}")
    kw.setdefault("node", "node-1")
    kw.setdefault("network", "net-a")
    return AllocationRequest(container_id=f"cid-{n}", ifname=ifname, **kw)


async def new_engine(path: Path, store: Store | None = None, **settings: Any) -> tuple[IpamEngine, Store]:
    store = store or SqliteStore(path)
    engine = IpamEngine(store, EngineSettings(**settings))
    await engine.start()
    return engine, store


async def allocated_in_store(store: Store, pool: str) -> dict[str, Any]:
    import json  # noqa: PLC0415

    obj = await store.get("SpiderIPPool", pool)
    text = (obj.get("status") or {}).get("allocatedIPs")
    return json.loads(text) if text else {}
