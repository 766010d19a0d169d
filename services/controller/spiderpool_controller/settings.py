"""Controller settings: one frozen dataclass built from flags, SPIDERPOOL_* variables and an
optional YAML file (in that order of precedence), validated at start, passed explicitly.

The default ``listen`` is a unix socket of mode 0600 (``addresses.DEFAULT_CONTROLLER``):
whoever reaches the controller can release any pod's address and delete pools, and plain
TCP authenticates nobody. A TCP ``listen`` is refused unless ``allow_insecure_tcp``
(``--insecure-tcp``) says the operator accepts that, or mutual TLS is configured
(``tls_cert_file``/``tls_key_file``/``tls_ca_file``: clients must present a certificate of
that CA), which is how the cluster mode serves its agents.

The cluster mode (``store: kubernetes://``) adds: the kubeconfig (empty: the in-cluster
ServiceAccount), this replica's identity and the address the agents and the other replicas
reach it on (``advertise``; from the downward API's pod name and IP), the leader-election
Lease and its timings (upstream's 15/10/2 s by default), and the IP garbage collector's
switches (upstream's SPIDERPOOL_GC_* defaults).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from spiderpool_common import bounded_yaml
from spiderpool_common.addresses import DEFAULT_CONTROLLER, parse_listen, unix_path
from spiderpool_common.setting_values import convert

from spiderpool_controller.domain.validation import ValidationSettings

DEFAULT_STORE = "sqlite:///var/lib/spiderpool/controller.db"
DEFAULT_LISTEN = DEFAULT_CONTROLLER


@dataclass(frozen=True)
class ControllerSettings:
    store: str = DEFAULT_STORE
    listen: str = DEFAULT_LISTEN
    allow_insecure_tcp: bool = False  # serve plain, unauthenticated TCP when listen is HOST:PORT
    log_level: str = "info"
    log_format: str = "json"
    enable_ipv4: bool = False  # require an IPv4 address for every request (cluster mode: true)
    enable_ipv6: bool = False
    max_allocated_ips: int = 5000
    metrics_listen: str = ""  # HOST:PORT for Prometheus /metrics; empty: off (upstream port 5721)
    # Upstream's configmap enableIPConflictDetection / enableGatewayDetection (Helm default
    # false): stamped on every allocated IP, the agent probes before ADD succeeds (upstream's
    # pkg/networking/networking/ipam_detection.go).
    enable_ip_conflict_detection: bool = False
    enable_gateway_detection: bool = False
    # How long an address another host answered for stays out of allocation.
    conflict_quarantine_seconds: float = 600.0
    # SpiderSubnet auto pools (upstream enableAutoPoolForApplication, Helm default on); off, a
    # pod naming a subnet is refused (with enable_spider_subnet off, as upstream, the subnet
    # annotations are ignored, and no subnet status is kept). The flexible size when a workload sets no
    # ippool-ip-number (upstream clusterSubnetDefaultFlexibleIPNumber), and how long an ADD
    # waits for its workload's pool before code 11 (below the agent's 30 s call deadline).
    enable_auto_pool: bool = True
    auto_pool_default_flexible_ips: int = 1
    auto_pool_wait_seconds: float = 20.0
    # A released address stays out of circulation this long, unless nothing else is free
    # (a pool's ipam.spidernet.io/ip-reuse-delay-seconds annotation overrides it).
    ip_reuse_delay_seconds: float = 0.0
    # Mutual TLS of the gRPC port (all three, or none): PEM files, re-read when they change.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # The name the replicas' certificates carry (the forwarded call's TLS server name).
    tls_server_name: str = ""
    # Upstream's enableSpiderSubnet (a pool stays inside the SpiderSubnet of its CIDR) and
    # enableValidatingResourcesDeletedWebhook (deleting a pool or subnet in use is refused).
    enable_spider_subnet: bool = True
    validate_resource_deletion: bool = False
    # The admission webhooks (every replica): HTTPS on HOST:PORT with this certificate.
    webhook_listen: str = ""  # empty: off (upstream port 5722)
    webhook_cert_file: str = ""
    webhook_key_file: str = ""
    # --- the cluster mode (store kubernetes://) ---
    kubeconfig: str = ""  # empty: the in-cluster ServiceAccount
    pod_name: str = ""  # this replica's pod (downward API); with a random suffix, the Lease identity
    pod_namespace: str = "kube-system"  # where the Lease lives
    advertise: str = ""  # HOST:PORT or unix:PATH where agents and standbys reach this replica
    leader_lease_name: str = "spiderpool-controller-leases"
    leader_lease_duration: float = 15.0
    leader_renew_deadline: float = 10.0
    leader_retry_period: float = 2.0
    gc_enabled: bool = True
    gc_interval_seconds: float = 600.0
    gc_terminating_pod_on_ready_node: bool = True
    gc_terminating_pod_on_not_ready_node: bool = True
    gc_running_pod_on_empty_pod_ips: bool = False
    gc_additional_grace_seconds: float = 0.0
    # The SpiderCoordinator's CIDR discovery (upstream SPIDERPOOL_CNI_CONFIG_DIR and
    # SPIDERPOOL_CILIUM_CONFIGMAP_NAMESPACE_NAME): the node's CNI configuration directory when
    # mounted (podCIDRType auto reads the default CNI there; empty: ask the API), Cilium's ConfigMap.
    cni_config_dir: str = ""
    cilium_configmap_namespace_name: str = "kube-system/cilium-config"

    @property
    def validation(self) -> ValidationSettings:
        """The rules' switches: the families this installation serves (both when neither
        is required), subnets, deletion validation."""
        families = {4: self.enable_ipv4, 6: self.enable_ipv6}
        if not any(families.values()):
            families = {4: True, 6: True}
        return ValidationSettings(
            enable_ipv4=families[4],
            enable_ipv6=families[6],
            enable_spider_subnet=self.enable_spider_subnet,
            validate_deletes=self.validate_resource_deletion,
        )

    @property
    def auto_pools(self) -> bool:
        """Pools made for workloads naming a SpiderSubnet: upstream's enableAutoPoolForApplication,
        which acts only with enableSpiderSubnet."""
        return self.enable_spider_subnet and self.enable_auto_pool

    @property
    def cluster_mode(self) -> bool:
        return self.store.startswith("kubernetes://")

    @property
    def tls_files(self) -> tuple[str, str, str] | None:
        files = (self.tls_cert_file, self.tls_key_file, self.tls_ca_file)
        return files if any(files) else None

    @property
    def required_families(self) -> frozenset[int]:
        return frozenset(v for v, on in ((4, self.enable_ipv4), (6, self.enable_ipv6)) if on)

    def validate(self) -> ControllerSettings:
        """Return self, or raise ValueError (one line) naming the first bad setting."""
        if self.log_format not in {"json", "console"}:
            raise ValueError(f"setting log_format: {self.log_format!r} is neither json nor console")
        if self.max_allocated_ips < 1:
            raise ValueError("setting max_allocated_ips: must be at least 1")
        if self.conflict_quarantine_seconds < 0:
            raise ValueError("setting conflict_quarantine_seconds: must not be negative")
        if self.auto_pool_default_flexible_ips < 0:
            raise ValueError("setting auto_pool_default_flexible_ips: must not be negative")
        if self.auto_pool_wait_seconds <= 0:
            raise ValueError("setting auto_pool_wait_seconds: must be positive")
        if not 0 <= self.ip_reuse_delay_seconds <= 86_400:
            raise ValueError("setting ip_reuse_delay_seconds: must be between 0 and 86400 (one day)")
        try:
            target = parse_listen(self.listen)
        except ValueError as exc:
            raise ValueError(f"setting listen: {exc}") from None
        if self.metrics_listen:
            try:
                metrics = parse_listen(self.metrics_listen, allow_port_zero=True)  # the bound port is logged
            except ValueError as exc:
                raise ValueError(f"setting metrics_listen: {exc}") from None
            if unix_path(metrics) is not None:
                raise ValueError("setting metrics_listen: metrics are served over HTTP, on HOST:PORT only")
        files = self.tls_files
        if files is not None and not all(files):
            raise ValueError("setting tls_cert_file, tls_key_file, tls_ca_file: give all three or none")
        if files is not None and unix_path(target) is not None:
            raise ValueError("setting listen: mutual TLS is served on HOST:PORT, not on a unix socket")
        self._validate_cluster()
        if self.webhook_listen and not (self.webhook_cert_file and self.webhook_key_file):
            raise ValueError("setting webhook_listen: needs webhook_cert_file and webhook_key_file (HTTPS)")
        if unix_path(target) is None and not self.allow_insecure_tcp and files is None:
            raise ValueError(
                f"setting listen: {self.listen} is plain TCP, which authenticates nobody: anyone who "
                "reaches it could allocate or release any pod's address and delete pools (mutual TLS "
                f"comes with the cluster mode); serve a unix socket (default {DEFAULT_LISTEN}, mode "
                "0600), serve mutual TLS (--tls-cert-file, --tls-key-file, --tls-ca-file), or "
                "accept the risk with --insecure-tcp"
            )
        return self

    def _validate_cluster(self) -> None:
        if not self.cluster_mode:
            for name in ("kubeconfig", "advertise"):
                if getattr(self, name):
                    raise ValueError(f"setting {name}: only used with --store kubernetes://")
            return
        if self.kubeconfig and not Path(self.kubeconfig).is_file():
            raise ValueError(f"setting kubeconfig: {self.kubeconfig!r} is not a file")
        timings = (self.leader_retry_period, self.leader_renew_deadline, self.leader_lease_duration)
        if not 0 < timings[0] < timings[1] < timings[2]:
            raise ValueError(
                "setting leader_retry_period, leader_renew_deadline, leader_lease_duration: must satisfy "
                f"0 < retry period < renew deadline < lease duration (got {', '.join(map(str, timings))})"
            )
        if self.gc_interval_seconds <= 0:
            raise ValueError("setting gc_interval_seconds: must be positive")
        if self.gc_additional_grace_seconds < 0:
            raise ValueError("setting gc_additional_grace_seconds: must not be negative")
        namespace, _, name = self.cilium_configmap_namespace_name.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(
                "setting cilium_configmap_namespace_name: "
                f"{self.cilium_configmap_namespace_name!r} is not NAMESPACE/NAME"
            )
        if self.advertise:
            try:
                parse_listen(self.advertise)
            except ValueError as exc:
                raise ValueError(f"setting advertise: {exc}") from None


# Every setting is a dataclass field; its annotation says how to read it.
_FIELDS: dict[str, str] = {f.name: str(f.type) for f in fields(ControllerSettings)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spiderpool-controller", description="Spiderpool controller: the single writer of IPAM state."
    )
    p.add_argument("--config", help="optional YAML file with settings (keys as the long flags, _ for -)")
    p.add_argument("--store", help=f"state backend URL (default {DEFAULT_STORE})")
    p.add_argument(
        "--listen",
        help=f"unix:PATH (mode 0600), or HOST:PORT with --insecure-tcp (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--insecure-tcp",
        dest="allow_insecure_tcp",
        action="store_const",
        const="true",
        help="allow a HOST:PORT --listen: plain TCP, no authentication (whoever reaches it controls IPAM)",
    )
    p.add_argument("--log-level", help="debug, info, warning, error (default info)")
    p.add_argument("--log-format", help="json or console (default json)")
    p.add_argument("--enable-ipv4", help="true|false: every allocation must get an IPv4 address")
    p.add_argument("--enable-ipv6", help="true|false: every allocation must get an IPv6 address")
    p.add_argument("--max-allocated-ips", help="per-pool threshold of allocation records (default 5000)")
    p.add_argument("--metrics-listen", help="HOST:PORT to serve Prometheus /metrics on (default: off)")
    p.add_argument(
        "--enable-ip-conflict-detection",
        help="true|false: agents ARP/NDP-probe each allocated address before ADD succeeds (default false)",
    )
    p.add_argument(
        "--enable-gateway-detection",
        help="true|false: agents check the gateway answers ARP/NDP before ADD succeeds (default false)",
    )
    p.add_argument(
        "--conflict-quarantine-seconds",
        help="seconds a released conflicting address is not handed out again (default 600; 0: off)",
    )
    p.add_argument(
        "--ip-reuse-delay-seconds",
        help="seconds a released address waits before another pod gets it, unless no other is free "
        "(default 0: at once; a pool's ipam.spidernet.io/ip-reuse-delay-seconds annotation overrides)",
    )
    subnets = p.add_argument_group("SpiderSubnet automatic pools")
    subnets.add_argument(
        "--enable-auto-pool", help="true|false: pools made for workloads naming a SpiderSubnet (default true)"
    )
    subnets.add_argument(
        "--auto-pool-default-flexible-ips",
        help="addresses beyond the replicas when a workload sets no ippool-ip-number (default 1)",
    )
    subnets.add_argument(
        "--auto-pool-wait-seconds", help="how long an ADD waits for its workload's pool (default 20)"
    )
    tls = p.add_argument_group("mutual TLS of the gRPC port (clients must present a certificate of the CA)")
    tls.add_argument("--tls-cert-file", help="PEM certificate of this controller")
    tls.add_argument("--tls-key-file", help="PEM private key")
    tls.add_argument("--tls-ca-file", help="PEM CA that clients' certificates must chain to")
    tls.add_argument("--tls-server-name", help="the name in the replicas' certificates (forwarded calls)")
    p.add_argument(
        "--enable-spider-subnet", help="true|false: pools stay inside their SpiderSubnet (default true)"
    )
    p.add_argument(
        "--validate-resource-deletion",
        help="true|false: refuse deleting a pool or subnet with allocated IPs (default false: it waits)",
    )
    hooks = p.add_argument_group("admission webhooks (HTTPS, every replica)")
    hooks.add_argument("--webhook-listen", help="HOST:PORT (default: off; upstream port 5722)")
    hooks.add_argument("--webhook-cert-file", help="PEM certificate of the webhook server")
    hooks.add_argument("--webhook-key-file", help="PEM private key")
    cluster = p.add_argument_group("cluster mode (--store kubernetes://)")
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: the in-cluster ServiceAccount)")
    cluster.add_argument("--pod-name", help="this replica's pod name (downward API; the Lease identity)")
    cluster.add_argument(
        "--pod-namespace", help="namespace of the leader-election Lease (default kube-system)"
    )
    cluster.add_argument(
        "--advertise", help="HOST:PORT or unix:PATH where agents and other replicas reach this one"
    )
    cluster.add_argument("--leader-lease-name", help="Lease name (default spiderpool-controller-leases)")
    cluster.add_argument("--leader-lease-duration", help="seconds (default 15)")
    cluster.add_argument("--leader-renew-deadline", help="seconds (default 10)")
    cluster.add_argument("--leader-retry-period", help="seconds (default 2)")
    cluster.add_argument("--gc-enabled", help="true|false: IP garbage collection (default true)")
    cluster.add_argument("--gc-interval-seconds", help="full scan period (default 600)")
    cluster.add_argument(
        "--gc-terminating-pod-on-ready-node", help="true|false: release terminating pods past their grace"
    )
    cluster.add_argument(
        "--gc-terminating-pod-on-not-ready-node", help="true|false: the same on NotReady (lost) nodes"
    )
    cluster.add_argument(
        "--gc-running-pod-on-empty-pod-ips",
        help="true|false: release running pods without podIPs (default false)",
    )
    cluster.add_argument(
        "--gc-additional-grace-seconds", help="added to a terminating pod's deadline (default 0)"
    )
    cluster.add_argument(
        "--cni-config-dir",
        help="the node's CNI configuration directory, if mounted: podCIDRType auto reads the default "
        "CNI there (default: none, the API is asked)",
    )
    cluster.add_argument(
        "--cilium-configmap-namespace-name",
        help="Cilium's ConfigMap for podCIDRType cilium (default kube-system/cilium-config)",
    )
    return p


def load_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> ControllerSettings:
    """Flags > SPIDERPOOL_* environment > YAML file > defaults; raises ValueError on bad input."""
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if args.config:
        loaded = bounded_yaml.load(Path(args.config).read_text(), args.config) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of settings")
        for key, raw in loaded.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS:
                raise ValueError(f"{args.config}: unknown setting {key!r}")
            values[name] = raw
    for name in _FIELDS:
        env_value = env.get(f"SPIDERPOOL_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
        flag = getattr(args, name)
        if flag is not None:
            values[name] = flag
    converted: dict[str, Any] = {name: convert(name, _FIELDS[name], raw) for name, raw in values.items()}
    return ControllerSettings(**converted).validate()
