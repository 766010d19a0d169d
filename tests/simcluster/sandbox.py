"""Pod sandboxes of the kubelet stand-in: the network namespace, the CNI attachments, and their records on
disk.

Owns the blocking work of one sandbox (run in a thread by the kubelet) and what survives a kubelet restart:

- A sandbox is a fresh network namespace, a sandbox (infra container) ID of 64 hex digits as container
  runtimes make them, and the pod's attachments in order (eth0 from the cluster network, then the Multus
  delegates).
- The record is written before the first ADD (`<state>/sandboxes/<sandbox id>.json`, atomically), holding
  every attachment's network configuration, CNI_ARGS and capability args, as Multus keeps its delegates per
  container: DEL then works the same after the pod, a NetworkAttachmentDefinition or the kubelet itself is
  gone.
- ADD runs the attachments in order; if one fails, DEL runs for every attachment tried so far, in reverse
  (including the failing one: Debian's macvlan leaves its link behind on an IPAM failure), the namespace is
  removed and the record dropped, so a failed sandbox leaves nothing (Multus' and the kubelet's rule).
- DEL runs in reverse order; a failing DEL is retried (`attempts`) and then reported, keeping the record so
  that the kubelet's next pass (or its GC at start) tries again.
- `retire` marks a sandbox replaced by a newer one of the same pod (sandbox re-creation) without running DEL
  yet.
- A record is marked `ready` once every ADD succeeded; one left not ready is a sandbox whose kubelet died
  mid-ADD, which the kubelet tears down at its next start and makes anew (a runtime's NOTREADY sandbox).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spiderpool_tools.cni_runtime import CniRuntime, CniRuntimeError, RuntimeConf, load_config
from spiderpool_tools.netns import NetNs, NetnsError


@dataclass(frozen=True)
class Attachment:
    """One NIC of the pod: where it comes from and exactly how its plugins are called."""

    network: str  # the network-status name: the cluster network's name, or namespace/nad
    ifname: str
    config: Mapping[str, Any]  # the conflist (or single plugin config) as given to the runtime
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    config_args: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False


@dataclass(frozen=True)
class SandboxRecord:
    uid: str
    namespace: str
    name: str
    sandbox_id: str
    netns: str  # the namespace's name under /run/netns
    attachments: tuple[Attachment, ...]
    created: float
    kill_handled: str = ""  # the kill-sandbox annotation value this sandbox answered
    retired: bool = False  # replaced by a newer sandbox; its DEL is still owed
    ready: bool = False  # every ADD succeeded (a record left not ready: the kubelet died mid-ADD)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def cni_args(self) -> tuple[tuple[str, str], ...]:
        return (
            ("IgnoreUnknown", "true"),
            ("K8S_POD_NAMESPACE", self.namespace),
            ("K8S_POD_NAME", self.name),
            ("K8S_POD_INFRA_CONTAINER_ID", self.sandbox_id),
            ("K8S_POD_UID", self.uid),
        )

    def runtime_conf(self, attachment: Attachment) -> RuntimeConf:
        return RuntimeConf(
            self.sandbox_id,
            attachment.ifname,
            self.netns_path,
            self.cni_args(),
            dict(attachment.capability_args),
            dict(attachment.config_args),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SandboxRecord:
        raw = json.loads(text)
        raw["attachments"] = tuple(Attachment(**a) for a in raw["attachments"])
        return cls(**raw)


def new_sandbox_id() -> str:
    return secrets.token_hex(32)


class SandboxStore:
    """The sandbox records of one node: one JSON file per sandbox, written atomically, read once at start and
    kept in memory (a kubelet with a thousand pods must not re-read them per event)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, SandboxRecord] = {}
        self._lock = threading.Lock()  # saved from the runner's threads, read from the kubelet's loop
        for path in sorted(directory.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                record = SandboxRecord.from_json(path.read_text())
                self._records[record.sandbox_id] = record

    def _path(self, sandbox_id: str) -> Path:
        return self.directory / f"{sandbox_id}.json"

    def save(self, record: SandboxRecord) -> None:
        tmp = self._path(record.sandbox_id).with_suffix(".tmp")
        tmp.write_text(record.to_json())
        os.replace(tmp, self._path(record.sandbox_id))
        with self._lock:
            self._records[record.sandbox_id] = record

    def remove(self, sandbox_id: str) -> None:
        self._path(sandbox_id).unlink(missing_ok=True)
        with self._lock:
            self._records.pop(sandbox_id, None)

    def all(self) -> list[SandboxRecord]:
        with self._lock:
            records = list(self._records.values())
        return sorted(records, key=lambda r: r.created)

    def of_pod(self, uid: str) -> list[SandboxRecord]:
        return [r for r in self.all() if r.uid == uid]

    def current(self, uid: str) -> SandboxRecord | None:
        """The pod's newest sandbox that is not retired."""
        live = [r for r in self.of_pod(uid) if not r.retired]
        return live[-1] if live else None


class SandboxError(RuntimeError):
    """A sandbox could not be created (everything it made was undone) or fully deleted."""


class SandboxRunner:
    """Creates and deletes sandboxes with the CNI runtime; blocking (the kubelet calls it from threads)."""

    def __init__(
        self, runtime: CniRuntime, store: SandboxStore, netns_prefix: str, del_attempts: int = 3
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.netns_prefix = netns_prefix
        self.del_attempts = del_attempts

    def create(
        self, uid: str, namespace: str, name: str, attachments: Sequence[Attachment], kill_handled: str = ""
    ) -> tuple[SandboxRecord, dict[str, dict[str, Any]]]:
        """A new sandbox with every attachment added; returns its record and the ADD results by ifname."""
        ns = NetNs.create(self.netns_prefix)
        record = SandboxRecord(
            uid, namespace, name, new_sandbox_id(), ns.name, tuple(attachments), time.time(), kill_handled
        )
        tried: list[Attachment] = []
        try:
            with ns.entered():  # /proc/sys/net is the calling thread's namespace's: no process per sysctl
                for scope in ("all", "default"):
                    Path(f"/proc/sys/net/ipv6/conf/{scope}/accept_dad").write_text("0")
            self.store.save(record)
            results = {}
            for attachment in attachments:
                tried.append(attachment)
                results[attachment.ifname] = self.runtime.add(
                    load_config(attachment.config), record.runtime_conf(attachment)
                )
            record = replace(record, ready=True)
            self.store.save(record)
        except (CniRuntimeError, NetnsError, OSError) as exc:
            errors = self._delete(record, tried)
            ns.delete()
            self.store.remove(record.sandbox_id)
            undo = f" (and undoing it: {'; '.join(errors)})" if errors else ""
            raise SandboxError(f"{exc}{undo}") from exc
        return record, results

    def _delete(self, record: SandboxRecord, attachments: Sequence[Attachment]) -> list[str]:
        errors = []
        for attachment in reversed(attachments):
            last = ""
            for _ in range(self.del_attempts):
                try:
                    self.runtime.delete(load_config(attachment.config), record.runtime_conf(attachment))
                    last = ""
                    break
                except CniRuntimeError as exc:
                    last = f"DEL {attachment.ifname}: {exc}"
                    time.sleep(0.2)
            if last:
                errors.append(last)
        return errors

    def delete(self, record: SandboxRecord) -> None:
        """DEL every attachment in reverse, then remove the namespace and the record."""
        errors = self._delete(record, record.attachments)
        if errors:
            raise SandboxError("; ".join(errors))
        NetNs(record.netns).delete()
        self.store.remove(record.sandbox_id)

    def abandon(self, record: SandboxRecord) -> None:
        """The sandbox died without DEL: its namespace goes, the CNI cache keeps its attachments (for GC)."""
        NetNs(record.netns).delete()
        self.store.remove(record.sandbox_id)

    def retire(self, record: SandboxRecord) -> SandboxRecord:
        retired = replace(record, retired=True)
        self.store.save(retired)
        return retired

    def results(self, record: SandboxRecord) -> Mapping[str, Mapping[str, Any]]:
        """Each attachment's ADD result, as the runtime's cache holds it (empty when it holds none)."""
        cached = self.runtime.cached_result
        return {
            a.ifname: cached(str(a.config.get("name", "")), record.sandbox_id, a.ifname) or {}
            for a in record.attachments
        }

    def close(self) -> None:
        """Nothing to release: every plugin call is its own process."""

    def gc(self, keep: Sequence[SandboxRecord]) -> list[str]:
        """CNI GC of the runtime's cache: each cached attachment not of ``keep`` gets its DEL (as libcni)."""
        valid = [(r.sandbox_id, a.ifname) for r in keep for a in r.attachments]
        errors = []
        for network, config in self._cached_networks().items():
            try:
                self.runtime.gc(load_config(config), valid)
            except CniRuntimeError as exc:
                errors.append(f"GC {network}: {exc}")
        return errors

    def _cached_networks(self) -> dict[str, dict[str, Any]]:
        """Each cached network's configuration, as the cache recorded it (libcni GCs from its cache)."""
        found: dict[str, dict[str, Any]] = {}
        for cached in self.runtime.cached_attachments():
            if cached.network in found or cached.network_config is None:
                continue
            found[cached.network] = cached.network_config
        return found


def records_by_uid(records: Sequence[SandboxRecord]) -> Iterator[tuple[str, list[SandboxRecord]]]:
    by: dict[str, list[SandboxRecord]] = {}
    for record in records:
        by.setdefault(record.uid, []).append(record)
    yield from by.items()
