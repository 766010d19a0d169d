"""Controller settings: one frozen dataclass built from flags, SPIDERPOOL_* variables and an
optional YAML file (in that order of precedence), validated at start, passed explicitly.

The default ``listen`` is a unix socket of mode 0600 (``addresses.DEFAULT_CONTROLLER``):
whoever reaches the controller can release any pod's address and delete pools, and plain
TCP authenticates nobody. A TCP ``listen`` is refused unless ``allow_insecure_tcp``
(``--insecure-tcp``) says the operator accepts that; mutual TLS is for the cluster mode.
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
    # false): stamped on every allocated IP, the agent probes before ADD succeeds (reference 5.9).
    enable_ip_conflict_detection: bool = False
    enable_gateway_detection: bool = False
    # How long an address another host answered for stays out of allocation.
    conflict_quarantine_seconds: float = 600.0

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
        if unix_path(target) is None and not self.allow_insecure_tcp:
            raise ValueError(
                f"setting listen: {self.listen} is plain TCP, which authenticates nobody: anyone who "
                "reaches it could allocate or release any pod's address and delete pools (mutual TLS "
                f"comes with the cluster mode); serve a unix socket (default {DEFAULT_LISTEN}, mode "
                "0600), or accept the risk with --insecure-tcp"
            )
        return self


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
