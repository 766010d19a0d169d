"""Controller settings: one frozen dataclass built from flags, SPIDERPOOL_* variables and an
optional YAML file (in that order of precedence), validated at start, passed explicitly."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_STORE = "sqlite:///var/lib/spiderpool/controller.db"
DEFAULT_LISTEN = "127.0.0.1:5720"


@dataclass(frozen=True)
class ControllerSettings:
    store: str = DEFAULT_STORE
    listen: str = DEFAULT_LISTEN
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


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean")


_CONVERTERS: dict[str, Any] = {"str": str, "bool": _bool, "int": int, "float": float}
# Every setting is a dataclass field; its annotation says how to read it from text.
_FIELDS: dict[str, Any] = {f.name: _CONVERTERS[str(f.type)] for f in fields(ControllerSettings)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spiderpool-controller", description="Spiderpool controller: the single writer of IPAM state."
    )
    p.add_argument("--config", help="optional YAML file with settings (keys as the long flags, _ for -)")
    p.add_argument("--store", help=f"state backend URL (default {DEFAULT_STORE})")
    p.add_argument("--listen", help=f"HOST:PORT or unix:PATH to serve gRPC on (default {DEFAULT_LISTEN})")
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
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
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
    converted: dict[str, Any] = {}
    for name, raw in values.items():
        try:
            converted[name] = raw if not isinstance(raw, str) else _FIELDS[name](raw)
        except ValueError as exc:
            raise ValueError(f"setting {name}: {exc}") from None
    settings = ControllerSettings(**converted)
    if settings.log_format not in {"json", "console"}:
        raise ValueError(f"setting log_format: {settings.log_format!r} is neither json nor console")
    if settings.max_allocated_ips < 1:
        raise ValueError("setting max_allocated_ips: must be at least 1")
    return settings
