"""The agent's settings: one frozen dataclass, built once at start and passed explicitly.

Sources, highest first: command-line flags, ``SPIDERPOOL_*`` environment variables, an
optional YAML file (``--config``), the defaults below. ``validate`` runs at start so a bad
value stops the agent with a message naming the setting instead of failing a CNI call.

``pod_source`` chooses where an ADD's pod facts come from: ``cni-args`` (the embedded
mode: the network configuration's ``args.cni`` and ``node_labels``) or ``kubernetes`` (an
agent in a cluster: the API server named by ``kubeconfig``, or the in-cluster
ServiceAccount when it is empty; the node's name must then be given, as the downward API
does with ``SPIDERPOOL_NODE_NAME``, and its labels come from its Node object).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiderpool_common import bounded_yaml
from spiderpool_common.addresses import DEFAULT_CONTROLLER, parse_listen, unix_path
from spiderpool_common.setting_values import convert
from spiderpool_common.tls import TlsFiles

from spiderpool_agent.multus_networks import cluster_network_problem
from spiderpool_agent.pod_context import parse_labels

DEFAULT_SOCKET = "/var/run/spidernet/spiderpool.sock"
DEFAULT_STATE_DIR = "/var/lib/spiderpool/agent"
SPOOL_SUBDIR = "spool"  # the shims' default spool is DEFAULT_STATE_DIR/spool (spiderpool_cni.spool)
ENV_PREFIX = "SPIDERPOOL_"
LOG_LEVELS = ("debug", "info", "warning", "warn", "error")
LOG_FORMATS = ("json", "console")
POD_SOURCE_CNI_ARGS = "cni-args"
POD_SOURCE_KUBERNETES = "kubernetes"
POD_SOURCES = (POD_SOURCE_CNI_ARGS, POD_SOURCE_KUBERNETES)


@dataclass(frozen=True)
class AgentSettings:
    controller: str = DEFAULT_CONTROLLER  # unix:PATH (or HOST:PORT) of the controller's IpamService
    socket: str = DEFAULT_SOCKET  # the CNI service's unix socket (mode 0600)
    node: str = ""  # this node's name; empty means the host name
    # This node's labels for pools' nodeAffinity, "k=v,k2=v2" (in a cluster: the Node object's).
    node_labels: str = ""
    state_dir: str = DEFAULT_STATE_DIR  # the release journal and the coordinator's records live here
    spool_dir: str = ""  # where the shims spool DELs the agent could not take; "": <state_dir>/spool
    spool_replay_interval: float = 10.0  # seconds between passes over the DEL spool
    log_level: str = "info"
    log_format: str = "json"
    controller_timeout: float = 30.0  # deadline of one controller call, seconds
    replay_initial_backoff: float = 0.2  # journal replay backoff, seconds
    replay_max_backoff: float = 30.0
    shutdown_grace: float = 10.0  # in-flight CNI calls get this long on SIGTERM
    check_netns: bool = True  # ADD/CHECK: code 3 if CNI_NETNS is missing, 4 if not a network namespace
    coordinator_config_ttl: float = 2.0  # seconds the SpiderCoordinator read is reused; 0: every call
    pod_source: str = POD_SOURCE_CNI_ARGS  # where an ADD's pod facts come from: cni-args or kubernetes
    kubeconfig: str = ""  # pod_source kubernetes: a kubeconfig file; "": the in-cluster ServiceAccount
    # The Multus cluster network ([namespace/]name) of eth0 when the pod names no default network.
    cluster_network: str = ""
    kube_timeout: float = 5.0  # deadline of one Kubernetes API read, seconds (a DEL's whole lookup too)
    kube_sync_timeout: float = 10.0  # how long an ADD waits for the agent's first Kubernetes sync
    # Mutual TLS to a controller on HOST:PORT (all three, or none), and the name its certificate carries.
    controller_tls_cert_file: str = ""
    controller_tls_key_file: str = ""
    controller_tls_ca_file: str = ""
    controller_tls_server_name: str = ""
    metrics_listen: str = ""  # HOST:PORT for Prometheus /metrics; empty: off (upstream's agent port 5711)

    @property
    def controller_tls(self) -> TlsFiles | None:
        files = (self.controller_tls_cert_file, self.controller_tls_key_file, self.controller_tls_ca_file)
        return TlsFiles(*files) if any(files) else None

    @property
    def node_name(self) -> str:
        return self.node or socket.gethostname()

    @property
    def node_label_map(self) -> dict[str, str]:
        return parse_labels(self.node_labels)

    @property
    def del_spool_dir(self) -> str:
        """The DEL spool: ``spool_dir``, else ``<state_dir>/spool`` (the shims' default with the
        default state directory)."""
        return self.spool_dir or str(Path(self.state_dir) / SPOOL_SUBDIR)

    def validate(self) -> AgentSettings:
        """Return self, or raise ValueError naming the first bad setting."""
        if not self.controller:
            raise ValueError(f"setting controller: must not be empty (default {DEFAULT_CONTROLLER})")
        try:
            parse_listen(self.controller)
        except ValueError as exc:
            raise ValueError(f"setting controller: {exc}") from None
        if not Path(self.socket).is_absolute():
            raise ValueError(f"setting socket: {self.socket!r} must be an absolute path")
        if not self.state_dir:
            raise ValueError("setting state_dir: must not be empty")
        try:
            parse_labels(self.node_labels)
        except ValueError as exc:
            raise ValueError(f"setting node_labels: {exc}") from None
        if self.spool_dir and not Path(self.spool_dir).is_absolute():
            raise ValueError(f"setting spool_dir: {self.spool_dir!r} must be an absolute path")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"setting log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"setting log_format: {self.log_format!r} is not json or console")
        for name in (
            "controller_timeout",
            "replay_initial_backoff",
            "replay_max_backoff",
            "shutdown_grace",
            "spool_replay_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"setting {name}: must be positive")
        if self.coordinator_config_ttl < 0:
            raise ValueError("setting coordinator_config_ttl: must not be negative")
        if self.replay_max_backoff < self.replay_initial_backoff:
            raise ValueError("setting replay_max_backoff: must not be below replay_initial_backoff")
        self._validate_pod_source()
        if self.metrics_listen:
            try:
                metrics = parse_listen(self.metrics_listen, allow_port_zero=True)  # the bound port is logged
            except ValueError as exc:
                raise ValueError(f"setting metrics_listen: {exc}") from None
            if unix_path(metrics) is not None:
                raise ValueError("setting metrics_listen: metrics are served over HTTP, on HOST:PORT only")
        tls = self.controller_tls
        if tls is not None:
            try:
                tls.validate()
            except ValueError as exc:
                raise ValueError(f"setting controller_tls_*: {exc}") from None
        return self

    def _validate_pod_source(self) -> None:
        if self.pod_source not in POD_SOURCES:
            raise ValueError(
                f"setting pod_source: {self.pod_source!r} is not one of {', '.join(POD_SOURCES)}"
            )
        problem = cluster_network_problem(self.cluster_network)
        if problem:
            raise ValueError(f"setting cluster_network: {problem}")
        for name in ("kube_timeout", "kube_sync_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"setting {name}: must be positive")
        if self.pod_source == POD_SOURCE_CNI_ARGS:
            if self.kubeconfig:
                raise ValueError(f"setting kubeconfig: only used with pod_source {POD_SOURCE_KUBERNETES}")
            return
        if not self.node:
            raise ValueError(
                f"setting node: required with pod_source {POD_SOURCE_KUBERNETES} (the kubelet's node name, "
                "e.g. SPIDERPOOL_NODE_NAME from the downward API's spec.nodeName)"
            )
        if self.node_labels:
            raise ValueError(
                f"setting node_labels: not used with pod_source {POD_SOURCE_KUBERNETES} "
                "(the Node object's labels are)"
            )
        if self.kubeconfig and not Path(self.kubeconfig).is_file():
            raise ValueError(f"setting kubeconfig: {self.kubeconfig!r} is not a file")


_FIELDS = {f.name: f for f in dataclasses.fields(AgentSettings)}


def _coerce(name: str, value: Any) -> Any:
    if name == "node_labels" and isinstance(value, dict):  # YAML may give a mapping
        return ",".join(f"{k}={v}" for k, v in value.items())
    return convert(name, str(_FIELDS[name].type), value)


def load_settings(
    flags: Mapping[str, Any], env: Mapping[str, str] | None = None, config_file: str | None = None
) -> AgentSettings:
    """Merge YAML < environment < flags (``None`` flags are unset) and validate."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if config_file:
        data = bounded_yaml.load(Path(config_file).read_text(), config_file) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings")
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS:
                raise ValueError(f"{config_file}: unknown setting {key!r}")
            values[name] = _coerce(name, value)
    for name in _FIELDS:
        env_value = env.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    # Kubernetes' downward API conventionally exports the node name as SPIDERPOOL_NODE_NAME.
    if "node" not in values and env.get("SPIDERPOOL_NODE_NAME"):
        values["node"] = env["SPIDERPOOL_NODE_NAME"]
    # Upstream's agent reads the Multus cluster network from MULTUS_CLUSTER_NETWORK.
    if "cluster_network" not in values and env.get("MULTUS_CLUSTER_NETWORK"):
        values["cluster_network"] = env["MULTUS_CLUSTER_NETWORK"]
    for name, value in flags.items():
        if value is not None and name in _FIELDS:
            values[name] = _coerce(name, value)
    return AgentSettings(**values).validate()
