"""The agent's cluster-mode settings: pod source, kubeconfig, cluster network, Kubernetes timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spiderpool_agent.main import main
from spiderpool_agent.settings import AgentSettings, load_settings

CONTROLLER = {"controller": "unix:/run/c.sock"}


def settings(env: dict[str, str] | None = None, **flags: Any) -> AgentSettings:
    return load_settings({**CONTROLLER, **flags}, env=env or {})


def test_the_default_pod_source_is_the_cni_args(tmp_path: Path) -> None:
    """Without a choice the agent reads pods from args.cni, as in the embedded mode."""
    s = settings()
    assert (s.pod_source, s.kubeconfig, s.cluster_network) == ("cni-args", "", "")


def test_kubernetes_pod_source_takes_the_node_from_the_downward_api_and_the_upstream_network_env(
    tmp_path: Path,
) -> None:
    """SPIDERPOOL_NODE_NAME names the node; MULTUS_CLUSTER_NETWORK fills cluster_network when unset."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    env = {
        "SPIDERPOOL_POD_SOURCE": "kubernetes",
        "SPIDERPOOL_KUBECONFIG": str(kubeconfig),
        "SPIDERPOOL_NODE_NAME": "worker-3",
        "MULTUS_CLUSTER_NETWORK": "kube-system/calico",
    }
    s = settings(env)
    assert (s.pod_source, s.node_name, s.kubeconfig, s.cluster_network) == (
        "kubernetes",
        "worker-3",
        str(kubeconfig),
        "kube-system/calico",
    )
    assert settings(env, cluster_network="kube-system/cilium").cluster_network == "kube-system/cilium"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"pod_source": "api"}, "pod_source: 'api' is not one of cni-args, kubernetes"),
        ({"pod_source": "kubernetes"}, "node: required with pod_source kubernetes"),
        (
            {"pod_source": "kubernetes", "node": "n1", "node_labels": "a=b"},
            "node_labels: not used with pod_source kubernetes",
        ),
        (
            {"pod_source": "kubernetes", "node": "n1", "kubeconfig": "/nonexistent/kubeconfig"},
            "kubeconfig: '/nonexistent/kubeconfig' is not a file",
        ),
        ({"kubeconfig": "/etc/hostname"}, "kubeconfig: only used with pod_source kubernetes"),
        ({"cluster_network": "a/b/c"}, "cluster_network: "),
        ({"cluster_network": "calico@eth0"}, "cluster_network: 'calico@eth0' names an interface"),
        ({"kube_timeout": "0"}, "kube_timeout: must be positive"),
        ({"kube_sync_timeout": "-1"}, "kube_sync_timeout: must be positive"),
    ],
)
def test_bad_cluster_settings_are_refused_naming_the_setting(flags: dict[str, str], message: str) -> None:
    """Each inconsistent or malformed value stops the agent with a message naming the setting."""
    with pytest.raises(ValueError, match="^setting " + message.replace("(", r"\(")):
        load_settings({**CONTROLLER, **flags}, env={})


def test_the_agent_refuses_to_start_with_an_unreadable_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig that is not one: exit 2 and one line naming the file, no traceback."""
    # main() configures logging process-wide onto this test's captured stderr: keep it out.
    monkeypatch.setattr("spiderpool_agent.main.configure_logging", lambda *_a: None)
    bad = tmp_path / "kubeconfig"
    bad.write_text("clusters: [")
    argv = [
        "--controller", "unix:/run/c.sock", "--socket", str(tmp_path / "a.sock"),
        "--state-dir", str(tmp_path / "state"), "--node", "n1",
        "--pod-source", "kubernetes", "--kubeconfig", str(bad),
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spiderpool-agent: kubeconfig {bad}: ")
    assert "Traceback" not in err
    assert not (tmp_path / "a.sock").exists()
