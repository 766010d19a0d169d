"""The kubelet stand-in's light sandboxes: each pod's IPAM ADD and DEL sent straight to the node agent's CNI
gRPC service, no namespace, no main plugin, no shim process (`--cni agent`; the default, `--cni exec`, is
sandbox.py).

What it keeps of a real sandbox is everything the IPAM side sees. Per attachment whose main plugin delegates
IPAM to `spiderpool` (`"ipam": {"type": "spiderpool"}`, as macvlan's does), the call is the one the shim would
make when macvlan executes it: `spiderpool.agent.v1.CniService/IpamAdd` (or `IpamDel`) carrying the CNI
environment (`CNI_CONTAINERID` the sandbox ID, `CNI_IFNAME`, the kubelet's `CNI_ARGS` with the pod's
namespace, name and UID) and, as stdin, the plugin's request configuration derived as libcni derives it (the
network's name and cniVersion, runtimeConfig from the capability args, the plugins' `args`). The agent serves
it exactly as a shim's call (pod facts from its informers, the controller's Allocate). Attachments of other
IPAM plugins are not called (their result is empty).

What it leaves out, and why: the shim's start-up (a Python process per call, which bench/cni_latency.py
measures) and the kernel work of the main plugin and the coordinator. `CNI_NETNS` names the kubelet's own
network namespace (the node's: a pod sharing the node's network), which exists, so the agent's check passes;
an IPAM ADD does nothing inside it unless the controller turns IP conflict or gateway detection on, which
would then probe the node's network. The records are the same as for real sandboxes (sandbox.py's store), so
the kubelet's DEL, restart GC and the kill-sandbox hook work alike; the ADD results live in memory (after a
kubelet restart a pod's status is rewritten without IPs until its next ADD).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import grpc
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_tools.cni_runtime import load_config, request_config

from .sandbox import Attachment, SandboxError, SandboxRecord, SandboxStore, new_sandbox_id

DEFAULT_AGENT_SOCKET = "/var/run/spidernet/spiderpool.sock"  # the agent's default, inside the node's view
IPAM_TYPE = "spiderpool"
PRESENT = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
CALL_TIMEOUT_S = 30.0


def ipam_request(attachment: Attachment) -> bytes | None:
    """The stdin the spiderpool IPAM plugin gets for ``attachment`` (the main plugin's request configuration,
    which macvlan passes on unchanged), or None when its main plugin does not delegate to spiderpool."""
    config = load_config(attachment.config)
    main = config.plugins[0]
    if (main.get("ipam") or {}).get("type") != IPAM_TYPE:
        return None
    conf = request_config(
        main,
        name=config.name,
        cni_version=config.cni_version,
        capability_args=attachment.capability_args,
        extra={"args": dict(attachment.config_args)} if attachment.config_args else None,
    )
    return json.dumps(conf).encode()


def rpc_message(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return f"{code.name if code else 'UNKNOWN'}: {details}"


class AgentIpamRunner:
    """Creates and deletes light sandboxes through the agent's CNI service; blocking (called from threads),
    the same methods as ``SandboxRunner``."""

    def __init__(
        self,
        store: SandboxStore,
        *,
        socket_path: str = DEFAULT_AGENT_SOCKET,
        cni_path: Sequence[str] = (),
        netns: str | None = None,
        del_attempts: int = 3,
    ) -> None:
        self.store = store
        self.netns = netns or f"/proc/{os.getpid()}/ns/net"
        self.cni_path = ":".join(cni_path)
        self.del_attempts = del_attempts
        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self._stub = cni_pb2_grpc.CniServiceStub(self._channel)
        self._results: dict[str, dict[str, dict[str, Any]]] = {}  # sandbox ID -> ifname -> ADD result
        self._lock = threading.Lock()

    def close(self) -> None:
        self._channel.close()

    def _call(self, command: str, record: SandboxRecord, attachment: Attachment, stdin: bytes) -> bytes:
        call = cni_pb2.CniCall(
            command=command,
            container_id=record.sandbox_id,
            netns=self.netns,
            ifname=attachment.ifname,
            args=";".join(f"{k}={v}" for k, v in record.cni_args()),
            path=self.cni_path,
            config=stdin,
            present=list(PRESENT),
        )
        if command == "ADD":
            return bytes(self._stub.IpamAdd(cni_pb2.IpamAddRequest(call=call), timeout=CALL_TIMEOUT_S).result)
        return bytes(self._stub.IpamDel(cni_pb2.IpamDelRequest(call=call), timeout=CALL_TIMEOUT_S).result)

    def create(
        self, uid: str, namespace: str, name: str, attachments: Sequence[Attachment], kill_handled: str = ""
    ) -> tuple[SandboxRecord, dict[str, dict[str, Any]]]:
        """ADD every attachment's IPAM in order; on a failure, DEL of those tried and nothing is kept."""
        record = SandboxRecord(
            uid, namespace, name, new_sandbox_id(), "", tuple(attachments), time.time(), kill_handled
        )
        self.store.save(record)
        results: dict[str, dict[str, Any]] = {}
        tried: list[Attachment] = []
        try:
            for attachment in attachments:
                stdin = ipam_request(attachment)
                if stdin is None:
                    results[attachment.ifname] = {}
                    continue
                tried.append(attachment)
                results[attachment.ifname] = json.loads(self._call("ADD", record, attachment, stdin))
        except (grpc.RpcError, ValueError) as exc:
            errors = self._delete(record, tried)
            self.store.remove(record.sandbox_id)
            undo = f" (and undoing it: {'; '.join(errors)})" if errors else ""
            message = rpc_message(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            raise SandboxError(f"IPAM ADD through the agent: {message}{undo}") from exc
        record = replace(record, ready=True)  # every ADD done (a record left not ready: died mid-ADD)
        self.store.save(record)
        with self._lock:
            self._results[record.sandbox_id] = results
        return record, results

    def _delete(self, record: SandboxRecord, attachments: Sequence[Attachment]) -> list[str]:
        errors = []
        for attachment in reversed(attachments):
            stdin = ipam_request(attachment)
            if stdin is None:
                continue
            last = ""
            for _ in range(self.del_attempts):
                try:
                    self._call("DEL", record, attachment, stdin)
                    last = ""
                    break
                except grpc.RpcError as exc:
                    last = f"DEL {attachment.ifname}: {rpc_message(exc)}"
                    time.sleep(0.2)
            if last:
                errors.append(last)
        return errors

    def delete(self, record: SandboxRecord) -> None:
        errors = self._delete(record, record.attachments)
        if errors:
            raise SandboxError("; ".join(errors))
        self.forget(record)

    def forget(self, record: SandboxRecord) -> None:
        with self._lock:
            self._results.pop(record.sandbox_id, None)
        self.store.remove(record.sandbox_id)

    def abandon(self, record: SandboxRecord) -> None:
        """The sandbox died without DEL: its record goes (the agent keeps the allocation until a GC)."""
        self.forget(record)

    def retire(self, record: SandboxRecord) -> SandboxRecord:
        retired = replace(record, retired=True)
        self.store.save(retired)
        return retired

    def results(self, record: SandboxRecord) -> Mapping[str, Mapping[str, Any]]:
        with self._lock:
            return dict(self._results.get(record.sandbox_id) or {})

    def gc(self, keep: Sequence[SandboxRecord]) -> list[str]:
        """Nothing to collect: there is no CNI cache; the kubelet's start DELs the records of gone pods."""
        del keep
        return []
