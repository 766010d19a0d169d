"""The kubelet stand-in, Multus inside: `python -m tests.simcluster.kubelet --node NAME ...`, one per node.

It runs inside its node (network and mount namespaces, see node_host.py), as a kubelet does, and does the
kubelet's networking part through the API:

- registers its Node (labels `kubernetes.io/hostname`, `kubernetes.io/os`, the given ones; Ready with the
  node's InternalIPs), then watches the Pods bound to it (`spec.nodeName=<node>`, an informer);
- for a new pod: resolves its attachments (multus.py: the cluster network from the first configuration file
  in `--cni-conf-dir`, as `/etc/cni/net.d`, then one delegate per `k8s.v1.cni.cncf.io/networks` entry from
  its NetworkAttachmentDefinition), creates the sandbox (sandbox.py: namespace, ADD in order, undo on
  failure), writes the `k8s.v1.cni.cncf.io/network-status` annotation (and `sim.spiderpool.io/sandbox` and
  `sim.spiderpool.io/netns`, the current sandbox's ID and network namespace, for tests), then the status
  (`podIPs`, `Running`, Ready: pod_status.py), again whenever the pod does not show its sandbox running
  (the kubelet died before writing it). A failure leaves the pod Pending with the error in its condition and
  a `FailedCreatePodSandBox` Event, and is retried with backoff (1 s doubling to 10 s, the first wait
  `--retry-initial-seconds`), as the kubelet retries sandbox creation;
- a pod deleted (gone from the watch: the test API server removes pods at once) or terminating: DEL in
  reverse, namespace removed;
- a pod with restartPolicy Never or OnFailure (a Job's) finishes after `sim.spiderpool.io/run-seconds`
  (default 2): the sandbox is torn down (DEL) and the pod marked `Succeeded`;
- test hook, the sandbox dying: annotate the pod `sim.spiderpool.io/kill-sandbox=MODE/NONCE` (any new value
  triggers once). MODE `del-first`: DEL of the old sandbox, then ADD of a new one (a new sandbox ID and
  namespace); `late-del`: ADD of the new one first, then the old one's DEL (a runtime's late cleanup);
  `no-del`: the old namespace removed without any DEL (the CNI cache keeps the old attachments, which the
  next start's GC deletes), then ADD of the new one;
- at start, before handling any event: sandboxes whose pod is gone (deleted while the kubelet was down) get
  their DEL, retired ones too, and ones it died making (not ready: the pod gets a new one), then CNI GC of
  the runtime's cache with the live sandboxes' attachments as the valid ones (libcni: a DEL for every other
  cached attachment, and GC for 1.1.0 configurations);
- stopping (SIGTERM) leaves every sandbox as it is (a kubelet restart does not tear pods down).

`--cni agent` (agent_ipam.py, for benchmarks at scale) replaces the sandboxes' kernel and plugin work by each
pod's IPAM ADD and DEL sent to the node agent's CNI gRPC service, as the shim would send them; everything else
(the informer, the records, the status and annotations written, retries) is the same.

At most `--max-parallel` sandboxes are created or deleted at once (threads: the CNI runtime blocks); events
of one pod are handled in order, pods in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeError, KubeRest
from spiderpool_tools.cni_runtime import CniRuntime, load_config

from . import multus, pod_status
from .agent_ipam import DEFAULT_AGENT_SOCKET, AgentIpamRunner
from .sandbox import SandboxError, SandboxRecord, SandboxRunner, SandboxStore

log = logging.getLogger("kubelet")

KILL_SANDBOX = "sim.spiderpool.io/kill-sandbox"
SANDBOX_ID = "sim.spiderpool.io/sandbox"
SANDBOX_NETNS = "sim.spiderpool.io/netns"
RUN_SECONDS = "sim.spiderpool.io/run-seconds"
KILL_MODES = ("del-first", "late-del", "no-del")
CONF_SUFFIXES = (".conflist", ".conf", ".json")
CNI_EXEC, CNI_AGENT = "exec", "agent"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KubeletConfig:
    node: str
    kubeconfig: str
    cni_conf_dir: Path
    cni_bin_dirs: tuple[str, ...]
    cni_cache_dir: Path
    state_dir: Path
    netns_prefix: str
    host_ips: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    max_parallel: int = 8
    default_run_seconds: float = 2.0
    ready_file: Path | None = None  # written once the start-up GC is done and events are handled
    cni: str = (
        CNI_EXEC  # exec: sandboxes with the CNI chain (sandbox.py); agent: IPAM calls only (agent_ipam.py)
    )
    agent_socket: str = DEFAULT_AGENT_SOCKET
    retry_initial_s: float = 1.0  # a failed sandbox is retried after this, doubling up to 10 s


def cluster_network(conf_dir: Path) -> dict[str, Any]:
    """The first network configuration file of the directory, as the kubelet (and Multus) pick it."""
    files = sorted(p for p in conf_dir.iterdir() if p.suffix in CONF_SUFFIXES) if conf_dir.is_dir() else []
    if not files:
        raise multus.MultusError(f"no network configuration in {conf_dir}")
    return dict(load_config(files[0].read_text()).raw)


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def reported(pod: Mapping[str, Any], record: SandboxRecord) -> bool:
    """The pod shows its current sandbox as running (not so when the kubelet died between the ADDs and
    the status write: the restarted kubelet owes it)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(SANDBOX_ID) == record.sandbox_id
        and (pod.get("status") or {}).get("phase") == "Running"
    )


