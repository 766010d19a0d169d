"""open_store: which backend a store URL selects, and how bad URLs are reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from spiderpool_controller.store.factory import open_store
from spiderpool_controller.store.kubernetes import KubernetesStore
from spiderpool_controller.store.sqlite import SqliteStore


async def test_absolute_sqlite_url_creates_parent_directories(tmp_path: Path) -> None:
    """sqlite:///abs/path opens that file, creating missing parent directories."""
    path = tmp_path / "deep" / "er" / "state.db"
    store = open_store(f"sqlite://{path}")
    assert isinstance(store, SqliteStore)
    await store.create({"kind": "SpiderIPPool", "metadata": {"name": "p1"}})
    await store.close()
    assert path.is_file()


async def test_relative_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite://rel/path opens rel/path under the current directory."""
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite://var/state.db")
    await store.close()
    assert (tmp_path / "var" / "state.db").is_file()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("kubernetes://some/where", "takes no path"),
        ("etcd://localhost:2379", "unknown store URL"),
        ("/var/lib/state.db", "unknown store URL"),
        ("sqlite://", "names no file"),
        ("sqlite:///var/lib/", "names no file"),
    ],
)
def test_unusable_urls_raise_a_clear_value_error(url: str, fragment: str) -> None:
    """URLs no backend serves raise ValueError saying why."""
    with pytest.raises(ValueError, match=fragment):
        open_store(url)


async def test_kubernetes_opens_the_kubernetes_store_on_the_given_kubeconfig(tmp_path: Path) -> None:
    """kubernetes:// is the Kubernetes store; it reads its client configuration on first use."""
    store = open_store("kubernetes://", kubeconfig=str(tmp_path / "kubeconfig"))
    assert isinstance(store, KubernetesStore)
    await store.close()
