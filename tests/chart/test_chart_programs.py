"""The chart and the programs cannot drift apart: every rendered container is accepted by its program.

For every value set, every container of every workload (and every exec probe) is materialized as the kubelet
would start it (ConfigMap and Secret volumes written out, mount paths relocated, downward-API variables
given, ``$(VAR)`` expanded) and handed to the program's own parser and settings loader: an unknown flag, an
unknown key in a mounted settings file, a settings value the program refuses or an environment variable it
does not read fails the test. The init container really installs the bundle and the plugins into a host
root; the init job's manifests are loaded by the job's own reader. Every metric the PrometheusRules name is
one a running controller or agent exports.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import socket
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_agent import main as agent_main
from spiderpool_agent import settings as agent_settings
from spiderpool_cni import install
from spiderpool_common import health_probe
from spiderpool_controller import settings as controller_settings
from spiderpool_tools import cluster_init, pybundle_build

from tests.chart import drift
from tests.chart.drift import Drift, exact_flags
from tests.chart.rendered import REPO, Container, EnvVar, Rendered, containers, render
from tests.chart.value_sets import MONITORING, rendered_value_set, value_sets
from tests.component.agent_harness import ServiceProcess
from tests.component.conformance_stack import start_service
from tests.kubeapi.certs import CertificateAuthority

VALUE_SETS = value_sets()
FIELD_VALUES = {"metadata.name": "spiderpool-controller-7d9f-x2", "metadata.namespace": "kube-system",
                "status.podIP": "10.0.0.11", "spec.nodeName": "node-1"}  # fmt: skip
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
GRPC_SECRETS_OF_THE_USER = {
    "my-controller-grpc",
    "my-agent-grpc",
}  # provided-tls names Secrets it does not render


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "pybundle"
    pybundle_build.build(install.default_interpreter(), out)
    return out


def external_secrets(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """Stand-ins for the Secrets the chart names but does not render: the ones a provided-tls user creates
    and the ones cert-manager issues for the rendered Certificates (any valid PEM files do for parsing)."""
    names = GRPC_SECRETS_OF_THE_USER | {c["spec"]["secretName"] for c in rendered.kinds("Certificate")}
    ca = CertificateAuthority("stand-in-ca")
    pair = ca.issue(("spiderpool-controller.kube-system.svc",), client=True)
    data = {k: base64.b64encode(v).decode() for k, v in
            (("ca.crt", ca.cert_pem), ("tls.crt", pair.cert_pem), ("tls.key", pair.key_pem))}  # fmt: skip
    return {name: {"data": data} for name in names}


def check_controller(container: Container, rendered: Rendered, tmp: Path) -> None:
    run = container.materialize(rendered, tmp, field_values=FIELD_VALUES, secrets=external_secrets(rendered))
    kubeconfig = tmp / "kubeconfig"  # stands in for the in-cluster ServiceAccount
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    settings = drift.check_controller(container, run, kubeconfig)
    assert settings.cluster_mode and settings.tls_files is not None
    assert settings.pod_name == FIELD_VALUES["metadata.name"] and settings.advertise.startswith("10.0.0.11:")
    if settings.webhook_listen:  # the serving certificate is a file of the mounted Secret
        assert Path(settings.webhook_cert_file).is_file() and Path(settings.webhook_key_file).is_file()


def check_agent(container: Container, rendered: Rendered, tmp: Path) -> None:
    run = container.materialize(rendered, tmp, field_values=FIELD_VALUES, secrets=external_secrets(rendered))
    settings = drift.check_agent(container, run)
    assert settings.pod_source == "kubernetes" and settings.node == FIELD_VALUES["spec.nodeName"]
    assert settings.controller_tls is not None


def check_install_cni(container: Container, rendered: Rendered, tmp: Path, bundle: Path) -> None:
    host = tmp / "host-root"
    host_paths = {m.ref: host / m.ref.lstrip("/") for m in container.mounts if m.source == "hostPath"}
    run = container.materialize(
        rendered, tmp, host_paths=host_paths,
        extra_places={"/host": host, "/usr/share/spiderpool/pybundle": bundle},
    )  # fmt: skip
    if run.env:
        raise Drift(f"{container.key}: spiderpool-install-cni reads no environment, got {sorted(run.env)}")
    exact_flags(container, install.build_parser(), run.argv[1:])
    rc = install.main(run.argv[1:])
    if rc != 0:
        raise Drift(f"{container.key}: spiderpool-install-cni {run.argv[1:]} exited {rc}")
    bin_dir = host / container.flags()["--bin-dir"].lstrip("/")
    assert (bin_dir / "spiderpool").exists() and (bin_dir / "coordinator").exists()


def check_init(container: Container, rendered: Rendered, tmp: Path) -> None:
    run = container.materialize(rendered, tmp)
    exact_flags(container, cluster_init.build_parser(), run.argv[1:])
    try:
        args = cluster_init.build_parser().parse_args(run.argv[1:])
    except SystemExit as exc:
        raise Drift(f"{container.key}: spiderpool-init refuses {run.argv[1:]}") from exc
    if args.command == "apply":
        objects = cluster_init.load_manifests(Path(args.manifests))
        assert objects, f"{container.key}: nothing to create"
    if run.env:
        raise Drift(f"{container.key}: spiderpool-init reads no environment, got {sorted(run.env)}")


def check_probes(container: Container, rendered: Rendered, tmp: Path) -> None:
    for kind, probe in container.probes.items():
        command = probe["exec"]["command"]
        assert command[0] == "spiderpool-health", f"{container.key} {kind}: {command}"
        relocated = dataclasses.replace(container, command=tuple(command), args=())
        run = relocated.materialize(
            rendered, tmp / kind, field_values=FIELD_VALUES, secrets=external_secrets(rendered)
        )
        exact_flags(relocated, health_probe.build_parser(), run.argv[1:])
        try:
            health_probe.build_parser().parse_args(run.argv[1:])
        except SystemExit as exc:
            raise Drift(f"{container.key} {kind}: spiderpool-health refuses {run.argv[1:]}") from exc
        # Each path the probe names lies in a volume of the container; a Secret's or ConfigMap's file exists.
        sources = {str(run.places[m.path]): m.source for m in container.mounts}
        for arg in run.argv[1:]:
            value = arg.partition("=")[2]
            if not value.startswith("/"):
                continue
            volume = next((d for d in sources if value.startswith(d + "/")), None)
            if volume is None:
                raise Drift(f"{container.key} {kind}: {value} is in no volume of the container")
            if sources[volume] in ("secret", "configMap") and not Path(value).is_file():
                raise Drift(f"{container.key} {kind}: {value} is not a file of its volume")


def check(container: Container, rendered: Rendered, tmp: Path, bundle: Path) -> None:
    script = container.command[0]
    if script not in SCRIPTS:
        raise Drift(f"{container.key}: {script} is not one of the project's commands {sorted(SCRIPTS)}")
    checks = {
        "spiderpool-controller": check_controller,
        "spiderpool-agent": check_agent,
        "spiderpool-init": check_init,
    }
    if script == "spiderpool-install-cni":
        check_install_cni(container, rendered, tmp, bundle)
    else:
        checks[script](container, rendered, tmp)
    check_probes(container, rendered, tmp)


def cases() -> Iterator[tuple[str, str]]:
    for name in sorted(VALUE_SETS):
        for key in sorted(containers(rendered_value_set(name))):
            yield name, key


@pytest.mark.parametrize(("value_set", "key"), list(cases()))
def test_every_rendered_container_is_accepted_by_its_program(
    value_set: str, key: str, tmp_path: Path, bundle: Path
) -> None:
    """The program parses the container's arguments, reads its mounted settings and knows its environment."""
    rendered = rendered_value_set(value_set)
    check(containers(rendered)[key], rendered, tmp_path, bundle)


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        (
            "Deployment/spiderpool-controller/spiderpool-controller",
            {"args": ("--bogus=1",)},
            "--bogus is not an option",
        ),
        (
            "DaemonSet/spiderpool-agent/spiderpool-agent",
            {"args": ("--socket=relative",)},
            "must be an absolute path",
        ),
        ("DaemonSet/spiderpool-agent/spiderpool-agent", {"env": ("SPIDERPOOL_SOKET",)}, "SPIDERPOOL_SOKET"),
        ("Job/spiderpool-init/spiderpool-init", {"args": ("--manifest=/x",)}, "--manifest is not an option"),
        ("DaemonSet/spiderpool-agent/install-cni", {"args": ("--bin-dir=opt",)}, "exited 1"),
        (
            "DaemonSet/spiderpool-agent/spiderpool-agent",
            {"command": ("spiderpool-agentd",)},
            "not one of the",
        ),
    ],
    ids=[
        "unknown-flag",
        "refused-setting",
        "unknown-env",
        "init-flag",
        "install-cni-path",
        "unknown-command",
    ],
)
def test_the_check_catches_what_a_program_would_refuse(
    key: str, change: dict[str, tuple[str, ...]], message: str, tmp_path: Path, bundle: Path
) -> None:
    """A flag, value, variable or command the program does not know fails the check, naming it."""
    rendered = render()
    container = containers(rendered)[key]
    if "env" in change:
        container = dataclasses.replace(container, env=(*container.env, EnvVar(change["env"][0], "1")))
    if "args" in change:
        container = dataclasses.replace(container, args=(*container.args, *change["args"]))
    if "command" in change:
        container = dataclasses.replace(container, command=change["command"])
    with pytest.raises(Drift, match=message):
        check(container, rendered, tmp_path, bundle)