def finishes(pod: Mapping[str, Any]) -> bool:
    return (pod.get("spec") or {}).get("restartPolicy", "Always") in ("Never", "OnFailure")


class Kubelet:
    def __init__(self, config: KubeletConfig, rest: KubeRest) -> None:
        self.config = config
        self.rest = rest
        self.store = SandboxStore(config.state_dir / "sandboxes")
        self.runner: SandboxRunner | AgentIpamRunner
        if config.cni == CNI_AGENT:
            self.runner = AgentIpamRunner(
                self.store, socket_path=config.agent_socket, cni_path=config.cni_bin_dirs
            )
        else:
            runtime = CniRuntime(config.cni_bin_dirs, config.cni_cache_dir)
            self.runner = SandboxRunner(runtime, self.store, config.netns_prefix)
        self.pods: dict[str, dict[str, Any]] = {}  # uid -> latest object
        self._dirty: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._parallel = asyncio.Semaphore(config.max_parallel)
        self._failures: dict[str, int] = {}
        self._status_owed: set[str] = set()
        # uid -> the sandbox whose Running status this kubelet wrote: its own annotation write comes back as
        # an event before its status write does, and is no reason to report again (the real kubelet's status
        # manager likewise compares with what it wrote). Empty after a restart: then the pod itself says.
        self._reported: dict[str, str] = {}
        self._started = asyncio.Event()
        self.informer = Informer(
            rest, "/api/v1/pods", field_selector=f"spec.nodeName={config.node}", handler=self._on_event
        )

    # --- events -------------------------------------------------------------------------------------------

    def _on_event(self, kind: str, pod: dict[str, Any]) -> None:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        if not uid:
            return
        if kind == "DELETED":
            self.pods.pop(uid, None)
            self._reported.pop(uid, None)
        else:
            self.pods[uid] = pod
        self.kick(uid)

    def kick(self, uid: str) -> None:
        """Reconcile ``uid`` soon; events of one pod are handled in order, one at a time."""
        self._dirty.add(uid)
        if self._started.is_set() and uid not in self._workers:
            self._workers[uid] = asyncio.create_task(self._work(uid), name=f"pod {uid}")

    def kick_later(self, uid: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.kick, uid)

    async def _work(self, uid: str) -> None:
        try:
            while uid in self._dirty:
                self._dirty.discard(uid)
                try:
                    await self.reconcile(uid)
                except Exception:
                    log.exception("reconcile of %s failed", uid)
                    self.kick_later(uid, 1.0)
        finally:
            self._workers.pop(uid, None)

    # --- the pod's life -----------------------------------------------------------------------------------

    async def reconcile(self, uid: str) -> None:
        pod = self.pods.get(uid)
        record = self.store.current(uid)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            for stale in self.store.of_pod(uid):
                await self.teardown(stale)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            if record is not None:
                await self.teardown(record)
            return
        kill = str(((pod.get("metadata") or {}).get("annotations") or {}).get(KILL_SANDBOX, ""))
        if record is None:
            await self.create(pod, kill)  # no sandbox: there is nothing for a kill annotation to kill
            return
        if kill and kill != record.kill_handled:
            await self.recreate(pod, record, kill)
            return
        if uid in self._status_owed or (
            self._reported.get(uid) != record.sandbox_id and not reported(pod, record)
        ):
            await self.report_running(pod, record, None)
            return
        if finishes(pod):
            await self.maybe_finish(pod, record)

    async def create(self, pod: dict[str, Any], kill_handled: str = "") -> SandboxRecord | None:
        meta = pod["metadata"]
        uid = meta["uid"]
        try:
            attachments = await self.plan(pod)
            async with self._parallel:
                record, results = await asyncio.to_thread(
                    self.runner.create, uid, meta["namespace"], meta["name"], attachments, kill_handled
                )
        except (multus.MultusError, SandboxError, KubeError) as exc:
            await self.report_failure(pod, str(exc))
            return None
        self._failures.pop(uid, None)
        log.info("sandbox %s of %s/%s created", record.sandbox_id[:12], meta["namespace"], meta["name"])
        await self.report_running(pod, record, results)
        if finishes(pod):
            self.kick_later(uid, self.run_seconds(pod) + 0.05)
        return record

    async def plan(self, pod: dict[str, Any]) -> list[Any]:
        override, extra = multus.requested_networks(pod)
        nads = {}
        for selection in [s for s in (override, *extra) if s is not None]:
            try:
                nads[selection.key] = await self.rest.get(
                    multus.nad_path(selection.namespace, selection.name)
                )
            except KubeError as exc:
                if not exc.not_found:
                    raise
        return multus.plan_attachments(pod, cluster_network(self.config.cni_conf_dir), nads)

    async def teardown(self, record: SandboxRecord) -> None:
        try:
            async with self._parallel:
                await asyncio.to_thread(self.runner.delete, record)
        except SandboxError as exc:
            log.warning("DEL of sandbox %s failed, retrying: %s", record.sandbox_id[:12], exc)
            self.kick_later(record.uid, 2.0)
            return
        log.info("sandbox %s of %s/%s deleted", record.sandbox_id[:12], record.namespace, record.name)

    async def recreate(self, pod: dict[str, Any], old: SandboxRecord, kill: str) -> None:
        mode = kill.split("/", 1)[0]
        if mode not in KILL_MODES:
            log.warning("%s=%r: the mode is not one of %s; ignored", KILL_SANDBOX, kill, KILL_MODES)
            self.store.save(replace(old, kill_handled=kill))
            return
        log.info("killing sandbox %s of %s (%s)", old.sandbox_id[:12], pod["metadata"]["name"], mode)
        if mode == "del-first":
            await self.teardown(old)
            await self.create(pod, kill)
            return
        if mode == "no-del":
            # The sandbox died: gone before its successor exists (no DEL; the CNI cache keeps its
            # attachments for GC). Abandoning it after the new one was reported let a kubelet stopped in
            # between find it still recorded at its restart and DEL it as well as GC it.
            await asyncio.to_thread(self.runner.abandon, old)
            await self.create(pod, kill)
            return
        retired = self.runner.retire(old)
        if await self.create(pod, kill) is None:
            self.store.save(
                replace(retired, retired=False)
            )  # the old sandbox stays the pod's until one works
            return
        await self.teardown(retired)  # late-del

    def run_seconds(self, pod: Mapping[str, Any]) -> float:
        value = ((pod.get("metadata") or {}).get("annotations") or {}).get(RUN_SECONDS)
        try:
            return float(value) if value is not None else self.config.default_run_seconds
        except ValueError:
            return self.config.default_run_seconds

    async def maybe_finish(self, pod: dict[str, Any], record: SandboxRecord) -> None:
        left = record.created + self.run_seconds(pod) - time.time()
        if left > 0:
            self.kick_later(record.uid, left + 0.05)
            return
        await self.teardown(record)
        meta = pod["metadata"]
        with contextlib.suppress(KubeError):
            await self.rest.merge_patch(
                pod_path(meta["namespace"], meta["name"]) + "/status",
                {"status": pod_status.succeeded(pod, now())},
            )

    # --- reporting ----------------------------------------------------------------------------------------

    async def report_running(
        self, pod: dict[str, Any], record: SandboxRecord, results: Mapping[str, Any] | None
    ) -> None:
        meta = pod["metadata"]
        path = pod_path(meta["namespace"], meta["name"])
        if results is None:
            results = self.runner.results(record)
        statuses = [
            multus.AttachmentStatus(a.network, a.ifname, results.get(a.ifname) or {}, a.default)
            for a in record.attachments
        ]
        default = next((a.ifname for a in record.attachments if a.default), multus.FIRST_IFNAME)
        ips = pod_status.pod_ips(results.get(default) or {})
        try:
            await self.rest.merge_patch(
                path,
                {
                    "metadata": {
                        "annotations": {
                            multus.NETWORK_STATUS: multus.network_status(statuses),
                            SANDBOX_ID: record.sandbox_id,
                            SANDBOX_NETNS: record.netns,
                        }
                    }
                },
            )
            await self.rest.merge_patch(
                path + "/status",
                {"status": pod_status.running(pod, ips, self.config.host_ips, record.sandbox_id, now())},
            )
        except KubeError as exc:
            if exc.not_found:
                return  # deleted meanwhile: its DELETED event tears the sandbox down
            log.warning("status of %s/%s not written, retrying: %s", meta["namespace"], meta["name"], exc)
            self._status_owed.add(meta["uid"])
            self.kick_later(meta["uid"], 1.0)
            return
        self._status_owed.discard(meta["uid"])
        self._reported[meta["uid"]] = record.sandbox_id

    async def report_failure(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        failures = self._failures[uid] = self._failures.get(uid, 0) + 1
        delay = min(10.0, self.config.retry_initial_s * 2.0 ** (failures - 1))
        log.warning(
            "sandbox of %s/%s failed (retry in %.0fs): %s", meta["namespace"], meta["name"], delay, message
        )
        text = f"Failed to create pod sandbox: {message}"[:1000]
        with contextlib.suppress(KubeError):
            await self.rest.merge_patch(
                pod_path(meta["namespace"], meta["name"]) + "/status",
                {"status": pod_status.pending(pod, self.config.host_ips, text, now())},
            )
            await self.rest.create(
                f"/api/v1/namespaces/{meta['namespace']}/events",
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                    "involvedObject": {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": uid,
                    },
                    "reason": "FailedCreatePodSandBox",
                    "message": text,
                    "type": "Warning",
                    "source": {"component": "kubelet", "host": self.config.node},
                    "firstTimestamp": now(),
                    "lastTimestamp": now(),
                    "count": failures,
                },
            )
        self.kick_later(uid, delay)

    # --- node ---------------------------------------------------------------------------------------------

    async def register_node(self) -> None:
        name = self.config.node
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.config.labels,
        }
        try:
            await self.rest.create(
                "/api/v1/nodes",
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}},
            )
        except KubeError as exc:
            if not exc.conflict:
                raise
            await self.rest.merge_patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": labels}})
        addresses = [{"type": "InternalIP", "address": ip} for ip in self.config.host_ips]
        addresses.append({"type": "Hostname", "address": name})
        stamp = now()
        await self.rest.merge_patch(
            f"/api/v1/nodes/{name}/status",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet is posting ready status (simulated)",
                            "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp,
                        }
                    ],
                    "addresses": addresses,
                    "nodeInfo": {
                        "kubeletVersion": "v1.37.1-sim",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                }
            },
        )

    # --- start --------------------------------------------------------------------------------------------

    async def gc_at_start(self) -> None:
        """DEL of sandboxes whose pod is gone, retired ones and ones never finished (the kubelet died mid-ADD:
        their pods get a new sandbox), then CNI GC with the live ones as valid."""
        live = []
        for record in self.store.all():
            pod = self.pods.get(record.uid)
            if pod is not None and not record.retired and not record.ready:
                log.info(
                    "start: sandbox %s of %s/%s was never finished",
                    record.sandbox_id[:12],
                    record.namespace,
                    record.name,
                )
                await self.teardown(record)
            elif pod is None or record.retired:
                log.info(
                    "start: sandbox %s of a gone pod %s/%s",
                    record.sandbox_id[:12],
                    record.namespace,
                    record.name,
                )
                await self.teardown(record)
            else:
                live.append(record)
        errors = await asyncio.to_thread(self.runner.gc, live)
        for error in errors:
            log.warning("start: CNI GC: %s", error)

    async def run(self) -> None:
        await self.register_node()
        informer_task = asyncio.create_task(self.informer.run(), name="pods")
        try:
            await self.informer.synced.wait()
            await self.gc_at_start()
            self._started.set()
            if self.config.ready_file is not None:
                self.config.ready_file.parent.mkdir(parents=True, exist_ok=True)
                self.config.ready_file.write_text(str(os.getpid()))
            log.info("kubelet %s ready: %d pods bound", self.config.node, len(self.pods))
            for uid in list(self._dirty | set(self.pods)):
                self.kick(uid)
            await asyncio.Event().wait()
        finally:
            informer_task.cancel()
            workers = list(self._workers.values())
            for task in workers:
                task.cancel()
            for task in [informer_task, *workers]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.runner.close()


