"""The Helm chart rendered, and its containers as something a test (or the simulated cluster) can run.

``render(values)`` renders ``deploy/chart/spiderpool`` with Helm itself (helm-python-sdk, in-process, offline)
and returns the manifests as objects. ``containers(rendered)`` lists every container of every workload
(Deployment, DaemonSet, Job; init containers too) as a ``Container``: its command and arguments, its
environment (literal values and downward-API references), its mounts with their sources (host paths,
ConfigMap keys, Secret keys, emptyDirs) and its probes.

``Container.materialize(root, ...)`` turns one into what to run on this machine: every ConfigMap and Secret
volume written under ``root`` from the rendered objects (or given Secrets), host paths and emptyDirs mapped
to directories under ``root`` (or to the paths the caller names), the mount paths in the arguments replaced
by those directories, downward-API variables given by the caller and ``$(VAR)`` references expanded as the
kubelet does. The result is an argv and an environment: the programs start exactly as the chart says, only
relocated. This is the one place the simulated cluster takes the programs' command lines from.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "chart" / "spiderpool"
NAMESPACE = "kube-system"
RELEASE = "spiderpool"
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "Job")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Obj = dict[str, Any]


def helm_home() -> None:
    """Helm (in-process) keeps caches under HOME and HELM_*: point them at a private directory once."""
    if os.environ.get("SPIDERPOOL_TEST_HELM_HOME"):
        return
    home = tempfile.mkdtemp(prefix="helm-home-")
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        os.environ.setdefault(var, os.path.join(home, sub))
    os.environ["SPIDERPOOL_TEST_HELM_HOME"] = home


@dataclass(frozen=True)
class Rendered:
    """The rendered manifests: objects by (kind, name), and the raw text per template."""

    objects: list[Obj]
    templates: dict[str, str]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def kinds(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str) -> Obj | None:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        return found[0] if found else None


def render(
    values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE, upgrade: bool = False
) -> Rendered:
    """Render the chart as ``helm template`` would (no cluster: lookups find nothing)."""
    helm_home()
    chart = helm_python.Chart.load(str(CHART))
    templates = chart.render(
        dict(values or {}), name=RELEASE, namespace=namespace, is_install=not upgrade, is_upgrade=upgrade
    )
    return Rendered(parse_manifests(templates.values()), templates)


def parse_manifests(texts: Any) -> list[Obj]:
    objects: list[Obj] = []
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


@dataclass(frozen=True)
class Mount:
    """A volume mount and where its content comes from."""

    volume: str
    path: str
    read_only: bool
    source: str  # hostPath, configMap, secret, emptyDir
    ref: str  # the host path, ConfigMap name or Secret name ("" for emptyDir)
    items: tuple[tuple[str, str], ...] = ()  # (key, path) selected from a ConfigMap or Secret
    propagation: str = ""
    mode: int | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None  # a literal
    field_path: str | None = None  # a downward-API fieldRef


@dataclass(frozen=True)
class Container:
    """One container of one workload, as rendered."""

    workload_kind: str
    workload: str
    name: str
    init: bool
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[EnvVar, ...]
    mounts: tuple[Mount, ...]
    probes: Mapping[str, Obj] = field(default_factory=dict)
    security: Mapping[str, Any] = field(default_factory=dict)
    pod: Mapping[str, Any] = field(default_factory=dict)  # the pod spec without its containers

    @property
    def key(self) -> str:
        return f"{self.workload_kind}/{self.workload}/{self.name}"

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]

    def flags(self) -> dict[str, str]:
        """``--name=value`` arguments as a mapping (the chart writes every flag that way)."""
        out: dict[str, str] = {}
        for arg in self.args:
            if arg.startswith("--"):
                name, _, value = arg.partition("=")
                out[name] = value
        return out

    def mount(self, path: str) -> Mount:
        found = [m for m in self.mounts if m.path == path]
        assert len(found) == 1, f"{self.key}: no single mount at {path}"
        return found[0]

    def materialize(
        self,
        rendered: Rendered,
        root: Path,
        *,
        field_values: Mapping[str, str] = {},
        host_paths: Mapping[str, Path] = {},
        secrets: Mapping[str, Obj] = {},
        extra_places: Mapping[str, Path] = {},
    ) -> Materialized:
        """Files of every volume under ``root``; the argv and environment relocated onto them.

        ``host_paths`` says where a hostPath volume's host directory is here (default: a new directory
        under ``root``); ``extra_places`` relocates other paths the arguments name (the image's
        bundle, the init container's view of the host's root)."""
        places: dict[str, Path] = dict(extra_places)
        for index, mount in enumerate(self.mounts):
            local = root / f"{index}-{mount.volume}"
            if mount.source == "hostPath":
                local = host_paths.get(mount.ref, local)
                local.mkdir(parents=True, exist_ok=True)
            elif mount.source == "emptyDir":
                local.mkdir(parents=True, exist_ok=True)
            else:
                local.mkdir(parents=True, exist_ok=True)
                data = self._volume_data(rendered, mount, secrets)
                wanted = mount.items or tuple((k, k) for k in data)
                for key, rel in wanted:
                    assert key in data, f"{self.key}: {mount.source} {mount.ref} has no key {key}"
                    (local / rel).write_bytes(data[key])
                    (local / rel).chmod(0o600)
            places[mount.path] = local
        env: dict[str, str] = {}
        for var in self.env:
            if var.value is not None:
                env[var.name] = expand(var.value, env)
            else:
                assert var.field_path is not None
                assert var.field_path in field_values, (
                    f"{self.key}: give a value for fieldRef {var.field_path}"
                )
                env[var.name] = field_values[var.field_path]
        argv = [relocate(expand(arg, env), places) for arg in self.argv]
        return Materialized(argv, env, places)

    def _volume_data(self, rendered: Rendered, mount: Mount, secrets: Mapping[str, Obj]) -> dict[str, bytes]:
        if mount.source == "configMap":
            cm = rendered.get("ConfigMap", mount.ref)
            return {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        secret = secrets.get(mount.ref) or rendered.find("Secret", mount.ref)
        assert secret is not None, f"{self.key}: Secret {mount.ref} is neither rendered nor given"
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        data |= {k: v.encode() for k, v in (secret.get("stringData") or {}).items()}
        return data


@dataclass(frozen=True)
class Materialized:
    argv: list[str]
    env: dict[str, str]
    places: dict[str, Path]  # mount path -> local directory


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` replaced by VAR's value when it is defined, as the kubelet expands them."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def relocate(arg: str, places: Mapping[str, Path]) -> str:
    """An argument's paths under a mount (``--x=/etc/spiderpool/config/a.yaml``) moved to the local one."""
    if arg.startswith("--") and "=" in arg:
        name, _, value = arg.partition("=")
        return f"{name}={relocate(value, places)}"
    for mount_path in sorted(places, key=len, reverse=True):
        if arg == mount_path or arg.startswith(mount_path.rstrip("/") + "/"):
            return str(places[mount_path]) + arg[len(mount_path) :]
    return arg


