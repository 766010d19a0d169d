"""A failed ADD leaves nothing allocated, even when the controller acted after the agent gave up.

The agent cannot tell whether an Allocate it gave up on was carried out: the controller may
have committed it and died, or be slow, after reading the request. So before it answers
code 11 it journals a release for the attachment; once the controller answers again the
release is replayed and the address is free. Here another process holds the store file's
write lock while the ADD arrives: the controller's pool write waits for it, the agent's
deadline passes first (code 11), then the lock goes and the allocation is committed anyway.
Before the fix that address stayed allocated to a pod whose ADD had failed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, running_stack
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = tmp_path_factory.mktemp("agent") / "agent.yaml"
    config.write_text("controller_timeout: 0.3\n")
    pools = [pool_manifest("lost-v4", "10.60.0.0/24", ["10.60.0.10-10.60.0.20"])]
    with running_stack("lost-", pools, agent_args=["--config", str(config)]) as running:
        yield running


def journal(stack: Stack) -> Path:
    return stack.workdir / "agent-state" / "release-journal.jsonl"


def test_an_add_the_agent_gave_up_on_is_released_once_the_controller_answers(stack: Stack) -> None:
    """ADD whose pool write is held up past the agent's deadline answers 11 with a journaled
    release; the late commit is then released by the replay and the pool ends empty."""
    conf = stack.net_conf("1.1.0", "lost-net", v4=("lost-v4",), v6=())
    blocker = sqlite3.connect(
        stack.workdir / "controller.db", isolation_level=None, timeout=5, check_same_thread=False
    )
    blocker.execute("BEGIN IMMEDIATE")  # the store's write lock, for 0.8 s (its busy timeout is 1 s)
    timer = threading.Timer(0.8, blocker.execute, ("COMMIT",))
    timer.start()
    try:
        stack.run("ADD", conf, "lost-1").cni_error(11, "1.1.0")
        assert '"lost-1"' in journal(stack).read_text()
    finally:
        timer.join()
        blocker.close()
    wait_for(lambda: stack.records("lost-v4") == {} and '"lost-1"' not in journal(stack).read_text(),
             "the journaled release to free the address")  # fmt: skip
    result = stack.run("ADD", conf, "lost-2").result()
    assert [ip["address"] for ip in result["ips"]] == ["10.60.0.10/24"]
    stack.run("DEL", conf, "lost-2").succeeded_silently()