def parse_labels(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"label {item!r} is not k=v")
        out[key] = value
    return out


def parse_args(argv: Sequence[str] | None) -> KubeletConfig:
    p = argparse.ArgumentParser(
        prog="python -m tests.simcluster.kubelet", description=__doc__.splitlines()[0]
    )
    p.add_argument("--node", required=True)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--cni-conf-dir", type=Path, required=True)
    p.add_argument("--cni-bin-dir", action="append", required=True, help="repeatable: CNI_PATH entries")
    p.add_argument("--cni-cache-dir", type=Path, default=Path("/var/lib/cni"))
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/kubelet"))
    p.add_argument("--netns-prefix", required=True, help="pod namespaces are named PREFIX-<pid>-<n>")
    p.add_argument("--host-ip", action="append", default=[], help="the node's InternalIPs (repeatable)")
    p.add_argument("--labels", default="", help="extra Node labels, k=v,k2=v2")
    p.add_argument("--max-parallel", type=int, default=8)
    p.add_argument("--default-run-seconds", type=float, default=2.0)
    p.add_argument("--ready-file", type=Path, help="written once the kubelet handles events")
    p.add_argument(
        "--cni",
        choices=(CNI_EXEC, CNI_AGENT),
        default=CNI_EXEC,
        help="exec: each sandbox a namespace with the CNI chain executed (default); agent: only each pod's "
        "IPAM ADD/DEL, sent to the agent's CNI gRPC service (no namespace, no plugin processes)",
    )
    p.add_argument("--agent-socket", default=DEFAULT_AGENT_SOCKET, help="the agent's socket (--cni agent)")
    p.add_argument(
        "--retry-initial-seconds",
        type=float,
        default=1.0,
        help="first wait before a failed sandbox is tried again (doubling up to 10 s; default 1)",
    )
    a = p.parse_args(argv)
    return KubeletConfig(
        node=a.node,
        kubeconfig=a.kubeconfig,
        cni_conf_dir=a.cni_conf_dir,
        cni_bin_dirs=tuple(a.cni_bin_dir),
        cni_cache_dir=a.cni_cache_dir,
        state_dir=a.state_dir,
        netns_prefix=a.netns_prefix,
        host_ips=tuple(a.host_ip),
        labels=parse_labels(a.labels),
        max_parallel=a.max_parallel,
        default_run_seconds=a.default_run_seconds,
        ready_file=a.ready_file,
        cni=a.cni,
        agent_socket=a.agent_socket,
        retry_initial_s=a.retry_initial_seconds,
    )


async def amain(config: KubeletConfig) -> None:
    client = await api_client(config.kubeconfig, agent=f"kubelet/sim ({config.node})")
    kubelet = Kubelet(config, KubeRest(client))
    task = asyncio.create_task(kubelet.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("kubelet %s stopping (sandboxes are left as they are)", config.node)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    asyncio.run(amain(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
