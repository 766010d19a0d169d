"""The simulated cluster's stand-ins on their own: scheduler, workload controllers, kubelet (with Multus).

One plain cluster for the module (`SimOptions(spiderpool=False)`: no controllers or agents; the cluster
network is Debian's macvlan + host-local in each node's own subnet + the sim-recorder plugin), so every
behaviour here is the harness's, independent of the project's IPAM. Each test works in its own Kubernetes
namespace; the recorder's log (`cluster.cni_calls()`) shows what the kubelet ran, with which identifiers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from spiderpool_tools.netns import NetNs

from tests.simcluster.cluster import SimCluster, SimOptions
from tests.simcluster.kubelet import SANDBOX_ID

pytestmark = pytest.mark.netns

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(SimOptions(spiderpool=False)) as sim:
        yield sim


@pytest.fixture
def ns(cluster: SimCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name.replace("_", "-")[:50].strip("-").lower()
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", ok=False)


def pod(name: str, ns: str, annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "c", "image": "pause"}], **spec},
    }


def nad(
    name: str, ns: str, master: str, start: int, *, tag: str, record: str, capabilities: bool = False
) -> Obj:
    caps = {"capabilities": {"ips": True, "mac": True}} if capabilities else {}
    config = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "macvlan",
                "master": master,
                "mode": "bridge",
                **caps,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "172.31.0.0/24", "rangeStart": f"172.31.0.{start}",
                                 "rangeEnd": f"172.31.0.{start + 20}"}]],
                },
            },
            {"type": "sim-recorder", "record": record, "tag": tag, **caps},
        ],
    }  # fmt: skip
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"config": json.dumps(config)},
    }


def calls_of(cluster: SimCluster, sandbox: str) -> list[tuple[str, str]]:
    """(verb, ifname) of the recorder's calls for one sandbox, in order."""
    return [
        (c["command"], c["env"]["CNI_IFNAME"])
        for c in cluster.cni_calls()
        if c["env"]["CNI_CONTAINERID"] == sandbox
    ]


def node_of(cluster: SimCluster, ns: str, name: str) -> str:
    return str(cluster.running_pod(ns, name)["spec"]["nodeName"])


