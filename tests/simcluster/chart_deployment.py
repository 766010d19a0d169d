"""The project's programs as the Helm chart deploys them: the simulated cluster's only source for them.

The chart (``deploy/chart/spiderpool``) is rendered once per cluster with Helm (tests/chart/rendered.py) and
the simulated cluster takes from the rendering, not from a table of its own:

- the controller replicas and the agents: each container's command, arguments and environment, its
  mounted settings file (the ``spiderpool-conf`` ConfigMap) and certificates (the gRPC mutual TLS Secrets
  and the webhook serving Secret the chart generates), materialized as the kubelet would (downward-API
  values given, ``$(VAR)`` expanded, volumes written out and their mount paths relocated). Before a program
  starts, its own parser and settings loader check the result (tests/chart/drift.py): a flag, a settings
  key or an environment variable the program does not know fails the cluster's start;
- the exec probes the chart gives those containers, run (in-process) as the readiness checks;
- the ServiceAccounts, Roles and bindings (the test API server enforces them, each program authenticates
  as its ServiceAccount) and the Mutating/ValidatingWebhookConfigurations (with the chart's caBundle),
  applied to the API server; the controller Service's ports.

What a simulation must adapt, and nothing else:

- the in-cluster ServiceAccount token mount: ``--kubeconfig`` with the ServiceAccount's token is appended
  (the test API server mints it);
- the pod network: each controller replica is a process on this machine with its own address, a loopback
  ``127.a.b.c`` as its pod IP (``status.podIP``), and the addresses a pod means by ``0.0.0.0`` and
  ``127.0.0.1`` in its arguments and probes (its own, and only its own, interfaces) are that pod IP, so two
  replicas use the chart's ports side by side;
- the cluster DNS: each node's ``/etc/hosts`` (node_host.py) resolves the controller Service's name to the
  Service stand-in inside that node, so the agents dial the chart's ``--controller`` address unchanged, with
  the chart's mutual TLS end to end (the stand-in splices bytes).

``extra_args``/``extra_env`` (tests: e.g. a faster DEL spool replay) come after the chart's and pass the
same checks; so does ``SIM_CONTROLLER_ARGS``, the one setting the chart cannot express (see there).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spiderpool_common import health_probe

from tests.chart import drift
from tests.chart.rendered import Container, Materialized, Rendered, containers, relocate, render

from . import commands

CONTROLLER = "Deployment/spiderpool-controller/spiderpool-controller"
AGENT = "DaemonSet/spiderpool-agent/spiderpool-agent"
NAMESPACE = "kube-system"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# What the simulated cluster sets beyond the chart's defaults: the default network every node's net.d holds.
SIM_VALUES: dict[str, Any] = {"multus": {"multusCNI": {"defaultCniCRName": commands.CLUSTER_NETWORK}}}
# The one setting the chart cannot express that the simulated cluster's tests rely on: both families served,
# neither required of every pod (the program's own default; the chart's ipam.enableIPv4/IPv6 make a family
# required, as upstream's do, and refuse both false). The tests give many pods IPv4-only pools; until they
# use dual-stack pools, the controllers get these two flags after the chart's (checked like the chart's).
SIM_CONTROLLER_ARGS: tuple[str, ...] = ("--enable-ipv4=false", "--enable-ipv6=false")
_ANY_OR_LOOPBACK = re.compile(r"(?<![0-9.])(?:0\.0\.0\.0|127\.0\.0\.1)(?=:[0-9]+$)")

Obj = dict[str, Any]


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps deeply, anything else replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def sim_values(log_level: str, values: Mapping[str, Any]) -> dict[str, Any]:
    levels = {c: {"debug": {"logLevel": log_level}} for c in ("spiderpoolController", "spiderpoolAgent")}
    return merged(merged(SIM_VALUES, levels), values)


def in_pod(arg: str, pod_ip: str) -> str:
    """``--listen=0.0.0.0:5720`` or ``--address=127.0.0.1:5720`` in a pod whose only address is ``pod_ip``."""
    return _ANY_OR_LOOPBACK.sub(pod_ip, arg)


def pod_ips(count: int, rng: random.Random | None = None) -> tuple[str, list[str]]:
    """A Service address and ``count`` pod addresses on one random loopback /24 (127.0.0.0/8 is all local)."""
    rng = rng or random.Random()
    prefix = f"127.{rng.randint(16, 250)}.{rng.randint(1, 250)}"
    return f"{prefix}.1", [f"{prefix}.{10 + i}" for i in range(count)]


@dataclass(frozen=True)
class Program:
    """One container made runnable here: argv, environment, and its startup probe's argv (relocated)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    probe: list[str]
    listens: Mapping[str, str] = field(default_factory=dict)  # port name -> HOST:PORT it serves


