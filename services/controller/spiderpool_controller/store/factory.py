"""Choosing the Store backend from a URL (the controller's ``--store`` setting).

Owns the URL scheme table, so wiring code never imports a backend directly:

- ``sqlite:///abs/path/state.db``: the embedded store at an absolute path;
- ``sqlite://relative/state.db``: relative to the working directory;
- ``kubernetes://``: the custom resources of a cluster (``kubeconfig``: a file, else the
  in-cluster ServiceAccount).

Parent directories of a SQLite file are created, since a fresh machine has none.
"""

from __future__ import annotations

from pathlib import Path

from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.kubernetes import KubernetesStore
from spiderpool_controller.store.sqlite import SqliteStore

SQLITE_PREFIX = "sqlite://"
KUBERNETES_PREFIX = "kubernetes://"


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite://`` URL names (``sqlite:///abs`` is absolute, ``sqlite://rel`` is not)."""
    if not url.startswith(SQLITE_PREFIX):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url[len(SQLITE_PREFIX) :]
    if not rest or rest.endswith("/"):
        raise ValueError(
            f"store URL {url!r} names no file; use sqlite:///abs/path.db or sqlite://rel/path.db"
        )
    return Path(rest)


def open_store(url: str, kubeconfig: str = "") -> Store:
    """Open the store a URL names; raise ``ValueError`` for a URL no backend serves."""
    if url.startswith(SQLITE_PREFIX):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(path)
    if url.startswith(KUBERNETES_PREFIX):
        if url != KUBERNETES_PREFIX:
            raise ValueError(f"store URL {url!r}: the Kubernetes store takes no path; use kubernetes://")
        return KubernetesStore(kubeconfig=kubeconfig or None)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    raise ValueError(
        f"unknown store URL {url!r} (scheme {scheme!r}); expected sqlite:///abs/path.db, "
        "sqlite://relative/path.db or kubernetes://"
    )
