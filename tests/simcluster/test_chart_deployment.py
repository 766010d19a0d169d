"""The simulated cluster's controllers and agents are the chart's containers, and drift stops them.

No cluster is started: the chart is rendered once (as the cluster renders it) and the programs made runnable
from it; what the simulation changes is only what chart_deployment.py documents (pod IP for 0.0.0.0 and
127.0.0.1, paths of the mounted volumes, the ServiceAccount's kubeconfig, SIM_CONTROLLER_ARGS).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.drift import Drift
from tests.simcluster import commands
from tests.simcluster.chart_deployment import (
    AGENT,
    CONTROLLER,
    SIM_CONTROLLER_ARGS,
    ChartDeployment,
    sim_values,
)


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> ChartDeployment:
    return ChartDeployment.render(sim_values("info", {}), tmp_path_factory.mktemp("chart"))


def names(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def test_the_controller_runs_the_chart_s_arguments_in_its_pod(chart: ChartDeployment, tmp_path: Path) -> None:
    container = chart.containers[CONTROLLER]
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    program = chart.controller(1, "127.9.9.11", kubeconfig)
    assert program.argv[0] == str(commands.SCRIPTS / "spiderpool-controller")
    extra = ["--kubeconfig", *names(list(SIM_CONTROLLER_ARGS))]
    assert names(program.argv) == [*names(list(container.args)), *extra]
    flags = dict(a.split("=", 1) for a in program.argv if a.startswith("--"))
    assert flags["--listen"] == flags["--advertise"] == "127.9.9.11:5720"
    assert flags["--webhook-listen"] == "127.9.9.11:5722"
    config = chart.rendered.get("ConfigMap", "spiderpool-conf")["data"]["controller.yaml"]
    assert Path(flags["--config"]).read_text() == config
    assert program.env["SPIDERPOOL_POD_NAME"] == "spiderpool-controller-1"
    assert program.probe[1:2] == ["--address=127.9.9.11:5720"]


def test_an_unknown_flag_or_variable_fails_before_anything_starts(
    chart: ChartDeployment, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(Drift, match="--leader-lease is not an option"):
        chart.controller(0, "127.9.9.10", kubeconfig, ("--leader-lease=3",))
    host_paths = {
        m.ref: tmp_path / m.ref.lstrip("/") for m in chart.containers[AGENT].mounts if m.source == "hostPath"
    }
    assert chart.agent("node1", host_paths, kubeconfig).env == {"SPIDERPOOL_NODE_NAME": "node1"}
    with pytest.raises(Drift, match="SPIDERPOOL_SPOOL_REPLAY is read by nothing"):
        chart.agent("node1", host_paths, kubeconfig, {"SPIDERPOOL_SPOOL_REPLAY": "1"})