def probe_passes(probe: Sequence[str], timeout: float = 1.0) -> bool:
    """The chart's ``spiderpool-health`` exec probe, run in-process (no interpreter start per poll)."""
    args = health_probe.build_parser().parse_args(list(probe[1:]))
    try:
        if args.socket:
            health_probe.probe_socket(args.socket, args.service, timeout)
        else:
            files = (args.tls_cert_file, args.tls_key_file, args.tls_ca_file)
            health_probe.probe_tls(args.address, files, args.tls_server_name, args.service, timeout)
    except health_probe.ProbeFailed:
        return False
    return True


class ChartDeployment:
    """The rendered chart, and the programs of it the simulated cluster runs, materialized under ``root``."""

    def __init__(self, rendered: Rendered, root: Path) -> None:
        self.rendered = rendered
        self.root = root
        self.containers = containers(rendered)

    @classmethod
    def render(cls, values: Mapping[str, Any], root: Path) -> ChartDeployment:
        return cls(render(values, namespace=NAMESPACE), root)

    # --- cluster objects ------------------------------------------------------------------------------------

    def rbac_objects(self) -> list[Obj]:
        return [o for kind in RBAC_KINDS for o in self.rendered.kinds(kind)]

    def webhook_configurations(self) -> list[Obj]:
        return [o for kind in WEBHOOK_KINDS for o in self.rendered.kinds(kind)]

    @property
    def service(self) -> Obj:
        return self.rendered.get("Service", commands.SERVICE[1])

    def service_port(self, name: str) -> int:
        (port,) = [p["port"] for p in self.service["spec"]["ports"] if p["name"] == name]
        return int(port)

    def service_account(self, key: str) -> str:
        return str(self.containers[key].pod["serviceAccountName"])

    @property
    def agent_controller_address(self) -> str:
        """HOST:PORT the agents dial (the controller Service's DNS name)."""
        return self.containers[AGENT].flags()["--controller"]

    # --- programs -------------------------------------------------------------------------------------------

    def controller(
        self, index: int, pod_ip: str, kubeconfig: Path, extra_args: Sequence[str] = ()
    ) -> Program:
        container = self.containers[CONTROLLER]
        name = commands.controller_name(index)
        fields = {"metadata.name": name, "metadata.namespace": NAMESPACE, "status.podIP": pod_ip}
        run = self._materialize(container, self.root / name, fields, pod_ip=pod_ip)
        extra_args = (*SIM_CONTROLLER_ARGS, *extra_args)
        settings = drift.check_controller(container, replace_argv(run, [*run.argv, *extra_args]), kubeconfig)
        argv = [*run.argv, f"--kubeconfig={kubeconfig}", *extra_args]
        if not settings.cluster_mode:
            raise drift.Drift(f"{container.key}: the chart's controller does not run in cluster mode")
        probe = self._probe(container, run, pod_ip)
        listens = {"grpc": settings.listen, "webhook": settings.webhook_listen}
        return Program(name, [str(commands.SCRIPTS / argv[0]), *argv[1:]], run.env, probe, listens)

    def agent(
        self,
        node: str,
        host_paths: Mapping[str, Path],
        kubeconfig: Path,
        extra_env: Mapping[str, str] = {},
    ) -> Program:
        """The agent of ``node``; ``host_paths`` maps the node's paths (its hostPath volumes) to where this
        machine keeps them (the node's directory)."""
        container = self.containers[AGENT]
        name = f"agent-{node}"
        fields = {"spec.nodeName": node}
        run = self._materialize(container, self.root / name, fields, host_paths=host_paths)
        argv = [*run.argv, f"--kubeconfig={kubeconfig}"]
        env = {**run.env, **extra_env}
        drift.check_agent(container, Materialized(argv, env, run.places))
        probe = self._probe(container, run, "")
        return Program(name, [str(commands.SCRIPTS / argv[0]), *argv[1:]], env, probe)

    def _materialize(
        self,
        container: Container,
        root: Path,
        fields: Mapping[str, str],
        *,
        pod_ip: str = "",
        host_paths: Mapping[str, Path] = {},
    ) -> Materialized:
        root.mkdir(parents=True, exist_ok=True)
        run = container.materialize(self.rendered, root, field_values=fields, host_paths=host_paths)
        if pod_ip:
            run = replace_argv(run, [in_pod(a, pod_ip) for a in run.argv])
        return run

    def _probe(self, container: Container, run: Materialized, pod_ip: str) -> list[str]:
        """The startup probe's command on the container's relocated volumes (and in its pod)."""
        command = container.probes["startupProbe"]["exec"]["command"]
        probe = replace(container, command=tuple(command), args=())
        places = {m.path: run.places[m.path] for m in container.mounts}
        relocated = [relocate(a, places) for a in probe.argv]
        return [in_pod(a, pod_ip) for a in relocated] if pod_ip else relocated


def replace_argv(run: Materialized, argv: list[str]) -> Materialized:
    return Materialized(argv, run.env, run.places)
