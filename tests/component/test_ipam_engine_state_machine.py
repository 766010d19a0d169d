"""Property test of the IPAM engine over a real SQLite file, with restarts of the store.

Invariants after every step: no address is held twice, a released address is allocatable
again, nothing outside ``ips - excludeIPs - reserved`` is handed out, and the counts in
the persisted status match its records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from spiderpool_common.errors import PoolExhausted
from spiderpool_controller.domain.models import new_object
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.engine_fixtures import pool_manifest, request

T = TypeVar("T")
USABLE = {f"10.20.0.{i}" for i in range(1, 13)} - {"10.20.0.4", "10.20.0.5"} - {"10.20.0.9"}


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="engine-sm-"))
        self.store = SqliteStore(self.dir / "db")
        self.run(
            self.store.create(
                pool_manifest(
                    "p",
                    "10.20.0.0/24",
                    ["10.20.0.1-10.20.0.12"],
                    excludeIPs=["10.20.0.4-10.20.0.5"],
                    default=True,
                )
            )
        )
        self.run(
            self.store.create(
                new_object("SpiderReservedIP", "r", spec={"ipVersion": 4, "ips": ["10.20.0.9"]})
            )
        )
        self.engine = self.start()
        self.held: dict[int, str] = {}  # pod number -> address
        self.freed: set[str] = set()
        self.next_pod = 100  # pods that exist only to take a freed address back

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def start(self) -> IpamEngine:
        engine = IpamEngine(self.store, EngineSettings())
        self.run(engine.start())
        return engine

    @rule(pods=st.lists(st.integers(min_value=0, max_value=14), min_size=1, max_size=6, unique=True))
    def allocate(self, pods: list[int]) -> None:
        async def go() -> list[Any]:
            return await asyncio.gather(
                *(self.engine.allocate(request(p)) for p in pods), return_exceptions=True
            )

        for pod, result in zip(pods, self.run(go()), strict=True):
            if isinstance(result, PoolExhausted):
                assert len(self.held) + 1 > len(USABLE) or pod not in self.held
                continue
            assert not isinstance(result, BaseException), result
            address = result.ips[0].address.split("/")[0]
            if pod in self.held:
                assert self.held[pod] == address  # idempotent
            self.held[pod] = address
            self.freed.discard(address)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        pod = data.draw(st.sampled_from(sorted(self.held)))
        outcome = self.run(self.engine.release(f"uid-{pod}", "eth0", pod_key=f"ns/pod-{pod}"))
        assert [a.address.split("/")[0] for a in outcome.released] == [self.held.pop(pod)]
        self.freed.add(outcome.released[0].address.split("/")[0])

    @precondition(lambda self: bool(self.freed))
    @rule()
    def freed_address_comes_back(self) -> None:
        """With every other usable address taken, a released one must be handed out again."""
        if len(self.held) + len(self.freed) != len(USABLE):
            return
        pod, self.next_pod = self.next_pod, self.next_pod + 1
        result = self.run(self.engine.allocate(request(pod)))
        address = result.ips[0].address.split("/")[0]
        assert address in self.freed
        self.freed.discard(address)
        self.held[pod] = address

    @rule()
    def restart(self) -> None:
        self.run(self.engine.close())
        self.run(self.store.close())
        self.store = SqliteStore(self.dir / "db")
        self.engine = self.start()

    @invariant()
    def persisted_state_matches(self) -> None:
        obj = self.run(self.store.get("SpiderIPPool", "p"))
        records = json.loads(obj["status"].get("allocatedIPs") or "{}")
        assert obj["status"]["allocatedIPCount"] == len(records)
        assert obj["status"]["totalIPCount"] == len(USABLE)
        assert set(records) <= USABLE
        assert set(records) == set(self.held.values())
        assert len(set(self.held.values())) == len(self.held)  # never the same IP twice
        assert {r["podUid"] for r in records.values()} == {f"uid-{p}" for p in self.held}
        for ip in records:
            assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.20.0.0/24")

    def teardown(self) -> None:
        self.run(self.engine.close())
        self.run(self.store.close())
        self.loop.close()


EngineMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestEngineStateMachine = EngineMachine.TestCase
