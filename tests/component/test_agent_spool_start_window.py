"""A DEL spooled while the agent was starting is replayed as soon as it serves, not an interval later.

The agent replays the spool once before its socket exists; a shim that found no socket after that
pass spools its DEL too. That DEL used to wait for the next periodic pass (10 s by default), which
was the 10 s convergence of the embedded chaos storm.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from spiderpool_agent.del_spool import ReplayReport
from spiderpool_agent.server import Agent
from spiderpool_agent.settings import AgentSettings
from spiderpool_cni import spool

from tests.component.agent_harness import controller_process
from tests.waiting import wait_for_async

ENV = {
    "CNI_COMMAND": "DEL",
    "CNI_CONTAINERID": "late-ctr",
    "CNI_NETNS": "",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=late;K8S_POD_UID=uid-late",
    "CNI_PATH": "/opt/cni/bin",
}
STDIN = (
    b'{"cniVersion": "1.0.0", "name": "net", "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["p"]}}'
)


async def test_a_del_spooled_after_the_first_pass_is_replayed_once_the_agent_serves() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="spw-", dir="/tmp"))
    controller = controller_process(workdir)
    await controller.start()
    settings = AgentSettings(
        controller=controller.target,
        socket=str(workdir / "agent.sock"),
        node="node-1",
        state_dir=str(workdir / "state"),
        spool_replay_interval=600.0,  # the periodic pass would come far too late for this test
    )
    agent = Agent(settings)
    first_pass = agent.spool.replay_once

    async def then_a_shim_spools() -> ReplayReport:
        report = await first_pass()
        spool.spool_del(
            "ipam", settings.del_spool_dir, ENV, present=list(ENV), stdin=STDIN, reason="agent unreachable"
        )
        return report

    agent.spool.replay_once = then_a_shim_spools  # type: ignore[method-assign]
    try:
        await agent.start()
        agent.spool.replay_once = first_pass  # type: ignore[method-assign]
        spooled = Path(settings.del_spool_dir)
        await wait_for_async(
            lambda: not list(spooled.glob("*.del")),
            "the DEL spooled during the start to be replayed",
            deadline=10.0,
        )
    finally:
        await agent.stop()
        controller.stop()
        shutil.rmtree(workdir, ignore_errors=True)