def test_a_settings_file_key_the_program_does_not_know_fails(tmp_path: Path, bundle: Path) -> None:
    """The mounted controller.yaml is the program's own settings file: an unknown key is refused."""
    rendered = render()
    cm = rendered.get("ConfigMap", "spiderpool-conf")
    cm["data"]["controller.yaml"] += "enable_statefulset: true\n"
    with pytest.raises(Drift, match="unknown setting 'enable_statefulset'"):
        check(
            containers(rendered)["Deployment/spiderpool-controller/spiderpool-controller"],
            rendered,
            tmp_path,
            bundle,
        )


def test_the_settings_files_carry_the_values(tmp_path: Path) -> None:
    """Values reach the programs: families, detection, GC and leader timings, SpiderSubnet auto pools (and
    upstream's defaults: on, one redundant address), socket and state paths."""
    values = {
        "ipam": {
            "enableIPv6": False,
            "enableIPConflictDetection": True,
            "gc": {"gcAll": {"intervalInSecond": 120}},
            "spiderSubnet": {"autoPool": {"enable": False, "defaultRedundantIPNumber": 3, "waitSeconds": 12}},
        },
        "spiderpoolController": {
            "leaderElection": {"leaseDuration": 30, "renewDeadline": 20, "retryPeriod": 4}
        },
        "spiderpoolAgent": {"stateHostPath": "/data/spiderpool"},
        "global": {"ipamUNIXSocketHostPath": "/run/sp/agent.sock"},
        "multus": {"multusCNI": {"defaultCniCRName": "kube-system/macvlan-eth0"}},
    }
    rendered = render(values)
    ctl = containers(rendered)["Deployment/spiderpool-controller/spiderpool-controller"]
    run = ctl.materialize(rendered, tmp_path / "c", field_values=FIELD_VALUES)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    got = controller_settings.load_settings([*run.argv[1:], f"--kubeconfig={kubeconfig}"], environ=run.env)
    assert (got.enable_ipv4, got.enable_ipv6, got.enable_ip_conflict_detection) == (True, False, True)
    assert (got.gc_interval_seconds, got.leader_lease_duration, got.leader_retry_period) == (120, 30, 4)
    assert (got.enable_spider_subnet, got.enable_auto_pool, got.auto_pools) == (True, False, False)
    assert (got.auto_pool_default_flexible_ips, got.auto_pool_wait_seconds) == (3, 12)
    defaults = render({})
    ctl = containers(defaults)["Deployment/spiderpool-controller/spiderpool-controller"]
    run = ctl.materialize(defaults, tmp_path / "d", field_values=FIELD_VALUES)
    on = controller_settings.load_settings([*run.argv[1:], f"--kubeconfig={kubeconfig}"], environ=run.env)
    assert (on.auto_pools, on.auto_pool_default_flexible_ips, on.auto_pool_wait_seconds) == (True, 1, 20)
    agent = containers(rendered)["DaemonSet/spiderpool-agent/spiderpool-agent"]
    run = agent.materialize(rendered, tmp_path / "a", field_values=FIELD_VALUES)
    args = agent_main.build_parser().parse_args(run.argv[1:])
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    got_agent = agent_settings.load_settings(flags, env=run.env, config_file=args.config)
    assert (got_agent.socket, got_agent.state_dir) == ("/run/sp/agent.sock", "/data/spiderpool/agent")
    assert got_agent.cluster_network == "kube-system/macvlan-eth0"
    assert {m.path for m in agent.mounts} >= {"/run/sp", "/data/spiderpool"}