def test_pods_are_placed_by_node_selection_and_run_with_their_nodes_addresses(
    cluster: SimCluster, ns: str
) -> None:
    """nodeSelector and required node affinity choose the node; the pod runs with an eth0 address from that
    node's subnet, its hostIP and network-status; a pod no node fits stays Pending, Unschedulable."""
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node3"]}]}
    by_host: dict[str, Any] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    }
    cluster.apply(
        [
            pod("on-rack2", ns, nodeSelector={"spiderpool.test/rack": "rack2"}),
            pod("on-node3", ns, affinity=by_host),
            pod("nowhere", ns, nodeSelector={"spiderpool.test/rack": "rack9"}),
        ]
    )
    for name, node, index in (("on-rack2", "node2", 2), ("on-node3", "node3", 3)):
        running = cluster.running_pod(ns, name)
        assert running["spec"]["nodeName"] == node
        (ip,) = [entry["ip"] for entry in running["status"]["podIPs"]]
        assert ip.startswith(f"172.32.{index}.")
        assert running["status"]["hostIP"] == cluster.nodes[node].spec.host_ips[0]
        (status,) = cluster.network_status(running)
        assert (status["name"], status["interface"], status["ips"], status["default"]) == (
            "macvlan-eth0",
            "eth0",
            [ip],
            True,
        )
        assert {a.ip for a in cluster.pod_netns(running).addresses("eth0") if a.scope == "global"} == {ip}
    wide = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout
    assert any(
        line.split()[:3] == ["on-node3", "1/1", "Running"] and "node3" in line for line in wide.splitlines()
    )

    def unschedulable() -> bool:
        conditions = ((cluster.api.pod(ns, "nowhere") or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    cluster.wait(unschedulable, "the unplaceable pod to be marked Unschedulable")
    assert not (cluster.api.pod(ns, "nowhere") or {})["spec"].get("nodeName")


def test_multus_delegates_get_interfaces_cni_args_and_runtime_config_and_del_in_reverse(
    cluster: SimCluster, ns: str
) -> None:
    """Each networks entry is a delegate with Multus' CNI_ARGS, net1 or its own name, the element's ips/mac as
    runtimeConfig; network-status lists all three; deleting the pod runs DEL in reverse and frees the
    leases."""
    record = str(cluster.cni_record)
    cluster.apply(
        [
            nad("net-a", ns, "master1", 100, tag="net-a", record=record, capabilities=True),
            nad("net-b", ns, "master1", 130, tag="net-b", record=record),
        ]
    )
    networks = [{"name": "net-a", "ips": ["172.31.0.115/24"], "mac": "02:11:22:33:44:55"},
                {"name": "net-b", "interface": "fast"}]  # fmt: skip
    annotations = {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
    cluster.apply([pod("multi", ns, annotations, nodeSelector={"kubernetes.io/hostname": "node1"})])
    running = cluster.running_pod(ns, "multi")
    sandbox, uid = running["metadata"]["annotations"][SANDBOX_ID], running["metadata"]["uid"]
    assert calls_of(cluster, sandbox) == [("ADD", "eth0"), ("ADD", "net1"), ("ADD", "fast")]
    adds = [c for c in cluster.cni_calls() if c["env"]["CNI_CONTAINERID"] == sandbox]
    expected_args = (f"IgnoreUnknown=true;K8S_POD_NAMESPACE={ns};K8S_POD_NAME=multi;"
                     f"K8S_POD_INFRA_CONTAINER_ID={sandbox};K8S_POD_UID={uid}")  # fmt: skip
    assert {c["env"]["CNI_ARGS"] for c in adds} == {expected_args}
    assert adds[1]["runtimeConfig"] == {"ips": ["172.31.0.115/24"], "mac": "02:11:22:33:44:55"}
    statuses = cluster.network_status(running)
    assert [(s["name"], s["interface"]) for s in statuses] == [
        ("macvlan-eth0", "eth0"),
        (f"{ns}/net-a", "net1"),
        (f"{ns}/net-b", "fast"),
    ]
    netns = cluster.pod_netns(running)
    assert {a.ip for a in netns.addresses("net1") if a.scope == "global"} == {"172.31.0.115"}
    assert netns.mac("net1") == "02:11:22:33:44:55"
    assert statuses[1]["mac"] == "02:11:22:33:44:55" and statuses[1]["ips"] == ["172.31.0.115"]
    fast_ip = statuses[2]["ips"][0]
    leases = cluster.nodes["node1"].host.outside("/var/lib/cni/networks")
    assert (leases / "net-a" / "172.31.0.115").exists() and (leases / "net-b" / fast_ip).exists()

    cluster.kubectl("delete", "pod", "-n", ns, "multi")
    cluster.wait(lambda: len(calls_of(cluster, sandbox)) == 6, "the pod's three DELs")
    assert calls_of(cluster, sandbox)[3:] == [("DEL", "fast"), ("DEL", "net1"), ("DEL", "eth0")]
    cluster.wait(lambda: not netns.exists(), "the pod's namespace to go")
    assert not (leases / "net-a" / "172.31.0.115").exists() and not (leases / "net-b" / fast_ip).exists()


def test_a_failing_sandbox_is_undone_reported_and_retried_until_it_works(
    cluster: SimCluster, ns: str
) -> None:
    """A delegate that fails makes the kubelet DEL what it added and drop the namespace, leave the pod Pending
    with the error and a FailedCreatePodSandBox event; once the NAD is fixed the retry runs the pod."""
    record = str(cluster.cni_record)
    broken = nad("flaky", ns, "no-such-master", 160, tag="flaky", record=record)
    cluster.apply([broken, pod("retry", ns, {"k8s.v1.cni.cncf.io/networks": "flaky"})])

    def failed() -> str:
        conditions = ((cluster.api.pod(ns, "retry") or {}).get("status") or {}).get("conditions") or []
        return next(
            (c.get("message", "") for c in conditions if c["type"] == "PodReadyToStartContainers"), ""
        )

    message = cluster.wait(failed, "the sandbox failure to be reported")
    assert message.startswith("Failed to create pod sandbox: plugin macvlan failed: code 999: Link not found")
    events = cluster.api.items(f"/api/v1/namespaces/{ns}/events")
    assert any(
        e["reason"] == "FailedCreatePodSandBox" and e["involvedObject"]["name"] == "retry" for e in events
    )
    attempts = [
        c
        for c in cluster.cni_calls()
        if f"K8S_POD_NAMESPACE={ns};K8S_POD_NAME=retry;" in c["env"]["CNI_ARGS"]
    ]
    first = attempts[0]["env"]["CNI_CONTAINERID"]
    calls = calls_of(cluster, first)  # net1's macvlan failed: its DEL was tried, then eth0's ran
    assert (calls[0], calls[-1]) == (("ADD", "eth0"), ("DEL", "eth0")) and ("DEL", "net1") in calls
    pending = cluster.api.pod(ns, "retry") or {}
    assert SANDBOX_ID not in (pending["metadata"].get("annotations") or {})
    assert not NetNs(attempts[0]["env"]["CNI_NETNS"].rsplit("/", 1)[1]).exists()
    (eth0_ip,) = [ip.split("/")[0] for ip in attempts[0]["ips"]]
    leases = cluster.nodes[pending["spec"]["nodeName"]].host.outside("/var/lib/cni/networks/macvlan-eth0")
    assert not (leases / eth0_ip).exists()

    cluster.apply([nad("flaky", ns, "master1", 160, tag="flaky", record=record)])
    running = cluster.running_pod(ns, "retry", deadline_s=30)
    assert [s["interface"] for s in cluster.network_status(running)] == ["eth0", "net1"]


@pytest.mark.parametrize(
    ("mode", "order"),
    [
        ("late-del", ["ADD new", "DEL old"]),
        ("del-first", ["DEL old", "ADD new"]),
    ],
)
def test_a_killed_sandbox_is_replaced_with_a_new_container_id(
    cluster: SimCluster, ns: str, mode: str, order: list[str]
) -> None:
    """The kill hook gives the pod a new sandbox ID and namespace; late-del runs the old DEL after the new
    ADD, del-first before it."""
    cluster.apply([pod("victim", ns)])
    old = cluster.sandbox_id(cluster.running_pod(ns, "victim"))
    new = cluster.kill_sandbox(ns, "victim", mode)
    assert new != old and len(new) == 64
    cluster.wait(lambda: ("DEL", "eth0") in calls_of(cluster, old), "the old sandbox's DEL")
    seen = [
        f"{c['command']} {'old' if c['env']['CNI_CONTAINERID'] == old else 'new'}"
        for c in cluster.cni_calls()
        if c["env"]["CNI_CONTAINERID"] in (old, new)
    ]
    assert seen[0] == "ADD old"
    assert [s for s in seen if s in order] == order


def test_a_sandbox_killed_without_del_is_collected_by_the_kubelets_gc_at_restart(
    cluster: SimCluster, ns: str
) -> None:
    """no-del leaves the old attachment in the CNI cache; the restarted kubelet's GC DELs it, nothing else."""
    cluster.apply([pod("orphan", ns, nodeSelector={"kubernetes.io/hostname": "node2"})])
    old = cluster.sandbox_id(cluster.running_pod(ns, "orphan"))
    new = cluster.kill_sandbox(ns, "orphan", "no-del")
    assert calls_of(cluster, old) == [("ADD", "eth0")]
    cluster.restart(cluster.nodes["node2"].kubelet)
    assert calls_of(cluster, old) == [("ADD", "eth0"), ("DEL", "eth0")]
    assert calls_of(cluster, new) == [("ADD", "eth0")]
    assert cluster.sandbox_id(cluster.running_pod(ns, "orphan")) == new


def test_a_sandbox_the_kubelet_died_making_is_torn_down_and_made_anew_at_its_restart(
    cluster: SimCluster, ns: str
) -> None:
    """SIGKILL of the kubelet in the middle of a pod's ADDs leaves a sandbox that was never finished; the
    restarted kubelet DELs it and gives the pod a new one (it stayed Pending for good before: the cluster
    chaos storm's restart found it)."""
    config = {
        "cniVersion": "1.0.0",
        "name": "hang",
        "plugins": [{"type": "sim-recorder", "record": str(cluster.cni_record), "tag": "hang",
                     "hangOnce": str(cluster.paths.root / f"hang-{ns}")}],
    }  # fmt: skip
    hang = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "hang", "namespace": ns},
        "spec": {"config": json.dumps(config)},
    }
    on_node3 = {"nodeSelector": {"kubernetes.io/hostname": "node3"}}
    cluster.apply([hang, pod("halfmade", ns, {"k8s.v1.cni.cncf.io/networks": "hang"}, **on_node3)])

    def hanging() -> str:
        for call in cluster.cni_calls():
            if call["tag"] == "hang" and f"K8S_POD_NAMESPACE={ns};" in call["env"]["CNI_ARGS"]:
                return str(call["env"]["CNI_CONTAINERID"])
        return ""

    first = cluster.wait(hanging, "net1's ADD to hang")
    kubelet = cluster.kubelet("node3")
    kubelet.kill()
    cluster.restart(kubelet)
    running = cluster.running_pod(ns, "halfmade", deadline_s=30)
    assert cluster.sandbox_id(running) != first
    assert calls_of(cluster, first) == [("ADD", "eth0"), ("ADD", "net1"), ("DEL", "net1"), ("DEL", "eth0")]


def test_a_status_the_kubelet_died_before_writing_is_written_by_the_restarted_kubelet(
    cluster: SimCluster, ns: str
) -> None:
    """The kubelet killed between a sandbox's ADDs and the pod's status write: restarted, it reports the
    sandbox it has (no new ADD) instead of leaving the pod Pending for good (found by the cluster chaos
    storm's restart-everything)."""
    cluster.apply([pod("unreported", ns, nodeSelector={"kubernetes.io/hostname": "node1"})])
    running = cluster.running_pod(ns, "unreported")
    sandbox = cluster.sandbox_id(running)
    kubelet = cluster.kubelet("node1")
    kubelet.kill()
    path = f"/api/v1/namespaces/{ns}/pods/unreported"
    cluster.api.merge_patch(path, {"metadata": {"annotations": {SANDBOX_ID: None}}})
    cluster.api.merge_patch(path + "/status", {"status": {"phase": "Pending", "podIPs": None, "podIP": None}})
    cluster.restart(kubelet)
    again = cluster.running_pod(ns, "unreported", deadline_s=30)
    assert cluster.sandbox_id(again) == sandbox
    assert calls_of(cluster, sandbox) == [("ADD", "eth0")]


def test_a_started_pod_is_reported_once(cluster: SimCluster, ns: str) -> None:
    """The kubelet writes a new sandbox's annotations and its Running status once each: it used to see its
    own annotation write come back before its status write and report again (two more writes, and their
    events to every pod watcher, per pod: a third of the API server's work in the 1000-pod benchmark)."""
    since = time.time()
    cluster.apply([pod("once", ns, nodeSelector={"kubernetes.io/hostname": "node2"})])
    sandbox = cluster.sandbox_id(cluster.running_pod(ns, "once"))
    cluster.kubectl("delete", "pod", "once", "-n", ns, "--wait=false")
    # the kubelet handles one pod's events in order: once its DEL ran, any second report was written
    cluster.wait(lambda: ("DEL", "eth0") in calls_of(cluster, sandbox), "the sandbox's DEL")
    writes = [
        f"{w['verb']} {w['resource']}"
        for w in cluster.admin.writes(since, user_agent="kubelet/sim (node2)")
        if w["name"] == "once"
    ]
    assert sorted(writes) == ["patch pods", "patch pods/status"]


def test_workloads_make_owned_pods_that_come_and_go_with_them(cluster: SimCluster, ns: str) -> None:
    """A StatefulSet's members are re-created under their names and removed highest first on scale-down; a
    Deployment's pods are owned through its ReplicaSet and go with it; a Job's pods finish and are torn
    down."""
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "pause"}]},
    }
    selector = {"matchLabels": {"app": "x"}}
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {"replicas": 2, "serviceName": "db", "selector": selector, "template": template},
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 3, "selector": selector, "template": template},
    }
    job_template = {
        "metadata": {"annotations": {"sim.spiderpool.io/run-seconds": "0.5"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once", "namespace": ns},
        "spec": {"completions": 2, "parallelism": 2, "template": job_template},
    }
    cluster.apply([sts, deploy, job])

    db0 = cluster.running_pod(ns, "db-0")
    cluster.running_pod(ns, "db-1")
    assert db0["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    cluster.kubectl("delete", "pod", "-n", ns, "db-0")
    again = cluster.wait(
        lambda: (p := cluster.api.pod(ns, "db-0")) and p["metadata"]["uid"] != db0["metadata"]["uid"] and p,
        "db-0 to be re-created",
    )
    assert cluster.running_pod(ns, "db-0")["metadata"]["uid"] == again["metadata"]["uid"]
    db1_sandbox = cluster.sandbox_id(cluster.running_pod(ns, "db-1"))
    cluster.scale("statefulset", ns, "db", 1)
    cluster.wait(lambda: cluster.api.pod(ns, "db-1") is None, "db-1 to be deleted on scale-down")
    cluster.wait(lambda: ("DEL", "eth0") in calls_of(cluster, db1_sandbox), "db-1's DEL")

    def web_pods() -> list[Obj]:
        return [p for p in cluster.api.pods(ns) if p["metadata"]["name"].startswith("web-")]

    cluster.wait(
        lambda: len([p for p in web_pods() if p["status"].get("phase") == "Running"]) == 3, "3 web pods"
    )
    rs_ref = web_pods()[0]["metadata"]["ownerReferences"][0]
    assert rs_ref["kind"] == "ReplicaSet" and rs_ref["controller"] is True
    rs = cluster.api.get(f"/apis/apps/v1/namespaces/{ns}/replicasets/{rs_ref['name']}")
    assert rs["metadata"]["ownerReferences"][0]["name"] == "web"
    deployment = cluster.wait(
        lambda: (
            (d := cluster.api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web"))
            and (d.get("status") or {}).get("readyReplicas") == 3
            and d
        ),
        "the Deployment's status to count 3 ready replicas",
    )
    assert deployment["status"]["availableReplicas"] == 3
    sandboxes = [cluster.sandbox_id(p) for p in web_pods()]
    cluster.kubectl("delete", "deployment", "-n", ns, "web")
    cluster.wait(lambda: not web_pods(), "the Deployment's pods to go with it")
    cluster.wait(lambda: all(("DEL", "eth0") in calls_of(cluster, s) for s in sandboxes), "their DELs")

    def job_done() -> bool:
        status = cluster.api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/once").get("status") or {}
        return status.get("succeeded") == 2

    cluster.wait(job_done, "the Job to complete", deadline_s=30)
    job_pods = [p for p in cluster.api.pods(ns) if p["metadata"]["name"].startswith("once-")]
    assert [p["status"]["phase"] for p in job_pods] == ["Succeeded", "Succeeded"]
    for job_pod in job_pods:
        assert calls_of(cluster, cluster.sandbox_id(job_pod)) == [("ADD", "eth0"), ("DEL", "eth0")]


def test_a_lost_node_runs_no_del_and_gets_no_pods_until_it_is_back(cluster: SimCluster, ns: str) -> None:
    """Pods deleted while their node is lost get no DEL; new pods avoid the NotReady node; when it comes back
    its kubelet's start-up GC DELs the sandboxes of the pods deleted meanwhile."""
    cluster.apply([pod(f"lost-{i}", ns, nodeSelector={"kubernetes.io/hostname": "node3"}) for i in range(2)])
    sandboxes = [cluster.sandbox_id(cluster.running_pod(ns, f"lost-{i}")) for i in range(2)]
    cluster.kill_node("node3")
    try:
        cluster.kubectl("delete", "pod", "-n", ns, "lost-0", "lost-1")
        cluster.apply([pod(f"new-{i}", ns) for i in range(3)])
        assert {node_of(cluster, ns, f"new-{i}") for i in range(3)} == {"node1", "node2"}
        assert all(calls_of(cluster, s) == [("ADD", "eth0")] for s in sandboxes)
    finally:
        cluster.restart_node("node3")
    for sandbox in sandboxes:
        assert calls_of(cluster, sandbox) == [("ADD", "eth0"), ("DEL", "eth0")]
    ready = cluster.api.get("/api/v1/nodes/node3")["status"]["conditions"]
    assert [c["status"] for c in ready if c["type"] == "Ready"] == ["True"]
