"""The log keys of an ``IpamService`` request: which pod, attachment and network it is about.

``translate_errors`` binds them to the log context of the call (``IpamServicer.log_fields``),
so the controller's lines name the same ``pod`` (namespace/name), ``container_id``,
``ifname`` and ``network`` as the agent's and the shim's for the same CNI call. Every
IpamService request has some of the fields (``pod``, ``ifname``, ``network``); a missing
one is simply not logged.
"""

from __future__ import annotations

from google.protobuf.message import Message
from spiderpool.controller.v1 import ipam_pb2


def ipam_log_fields(request: Message) -> dict[str, str]:
    """``pod``, ``container_id``, ``ifname`` and ``network`` of any IpamService request."""
    fields: dict[str, str] = {}
    names = request.DESCRIPTOR.fields_by_name
    if "pod" in names:
        pod: ipam_pb2.PodRef = getattr(request, "pod")  # noqa: B009  (a field, not a fixed attribute)
        if pod.namespace and pod.name:
            fields["pod"] = f"{pod.namespace}/{pod.name}"
        fields["container_id"] = pod.container_id
    for key in ("ifname", "network"):
        if key in names:
            fields[key] = getattr(request, key)
    return fields