def _mounts(container: Obj, volumes: dict[str, Obj]) -> tuple[Mount, ...]:
    out = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes[vm["name"]]
        items: tuple[tuple[str, str], ...]
        if "hostPath" in vol:
            source, ref, items, mode = "hostPath", vol["hostPath"]["path"], (), None
        elif "configMap" in vol:
            cm = vol["configMap"]
            source, ref, mode = "configMap", cm["name"], cm.get("defaultMode")
            items = tuple((i["key"], i["path"]) for i in cm.get("items") or [])
        elif "secret" in vol:
            sec = vol["secret"]
            source, ref, mode = "secret", sec["secretName"], sec.get("defaultMode")
            items = tuple((i["key"], i["path"]) for i in sec.get("items") or [])
        elif "emptyDir" in vol:
            source, ref, items, mode = "emptyDir", "", (), None
        else:
            raise AssertionError(f"volume {vm['name']}: unexpected source {sorted(vol)}")
        out.append(
            Mount(
                vm["name"], vm["mountPath"], bool(vm.get("readOnly")), source, ref, items,
                vm.get("mountPropagation", ""), mode,
            )
        )  # fmt: skip
    return tuple(out)


def _env(container: Obj) -> tuple[EnvVar, ...]:
    out = []
    for var in container.get("env") or []:
        ref = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        assert "value" in var or ref, f"env {var['name']}: only literals and fieldRefs are expected"
        out.append(EnvVar(var["name"], var.get("value"), ref))
    return tuple(out)


def containers(rendered: Rendered) -> dict[str, Container]:
    """Every container of every rendered workload, keyed ``Kind/workload/container``."""
    out: dict[str, Container] = {}
    for obj in rendered.objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        pod_rest = {k: v for k, v in pod.items() if k not in ("containers", "initContainers")}
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in pod.get(key) or []:
                probes = {p: c[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c}
                container = Container(
                    obj["kind"], obj["metadata"]["name"], c["name"], init,
                    tuple(c.get("command") or ()), tuple(c.get("args") or ()), _env(c), _mounts(c, volumes),
                    probes, c.get("securityContext") or {}, pod_rest,
                )  # fmt: skip
                out[container.key] = container
    return out


def settings_file(rendered: Rendered, key: str) -> Obj:
    """A program's settings file from the global ConfigMap, parsed."""
    data = rendered.get("ConfigMap", "spiderpool-conf")["data"]
    loaded = yaml.safe_load(data[key])
    assert isinstance(loaded, dict)
    return loaded


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
