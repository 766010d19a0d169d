"""Leader election on a Lease in the test API server: one writer, fenced, with fast hand-over.

Timings are scaled down (lease 1.2 s, renew deadline 0.8 s, retry 0.1 s); the rules are the
same as with upstream's 15/10/2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.rest import KubeRest
from spiderpool_controller.leader import ADDRESS_ANNOTATION, LeaderElector, LeaseTiming

from tests.kubeapi import KubeApiServer, ServerConfig

TIMING = LeaseTiming(duration_s=1.2, renew_deadline_s=0.8, retry_period_s=0.1)
LEASE = "spiderpool-controller-leases"


@pytest.fixture
async def server() -> AsyncIterator[KubeApiServer]:
    srv = KubeApiServer(ServerConfig())
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def rest(server: KubeApiServer) -> AsyncIterator[KubeRest]:
    client = await api_client(str(server.kubeconfig_path))
    try:
        yield KubeRest(client, timeout_s=2.0)
    finally:
        await client.close()


class Candidate:
    def __init__(self, rest: KubeRest, name: str, clock: Callable[[], float] | None = None) -> None:
        kwargs = {"clock": clock} if clock else {}
        self.elector = LeaderElector(
            rest,
            namespace="kube-system",
            name=LEASE,
            identity=name,
            address=f"{name}:5720",
            timing=TIMING,
            **kwargs,
        )
        self.started = 0
        self.stopped = 0
        self.task: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        self.started += 1

    async def _stop(self) -> None:
        self.stopped += 1

    def run(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self._start, self._stop))

    async def cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, deadline: float = 5.0
) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return loop.time() - start
        assert loop.time() - start < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_one_of_two_candidates_leads_and_only_it_may_write(rest: KubeRest) -> None:
    """Two replicas on one Lease: exactly one becomes leader, writes are open only there, and the
    Lease names it with its address for the standby."""
    a, b = Candidate(rest, "ctl-a"), Candidate(rest, "ctl-b")
    a.run()
    b.run()
    try:
        await eventually(lambda: a.elector.may_write() or b.elector.may_write(), "a leader")
        await asyncio.sleep(TIMING.duration_s)  # several rounds: still exactly one
        leaders = [c for c in (a, b) if c.elector.may_write()]
        assert len(leaders) == 1
        (leader,) = leaders
        standby = b if leader is a else a
        assert (leader.started, standby.started) == (1, 0)
        assert standby.elector.leader_address == leader.elector.address
        lease = await rest.get(leader.elector.path)
        assert lease["spec"]["holderIdentity"] == leader.elector.identity
        assert lease["metadata"]["annotations"][ADDRESS_ANNOTATION] == leader.elector.address
    finally:
        await a.cancel()
        await b.cancel()


async def test_a_leader_that_stops_renewing_is_replaced_after_the_lease_and_stops_writing_before(
    rest: KubeRest, server: KubeApiServer
) -> None:
    """The leader's renewals fail (its API requests error): its writes close at the renew deadline,
    and the standby takes over only after the lease duration, never both open at once."""
    a = Candidate(rest, "ctl-a")
    a.run()
    await eventually(a.elector.may_write, "ctl-a leads")
    b = Candidate(rest, "ctl-b")
    b.run()
    await asyncio.sleep(0.3)
    overlap = False

    async def watch_overlap() -> None:
        nonlocal overlap
        while True:
            if a.elector.may_write() and b.elector.may_write():
                overlap = True
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_overlap())
    try:
        a_paused = asyncio.Event()
        original = a.elector.try_acquire_or_renew

        async def failing() -> bool:
            a_paused.set()
            raise TimeoutError("renewal lost")

        a.elector.try_acquire_or_renew = failing  # type: ignore[method-assign]
        await a_paused.wait()
        closed_after = await eventually(lambda: not a.elector.may_write(), "ctl-a's writes to close")
        assert closed_after <= TIMING.renew_deadline_s + 0.2
        await eventually(lambda: a.stopped == 1, "ctl-a to step down")  # its loop notices next round
        await eventually(b.elector.may_write, "ctl-b to take over", deadline=TIMING.duration_s * 3)
        assert not overlap
        a.elector.try_acquire_or_renew = original  # type: ignore[method-assign]
        await asyncio.sleep(TIMING.duration_s)
        assert b.elector.may_write() and not a.elector.may_write()
    finally:
        watcher.cancel()
        await a.cancel()
        await b.cancel()


async def test_a_paused_leader_finds_its_writes_closed_when_it_resumes(rest: KubeRest) -> None:
    """A leader frozen past its renew deadline (SIGSTOP: the monotonic clock runs on) may not
    write the instant it runs again, before any renewal round."""
    now = [0.0]
    a = Candidate(rest, "ctl-a", clock=lambda: now[0])
    won = await a.elector.try_acquire_or_renew()
    assert won
    a.elector._holding, a.elector._renewed_at = True, now[0]  # as run() records a won round
    assert a.elector.may_write()
    now[0] += TIMING.renew_deadline_s  # the freeze
    assert not a.elector.may_write()


async def test_a_leader_that_shuts_down_releases_the_lease_for_a_fast_hand_over(rest: KubeRest) -> None:
    """release() empties the holder, so the standby leads within a few retry periods."""
    a, b = Candidate(rest, "ctl-a"), Candidate(rest, "ctl-b")
    a.run()
    await eventually(a.elector.may_write, "ctl-a leads")
    b.run()
    await asyncio.sleep(0.3)
    await a.elector.release()
    await a.cancel()
    took = await eventually(b.elector.may_write, "ctl-b to lead after the release")
    assert took < TIMING.duration_s
    await b.cancel()
