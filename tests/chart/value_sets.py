"""The chart's value sets the tests render, validate and run: the defaults and what users deploy."""

from __future__ import annotations

import functools
from typing import Any

from tests.chart.rendered import Rendered, render
from tests.kubeapi.certs import CertificateAuthority

DUAL_STACK_POOLS: dict[str, Any] = {
    "ipam": {"spiderSubnet": {"enable": True}},
    "clusterDefaultPool": {
        "installIPv4IPPool": True,
        "installIPv6IPPool": True,
        "ipv4Subnet": "172.18.40.0/24",
        "ipv4IPRanges": ["172.18.40.40-172.18.40.200"],
        "ipv4Gateway": "172.18.40.1",
        "ipv6Subnet": "fc00:f853:ccd:e793::/64",
        "ipv6IPRanges": ["fc00:f853:ccd:e793::40-fc00:f853:ccd:e793::200"],
        "ipv6Gateway": "fc00:f853:ccd:e793::1",
    },
}
MONITORING: dict[str, Any] = {
    component: {
        "prometheus": {
            "enabled": True,
            "serviceMonitor": {"install": True},
            "prometheusRule": {"install": True},
        }
    }
    for component in ("spiderpoolController", "spiderpoolAgent")
}


@functools.cache
def provided_tls() -> dict[str, Any]:
    """tls.method provided: a webhook certificate of a CA of the user's, and the gRPC Secrets' names."""
    ca = CertificateAuthority("users-ca")
    pair = ca.issue(("spiderpool-controller.kube-system.svc",))
    return {
        "spiderpoolController": {
            "webhook": {"enabled": True},
            "tls": {
                "method": "provided",
                "provided": {
                    "tlsCert": pair.cert_pem.decode(),
                    "tlsKey": pair.key_pem.decode(),
                    "tlsCa": ca.cert_pem.decode(),
                    "grpcControllerSecret": "my-controller-grpc",
                    "grpcAgentSecret": "my-agent-grpc",
                },
            },
        }
    }


def value_sets() -> dict[str, dict[str, Any]]:
    """Name -> values: the defaults, the four the issue names, and the other TLS methods and monitoring."""
    return {
        "default": {},
        "ipv4-only": {"ipam": {"enableIPv6": False}},
        "dual-stack-default-pools": DUAL_STACK_POOLS,
        "cert-manager": {
            "spiderpoolController": {"webhook": {"enabled": True}, "tls": {"method": "certmanager"}}
        },
        "detection-on": {"ipam": {"enableIPConflictDetection": True, "enableGatewayDetection": True}},
        "webhooks-off": {"spiderpoolController": {"webhook": {"enabled": False}}},
        "provided-tls": provided_tls(),
        "monitoring": MONITORING,
    }


@functools.cache
def rendered_value_set(name: str) -> Rendered:
    """A value set rendered once per test process (Helm generates RSA keys at each render: seconds each);
    callers only read it."""
    return render(value_sets()[name])
