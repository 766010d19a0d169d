"""The engine's property test again, with a reuse delay, an injected wall clock and requested addresses.

Besides the base machine's invariants (never the same address twice, released addresses come
back when nothing else is free, persisted counts match the records, restarts change nothing),
a pod asking for an address gets it exactly when it is usable and free, and otherwise the
refusal that says why; the remembered release times never name a held address.
"""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from spiderpool_common.errors import RequestedIPInUse, RequestedIPNotAllowed
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine

from tests.component.engine_fixtures import request
from tests.component.test_ipam_engine_state_machine import USABLE, EngineMachine

T0 = 1_767_225_600.0


class DelayedEngineMachine(EngineMachine):
    def start(self) -> IpamEngine:
        if not hasattr(self, "now"):
            self.now = T0
        engine = IpamEngine(self.store, EngineSettings(ip_reuse_delay_s=60), wall_clock=lambda: self.now)
        self.run(engine.start())
        return engine

    @rule(seconds=st.integers(min_value=1, max_value=90))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @rule(pod=st.integers(min_value=0, max_value=14), last=st.integers(min_value=1, max_value=14))
    def allocate_requested(self, pod: int, last: int) -> None:
        asked = f"10.20.0.{last}"
        try:
            result = self.run(self.engine.allocate(request(pod, requested_ips=(asked,))))
        except RequestedIPInUse:
            assert asked in self.held.values() and self.held.get(pod) != asked
            return
        except RequestedIPNotAllowed:
            assert asked not in USABLE or (pod in self.held and self.held[pod] != asked)
            return
        assert result.ips[0].address.split("/")[0] == asked
        assert self.held.get(pod, asked) == asked
        self.held[pod] = asked
        self.freed.discard(asked)

    @invariant()
    def remembered_releases_are_free_usable_addresses(self) -> None:
        obj = self.run(self.store.get("SpiderIPPool", "p"))
        released = json.loads(obj["status"].get("releasedIPs") or "{}")
        assert set(released) <= USABLE - set(self.held.values())
        assert all(at <= self.now for at in released.values())


DelayedEngineMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestDelayedEngineStateMachine = DelayedEngineMachine.TestCase