def _metric_names(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_every_metric_the_prometheus_rules_use_is_exported(tmp_path: Path) -> None:
    """The PrometheusRules' expressions name only metrics a running controller or agent serves."""
    rendered = render(MONITORING)
    used = set()
    for rule in rendered.kinds("PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                used |= set(re.findall(r"\b(spiderpool_[a-z_]+)", r["expr"]))
    assert len(used) >= 5
    ports = [_free_port(), _free_port()]
    ctl_sock, agent_sock = tmp_path / "c.sock", tmp_path / "a.sock"
    controller = ServiceProcess(
        [sys.executable, "-m", "spiderpool_controller.main", "--store", f"sqlite:///{tmp_path}/c.db",
         "--listen", f"unix:{ctl_sock}", "--metrics-listen", f"127.0.0.1:{ports[0]}"],
        ctl_sock, tmp_path / "c.log",
    )  # fmt: skip
    agent = ServiceProcess(
        [sys.executable, "-m", "spiderpool_agent.main", "--controller", f"unix:{ctl_sock}",
         "--socket", str(agent_sock), "--state-dir", str(tmp_path / "state"),
         "--metrics-listen", f"127.0.0.1:{ports[1]}"],
        agent_sock, tmp_path / "a.log",
    )  # fmt: skip
    start_service(controller)
    try:
        start_service(agent)
        try:
            ctl = str(Path(sys.executable).parent / "spiderpoolctl")
            subprocess.run(
                [ctl, "--controller", f"unix:{ctl_sock}", "apply", "-f",
                 str(REPO / "deploy/examples/ippool-demo-v4.yaml")],
                check=True, capture_output=True,
            )  # fmt: skip
            exported = _metric_names(f"http://127.0.0.1:{ports[0]}/metrics")
            exported |= _metric_names(f"http://127.0.0.1:{ports[1]}/metrics")
        finally:
            agent.stop()
    finally:
        controller.stop()
    counters = {f"{name}_total" for name in exported}
    assert used <= exported | counters, sorted(used - exported - counters)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
