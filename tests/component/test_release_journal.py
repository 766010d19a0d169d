"""The durable release journal: fsynced before DEL answers, replayed after a SIGKILL restart."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_agent.release_journal import JOURNAL_FILE, ReleaseIntent, ReleaseJournal, read_journal
from spiderpool_common.errors import Unavailable

from tests.component.agent_harness import (
    agent_process,
    apply,
    cni_call,
    controller_process,
    net_conf,
    pool_manifest,
    pool_records,
    wait_until,
)

NETNS = "/proc/self/ns/net"


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spj-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_sigkilled_agent_replays_its_journal_after_restart(workdir: Path) -> None:
    """Releases journaled while the controller was down survive kill -9 of the agent and replay on restart."""
    controller = controller_process(workdir)
    await controller.start()
    agent = agent_process(workdir, controller)
    try:
        await apply(controller.target, pool_manifest("v4-pool", "10.6.0.0/16", ["10.6.168.101-10.6.168.110"]))
        await agent.start()
        async with grpc.aio.insecure_channel(agent.target) as channel:
            stub = cni_pb2_grpc.CniServiceStub(channel)
            for cid in ("ctr-1", "ctr-2", "ctr-3"):
                call = cni_call("ADD", net_conf(), container_id=cid, netns=NETNS)
                await stub.IpamAdd(cni_pb2.IpamAddRequest(call=call), timeout=20)
            controller.stop(signal.SIGKILL)
            for cid in ("ctr-1", "ctr-2"):
                reply = await stub.IpamDel(
                    cni_pb2.IpamDelRequest(call=cni_call("DEL", net_conf(), container_id=cid))
                )
                assert reply.result == b""
        journal = workdir / "agent-state" / JOURNAL_FILE
        assert sorted(i.container_id for i in read_journal(journal).values()) == ["ctr-1", "ctr-2"]
        agent.stop(signal.SIGKILL)

        await controller.start()
        assert len(await pool_records(controller.target, "v4-pool")) == 3  # nobody replayed yet
        await agent.start()

        async def only_ctr3_left() -> bool:
            records = await pool_records(controller.target, "v4-pool")
            return [r["cid"] for r in records.values()] == ["ctr-3"]

        await wait_until(only_ctr3_left, "the restarted agent to replay its journal")
        await wait_until(lambda: read_journal(journal) == {}, "the journal to be compacted")
    finally:
        agent.stop(signal.SIGKILL)
        controller.stop()


class FlakyController:
    """A release action that fails while ``down`` and records what it released."""

    def __init__(self) -> None:
        self.down = True
        self.attempts = 0
        self.released: list[ReleaseIntent] = []

    async def release(self, intent: ReleaseIntent) -> None:
        self.attempts += 1
        if self.down:
            raise Unavailable("controller down")
        self.released.append(intent)


def intent(cid: str, ifname: str = "eth0", uid: str = "") -> ReleaseIntent:
    return ReleaseIntent(container_id=cid, ifname=ifname, pod_uid=uid, node="node-1", network="net-a")


async def test_entries_are_durable_deduplicated_and_compacted(workdir: Path) -> None:
    """Each recorded release is on disk at once, a duplicate is not written twice, confirmation compacts."""
    ctl = FlakyController()
    journal = ReleaseJournal(workdir, ctl.release)
    await journal.load()
    await journal.record(intent("c1"))
    await journal.record(intent("c1"))
    await journal.record(intent("c2"))
    assert list(read_journal(journal.path).values()) == [intent("c1"), intent("c2")]
    assert await journal.replay_pending() is False
    ctl.down = False
    assert await journal.replay_pending() is True
    assert ctl.released == [intent("c1"), intent("c2")]
    assert journal.path.read_bytes() == b""


async def test_torn_last_line_is_ignored_and_later_appends_stay_readable(workdir: Path) -> None:
    """A line cut short by a crash is skipped on load; the file is rewritten clean before new appends."""
    ctl = FlakyController()
    path = workdir / JOURNAL_FILE
    good = {"op": "release", "seq": 4, "intent": {"container_id": "c1", "ifname": "eth0"}}
    done = {"op": "done", "seq": 2}
    path.write_bytes(
        (json.dumps(good) + "\n" + json.dumps(done) + "\n" + '{"op": "release", "seq": 5, "in').encode()
    )
    journal = ReleaseJournal(workdir, ctl.release)
    await journal.load()
    assert [i.container_id for i in journal.pending()] == ["c1"]
    await journal.record(intent("c2"))
    reloaded = read_journal(path)
    assert sorted(reloaded) == [4, 5]
    assert [i.container_id for i in reloaded.values()] == ["c1", "c2"]


async def test_settle_replays_only_the_key_of_the_add(workdir: Path) -> None:
    """settle() releases the pending entries of one (identity, ifname) key and leaves the others."""
    ctl = FlakyController()
    journal = ReleaseJournal(workdir, ctl.release)
    await journal.load()
    await journal.record(intent("c1", uid="uid-1"))
    await journal.record(intent("c1", ifname="net1", uid="uid-1"))
    await journal.record(intent("c2"))
    with pytest.raises(Unavailable):
        await journal.settle(("uid-1", "eth0"))
    ctl.down = False
    await journal.settle(("uid-1", "eth0"))
    assert ctl.released == [intent("c1", uid="uid-1")]
    assert journal.has_pending(("uid-1", "net1"))
    assert journal.has_pending(("c2", "eth0"))
    assert not journal.has_pending(("uid-1", "eth0"))


async def test_replay_loop_retries_until_the_controller_confirms(workdir: Path) -> None:
    """The background loop keeps retrying with backoff and empties the journal once releases succeed."""
    ctl = FlakyController()
    journal = ReleaseJournal(workdir, ctl.release, initial_backoff=0.01, max_backoff=0.05)
    await journal.load()
    loop = asyncio.create_task(journal.run())
    try:
        await journal.record(intent("c1"))
        await wait_until(lambda: ctl.attempts >= 3, "several failed attempts", deadline=5)
        assert journal.pending() == [intent("c1")]
        ctl.down = False
        await wait_until(lambda: not journal.pending(), "the replay loop to confirm", deadline=5)
        assert ctl.released == [intent("c1")]
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def test_the_journal_and_its_directory_are_root_only(workdir: Path) -> None:
    """The state directory is 0700 and the journal 0600, also when they existed wider before, and
    after a compaction (the rewrite replaces the file)."""
    state = workdir / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / JOURNAL_FILE).write_bytes(b"")
    (state / JOURNAL_FILE).chmod(0o644)
    journal = ReleaseJournal(state, FlakyController().release)
    await journal.load()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / JOURNAL_FILE).stat().st_mode) == 0o600
    fresh = workdir / "fresh" / "state"
    other = ReleaseJournal(fresh, FlakyController().release)
    await other.load()
    await other.record(intent("c1"))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / JOURNAL_FILE).stat().st_mode) == 0o600
