"""Both services' Prometheus endpoints after real CNI calls: real controller and agent processes,
the installed shim, ``/metrics`` scraped over HTTP and every figure compared with what was done;
every metric docs/metrics.md lists for the embedded mode is served."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from spiderpool_cni import codes

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, running_stack, start_service
from tests.component.prometheus_text import Scrape, documented, metrics_port, scrape
from tests.waiting import wait_for

POOLS = [
    pool_manifest("met-v4", "10.91.0.0/24", ["10.91.0.10-10.91.0.19"]),
    pool_manifest("met-tiny", "10.92.0.0/24", ["10.92.0.10"]),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = tmp_path_factory.mktemp("agent-config") / "agent.yaml"
    config.write_text("replay_initial_backoff: 0.1\nreplay_max_backoff: 0.3\nspool_replay_interval: 3600\n")
    with running_stack(
        "metrics-",
        POOLS,
        controller_args=["--metrics-listen", "127.0.0.1:0"],
        agent_args=["--metrics-listen", "127.0.0.1:0", "--config", str(config)],
    ) as running:
        yield running


def controller_scrape(stack: Stack) -> Scrape:
    return scrape(metrics_port(stack.controller.log_path))


def agent_scrape(stack: Stack) -> Scrape:
    return scrape(metrics_port(stack.agent.log_path))


def conf(stack: Stack, pool: str = "met-v4") -> dict[str, object]:
    return stack.net_conf("1.1.0", "metrics-net", v4=(pool,), v6=())


def test_both_services_count_what_the_cni_calls_did(stack: Stack) -> None:
    """Three ADDs and one into a one-address pool, an ADD naming a missing pool (102), a DEL, and
    STATUS on the full pool (50): the controller counts allocations, failures by reason, releases,
    their latency, group-commit batch sizes, store calls and per-pool totals; the agent counts the
    same allocations and releases as the node saw them, every CNI call by verb and code, and the
    STATUS failure."""
    pods = [stack.new_id("met") for _ in range(3)]
    for pod in pods:
        stack.run("ADD", conf(stack), pod).result()
    tiny = stack.new_id("met-tiny")
    stack.run("ADD", conf(stack, "met-tiny"), tiny).result()
    stack.run("ADD", conf(stack, "met-missing"), stack.new_id("met-bad")).cni_error(
        codes.POOL_NOT_FOUND, "1.1.0"
    )
    stack.run("DEL", conf(stack), pods[0]).succeeded_silently()
    stack.run("STATUS", conf(stack, "met-tiny")).cni_error(codes.NOT_AVAILABLE, "1.1.0")

    c = controller_scrape(stack)
    assert c.value("spiderpool_ipam_allocation_counts_total") == 4
    assert c.value("spiderpool_ipam_allocation_failure_counts_total", reason="POOL_NOT_FOUND") == 1
    assert c.value("spiderpool_ipam_allocation_duration_seconds_count") == 4
    assert c.value("spiderpool_ipam_release_counts_total") == 1
    assert c.value("spiderpool_ipam_release_duration_seconds_count") == 1
    assert c.value("spiderpool_debug_ippool_total_ip_counts", SpiderIPPool="met-v4") == 10
    assert c.value("spiderpool_debug_ippool_available_ip_counts", SpiderIPPool="met-v4") == 8
    assert c.value("spiderpool_debug_ippool_total_ip_counts", SpiderIPPool="met-tiny") == 1
    assert c.value("spiderpool_debug_ippool_available_ip_counts", SpiderIPPool="met-tiny") == 0
    assert c.value("spiderpool_total_ippool_counts") == 2
    assert c.value("spiderpool_total_subnet_counts") == 0
    # one change per durable write here (the calls came one at a time): 4 takes and 1 release
    assert c.value("spiderpool_pool_write_batch_size_sum") == 5
    assert c.value("spiderpool_pool_write_batch_size_count") == 5
    assert c.value("spiderpool_pool_write_batch_size_bucket", le="1.0") == 5
    writes = c.value("spiderpool_store_operations_total", op="update_status", kind="SpiderIPPool")
    assert writes >= 5
    assert c.value("spiderpool_store_call_duration_seconds_count", op="update_status") >= writes
    assert c.value("spiderpool_store_call_duration_seconds_bucket", op="update_status", le="+Inf") >= writes
    assert "spiderpool_ip_gc_counts_total" not in c.names()  # embedded: the runtime's CNI GC collects
    assert set(documented("Controller", ("both",))) <= c.families

    a = agent_scrape(stack)
    assert a.value("spiderpool_ipam_allocation_counts_total") == 4
    assert a.value("spiderpool_ipam_allocation_failure_counts_total", reason="POOL_NOT_FOUND") == 1
    assert a.value("spiderpool_ipam_allocation_duration_seconds_count") == 5
    assert a.value("spiderpool_ipam_release_counts_total") == 1
    assert a.value("spiderpool_agent_cni_calls_total", plugin="ipam", verb="ADD", code="0") == 4
    assert a.value("spiderpool_agent_cni_calls_total", plugin="ipam", verb="ADD", code="102") == 1
    assert a.value("spiderpool_agent_cni_calls_total", plugin="ipam", verb="DEL", code="0") == 1
    assert a.value("spiderpool_agent_cni_calls_total", plugin="ipam", verb="STATUS", code="50") == 1
    assert a.value("spiderpool_agent_status_failures_total", plugin="ipam", code="50") == 1
    assert a.value("spiderpool_agent_cni_call_duration_seconds_count", plugin="ipam", verb="ADD") == 5
    assert a.value("spiderpool_agent_release_journal_pending") == 0
    assert a.value("spiderpool_agent_del_spool_pending") == 0
    assert set(documented("Agent")) <= a.families
    assert {f for f in a.families if f.startswith("spiderpool_")} == set(documented("Agent"))


def test_the_agent_reports_its_journal_and_spool_backlogs(stack: Stack) -> None:
    """A DEL while the controller is down is journaled (backlog 1) and the backlog drains once it
    is back; a DEL the shim spooled because the agent was unreachable shows in the spool backlog."""
    pod = stack.new_id("met-journal")
    stack.run("ADD", conf(stack), pod).result()
    releases = agent_scrape(stack).value("spiderpool_ipam_release_counts_total")
    stack.controller.stop(signal.SIGTERM)
    try:
        stack.run("DEL", conf(stack), pod).succeeded_silently()
        down = agent_scrape(stack)
        assert down.value("spiderpool_agent_release_journal_pending") == 1
        assert down.value("spiderpool_ipam_release_counts_total") == releases + 1  # DEL succeeded: journaled
    finally:
        start_service(stack.controller)
    wait_for(
        lambda: agent_scrape(stack).value("spiderpool_agent_release_journal_pending") == 0,
        "the journal to drain",
    )

    spooled = conf(stack)
    ipam = spooled["ipam"]
    assert isinstance(ipam, dict)
    ipam["ipam_unix_socket_path"] = str(stack.workdir / "absent-agent.sock")
    ipam["del_spool_dir"] = str(Path(stack.workdir) / "agent-state" / "spool")
    stack.run("DEL", spooled, stack.new_id("met-spool")).succeeded_silently()
    assert agent_scrape(stack).value("spiderpool_agent_del_spool_pending") == 1
