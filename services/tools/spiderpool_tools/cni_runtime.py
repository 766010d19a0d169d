"""A small libcni-like CNI runtime: what a container engine does with a network config.

No package on these machines ships ``cnitool``, and the demo, the benchmark and the netns
tests all need a runtime that follows the CNI 1.1 specification's runtime rules exactly
(SPEC.md "Protocol" and "Execution of network configurations"):

- ADD runs the plugins in order, each given the previous plugin's result as
  ``prevResult``; the final result is cached (keyed by network, container and ifname)
  because CHECK and DEL must receive it.
- DEL runs the plugins in reverse order with ``prevResult`` = the cached ADD result (or
  none when ADD never completed), then removes the cache entry. DEL is what cleans up a
  failed ADD, so it is always safe to call, also twice.
- CHECK runs in order with the cached result, is refused for an attachment never added,
  and is skipped when the config says ``disableCheck``.
- GC first DELs every cached attachment of the network that is not in the valid list
  (as libcni does), then, for configs at 1.1.0 or newer, sends GC to every plugin with
  ``cni.dev/valid-attachments`` and the legacy ``cni.dev/attachments`` key, continuing
  past failures and reporting them all; ``disableGC`` skips it.
- STATUS asks every plugin, for configs at 1.1.0 or newer (libcni skips older ones).
- Version negotiation: with ``cniVersions`` the highest version this runtime also speaks
  is chosen, otherwise ``cniVersion``.

Plugins are executed with the spec's environment (CNI_COMMAND, CNI_CONTAINERID,
CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH) and the request configuration on stdin:
the plugin object with ``name``, ``cniVersion``, ``runtimeConfig`` (declared
capabilities intersected with the caller's capability args) and ``prevResult``
injected, ``capabilities`` removed. A caller that needs the plugins to run inside
another network namespace (the demo's "node" namespace) passes an ``exec_context``
(e.g. ``NetNs.entered``) that holds while each plugin process is spawned, or a
``preexec_fn`` (e.g. ``NetNs.enter_fn()``; slower, it rules out vfork).

Per-attachment data beyond CNI_ARGS goes where CONVENTIONS.md "args in network config"
puts it: a ``RuntimeConf.config_args`` object is inserted as each plugin's ``args`` (the
spiderpool plugins read the pod's labels and annotations from its ``cni`` key), and is
cached with the result so that DEL and GC send the same.

Pure standard library; the CLI at the bottom is a thin ``cnitool`` replacement.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Spec versions this runtime speaks, oldest first (SPEC.md "Released versions").
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
DEFAULT_CACHE_DIR = "/var/lib/cni"
CACHE_KIND = "cniCacheV1"
INTERNAL_CODE = 999  # what libcni's skel reports for an unstructured failure

JsonDict = dict[str, Any]


# ---------------------------------------------------------------------------------------
# errors


def _attachment_stdin(
    config: NetworkConfigList,
    plugin: Mapping[str, Any],
    rt: RuntimeConf,
    prev_result: Mapping[str, Any] | None,
) -> JsonDict:
    """The request configuration of one plugin for an attachment verb (ADD, DEL, CHECK)."""
    return request_config(
        plugin,
        name=config.name,
        cni_version=config.cni_version,
        capability_args=rt.capability_args,
        prev_result=prev_result,
        extra={"args": dict(rt.config_args)} if rt.config_args else None,
    )


class CniRuntimeError(Exception):
    """Anything the runtime cannot do; plugin failures are the ``CniPluginError`` subclass."""


class ConfigError(CniRuntimeError):
    """The network configuration is malformed or asks for something this runtime cannot do."""


class PluginNotFound(CniRuntimeError):
    """No executable named after the plugin's ``type`` on the CNI path."""


class NotAttached(CniRuntimeError):
    """CHECK for an attachment with no cached ADD result (the spec forbids that call)."""


class CniPluginError(CniRuntimeError):
    """A plugin exited non-zero; carries the CNI error object it printed."""

    def __init__(self, code: int, msg: str, details: str = "", plugin: str = "") -> None:
        super().__init__(
            f"plugin {plugin or '?'} failed: code {code}: {msg}" + (f" ({details})" if details else "")
        )
        self.code = code
        self.msg = msg
        self.details = details
        self.plugin = plugin


class GcError(CniRuntimeError):
    """GC finished but some DELs or plugin GCs failed; every failure is listed."""

    def __init__(self, errors: Sequence[CniRuntimeError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)


# ---------------------------------------------------------------------------------------
# configuration


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError as exc:
        raise ConfigError(f"invalid cniVersion {version!r}") from exc


def version_at_least(version: str, minimum: str) -> bool:
    return _version_key(version) >= _version_key(minimum)


def negotiate_version(raw: Mapping[str, Any]) -> str:
    """The version to run a config at: the highest shared entry of ``cniVersions``, else ``cniVersion``."""
    versions = raw.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ConfigError("cniVersions must be a list of version strings")
        shared = [v for v in versions if v in SUPPORTED_VERSIONS]
        if not shared:
            raise ConfigError(
                f"no version of cniVersions {versions} is supported (runtime: {SUPPORTED_VERSIONS})"
            )
        return str(max(shared, key=_version_key))
    version = raw.get("cniVersion", "")
    if not isinstance(version, str) or not version:
        raise ConfigError("cniVersion is required")
    _version_key(version)
    return version


@dataclass(frozen=True)
class NetworkConfigList:
    """A parsed conflist (a single plugin config is wrapped into a one-plugin list)."""

    name: str
    cni_version: str
    plugins: tuple[JsonDict, ...]
    disable_check: bool = False
    disable_gc: bool = False
    raw: JsonDict = field(default_factory=dict)

    @property
    def plugin_types(self) -> list[str]:
        return [str(p["type"]) for p in self.plugins]


def load_config(source: str | bytes | Mapping[str, Any]) -> NetworkConfigList:
    """Parse a conflist or a single plugin config from JSON text or an already-decoded dict."""
    if isinstance(source, Mapping):
        raw: Any = dict(source)
    else:
        try:
            raw = json.loads(source)
        except ValueError as exc:
            raise ConfigError(f"network configuration is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("network configuration must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("network configuration needs a non-empty 'name'")
    version = negotiate_version(raw)
    if "plugins" in raw:
        plugins = raw["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise ConfigError(f"network {name!r}: 'plugins' must be a non-empty list")
    else:  # a single plugin config (pre-1.0 style): it is its own only plugin
        plugins = [{k: v for k, v in raw.items() if k not in ("cniVersions",)}]
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise ConfigError(f"network {name!r}: plugin #{index} needs a 'type'")
    if len(plugins) > 1 and not version_at_least(version, "0.3.0"):
        raise ConfigError(f"network {name!r}: chaining needs cniVersion 0.3.0 or newer, not {version}")
    return NetworkConfigList(
        name=name,
        cni_version=version,
        plugins=tuple(plugins),
        disable_check=bool(raw.get("disableCheck", False)),
        disable_gc=bool(raw.get("disableGC", False)),
        raw=raw,
    )


def load_config_file(path: str | os.PathLike[str]) -> NetworkConfigList:
    return load_config(Path(path).read_text())


@dataclass(frozen=True)
class RuntimeConf:
    """One attachment: the per-invocation parameters (SPEC.md "Parameters")."""

    container_id: str
    ifname: str
    netns: str = ""
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    config_args: Mapping[str, Any] = field(default_factory=dict)  # the plugins' "args" object

    @property
    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args)


def request_config(
    plugin: Mapping[str, Any],
    *,
    name: str,
    cni_version: str,
    capability_args: Mapping[str, Any] | None = None,
    prev_result: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JsonDict:
    """Derive a plugin's request configuration (SPEC.md "Deriving execution configuration")."""
    conf = {k: v for k, v in plugin.items() if k != "capabilities"}
    conf["name"] = name
    conf["cniVersion"] = cni_version
    if capability_args is not None:
        declared = plugin.get("capabilities") or {}
        runtime_config = {k: capability_args[k] for k, on in declared.items() if on and k in capability_args}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        else:
            conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    if extra:
        conf.update(extra)
    return conf


# ---------------------------------------------------------------------------------------
# the runtime


@dataclass(frozen=True)
class CachedAttachment:
    network: str
    container_id: str
    ifname: str
    netns: str
    args: tuple[tuple[str, str], ...]
    capability_args: JsonDict
    result: JsonDict | None
    path: Path
    config_args: JsonDict = field(default_factory=dict)
    network_config: JsonDict | None = None  # the configuration the ADD ran with (libcni GCs from it)

    def runtime_conf(self) -> RuntimeConf:
        return RuntimeConf(
            self.container_id, self.ifname, self.netns, self.args, self.capability_args, self.config_args
        )


class CniRuntime:
    """Executes CNI plugins found on ``plugin_dirs``, caching ADD results under ``cache_dir``."""

    def __init__(
        self,
        plugin_dirs: Sequence[str | os.PathLike[str]],
        cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
        *,
        timeout: float = 60.0,
        exec_context: Callable[[], AbstractContextManager[object]] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not plugin_dirs:
            raise ConfigError("at least one plugin directory is required")
        self.plugin_dirs = [str(d) for d in plugin_dirs]
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.exec_context = exec_context
        self.preexec_fn = preexec_fn  # slower than exec_context: it rules out vfork
        base = dict(os.environ if env is None else env)
        self._base_env = {k: v for k, v in base.items() if not k.startswith("CNI_")}

    # -- plugin execution ------------------------------------------------------------

    def find_plugin(self, plugin_type: str) -> str:
        if "/" in plugin_type or plugin_type in ("", ".", ".."):
            raise ConfigError(f"invalid plugin type {plugin_type!r}")
        for directory in self.plugin_dirs:
            candidate = os.path.join(directory, plugin_type)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        raise PluginNotFound(f"failed to find plugin {plugin_type!r} in path {self.plugin_dirs}")

    def exec_plugin(
        self, plugin_type: str, command: str, stdin: Mapping[str, Any], rt: RuntimeConf | None = None
    ) -> JsonDict | None:
        """Run one plugin; returns its parsed stdout (None when empty) or raises ``CniPluginError``."""
        binary = self.find_plugin(plugin_type)
        env = dict(self._base_env)
        env["CNI_COMMAND"] = command
        if command != "VERSION":
            env["CNI_PATH"] = os.pathsep.join(self.plugin_dirs)
        if rt is not None:
            env["CNI_CONTAINERID"] = rt.container_id
            env["CNI_IFNAME"] = rt.ifname
            if rt.netns:
                env["CNI_NETNS"] = rt.netns
            env["CNI_ARGS"] = rt.cni_args
        payload = json.dumps(stdin).encode()
        with self.exec_context() if self.exec_context is not None else nullcontext():
            proc = subprocess.Popen(
                [binary],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                preexec_fn=self.preexec_fn,  # noqa: PLW1509  (opt-in; exec_context is the thread-safe way)
            )
        try:
            stdout, stderr = proc.communicate(payload, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise CniPluginError(
                INTERNAL_CODE, f"{command} timed out after {self.timeout}s", plugin=plugin_type
            ) from exc
        out = stdout.strip()
        if proc.returncode != 0:
            raise _plugin_error(plugin_type, command, proc.returncode, out, stderr)
        if not out:
            return None
        try:
            parsed = json.loads(out)
        except ValueError as exc:
            raise CniPluginError(
                INTERNAL_CODE, f"{command} printed invalid JSON: {out[:200]!r}", plugin=plugin_type
            ) from exc
        if not isinstance(parsed, dict):
            raise CniPluginError(INTERNAL_CODE, f"{command} printed a non-object result", plugin=plugin_type)
        return parsed

    # -- verbs -----------------------------------------------------------------------

    def add(self, config: NetworkConfigList, rt: RuntimeConf) -> JsonDict:
        """ADD through every plugin in order; caches and returns the final result."""
        _require_attachment(rt, need_netns=True)
        result: JsonDict | None = None
        for plugin in config.plugins:
            out = self.exec_plugin(plugin["type"], "ADD", _attachment_stdin(config, plugin, rt, result), rt)
            if out is None:
                raise CniPluginError(INTERNAL_CODE, "ADD printed no result", plugin=plugin["type"])
            result = out
        assert result is not None  # load_config guarantees at least one plugin
        self._write_cache(config, rt, result)
        return result

    def delete(self, config: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL through every plugin in reverse order with the cached result; drops the cache."""
        _require_attachment(rt, need_netns=False)
        cached = self.cached_result(config.name, rt.container_id, rt.ifname)
        prev = cached if version_at_least(config.cni_version, "0.4.0") else None
        for plugin in reversed(config.plugins):
            self.exec_plugin(plugin["type"], "DEL", _attachment_stdin(config, plugin, rt, prev), rt)
        self._cache_path(config.name, rt.container_id, rt.ifname).unlink(missing_ok=True)

    def check(self, config: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK every plugin in order against the cached result (skipped with disableCheck)."""
        _require_attachment(rt, need_netns=True)
        if not version_at_least(config.cni_version, "0.4.0"):
            raise ConfigError(f"configuration version {config.cni_version} does not support CHECK")
        if config.disable_check:
            return
        cached = self.cached_result(config.name, rt.container_id, rt.ifname)
        if cached is None:
            raise NotAttached(f"no cached ADD result for {config.name}/{rt.container_id}/{rt.ifname}")
        for plugin in config.plugins:
            self.exec_plugin(plugin["type"], "CHECK", _attachment_stdin(config, plugin, rt, cached), rt)

    def gc(self, config: NetworkConfigList, valid: Iterable[tuple[str, str]]) -> None:
        """DEL cached attachments not in ``valid`` ((containerID, ifname) pairs), then GC each plugin."""
        if config.disable_gc:
            return
        keep = set(valid)
        errors: list[CniRuntimeError] = []
        for cached in self.cached_attachments(config.name):
            if (cached.container_id, cached.ifname) in keep:
                continue
            try:
                self.delete(config, cached.runtime_conf())
            except CniRuntimeError as exc:
                errors.append(exc)
        if version_at_least(config.cni_version, "1.1.0"):
            attachments = [{"containerID": c, "ifname": i} for c, i in sorted(keep)]
            extra = {"cni.dev/valid-attachments": attachments, "cni.dev/attachments": attachments}
            for plugin in config.plugins:
                stdin = request_config(plugin, name=config.name, cni_version=config.cni_version, extra=extra)
                try:
                    self.exec_plugin(plugin["type"], "GC", stdin)
                except CniRuntimeError as exc:
                    errors.append(exc)
        if errors:
            raise GcError(errors)

    def status(self, config: NetworkConfigList) -> None:
        """STATUS of every plugin in order; the first failure is raised (skipped below 1.1.0)."""
        if not version_at_least(config.cni_version, "1.1.0"):
            return
        for plugin in config.plugins:
            stdin = request_config(plugin, name=config.name, cni_version=config.cni_version)
            self.exec_plugin(plugin["type"], "STATUS", stdin)

    def version(self, plugin_type: str, cni_version: str = "1.1.0") -> JsonDict:
        """The plugin's VERSION answer (``cniVersion`` and ``supportedVersions``)."""
        out = self.exec_plugin(plugin_type, "VERSION", {"cniVersion": cni_version})
        if out is None:
            raise CniPluginError(INTERNAL_CODE, "VERSION printed nothing", plugin=plugin_type)
        return out

    # -- result cache ----------------------------------------------------------------

    def _cache_path(self, network: str, container_id: str, ifname: str) -> Path:
        for part in (network, container_id, ifname):
            if not part or "/" in part or part in (".", ".."):
                raise ConfigError(f"invalid cache key component {part!r}")
        return self.cache_dir / "results" / f"{network}-{container_id}-{ifname}"

    def _write_cache(self, config: NetworkConfigList, rt: RuntimeConf, result: JsonDict) -> None:
        path = self._cache_path(config.name, rt.container_id, rt.ifname)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "kind": CACHE_KIND,
            "containerId": rt.container_id,
            "ifName": rt.ifname,
            "networkName": config.name,
            "netns": rt.netns,
            "cniArgs": [list(kv) for kv in rt.args],
            "capabilityArgs": dict(rt.capability_args),
            "configArgs": dict(rt.config_args),
            "config": base64.b64encode(json.dumps(config.raw).encode()).decode(),
            "result": result,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)

    def _read_cache(self, path: Path) -> CachedAttachment | None:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("kind") != CACHE_KIND:
            return None
        result = entry.get("result")
        try:
            network_config = json.loads(base64.b64decode(entry.get("config") or ""))
        except (ValueError, TypeError):
            network_config = None
        return CachedAttachment(
            network=str(entry.get("networkName", "")),
            container_id=str(entry.get("containerId", "")),
            ifname=str(entry.get("ifName", "")),
            netns=str(entry.get("netns", "")),
            args=tuple((str(k), str(v)) for k, v in entry.get("cniArgs") or []),
            capability_args=dict(entry.get("capabilityArgs") or {}),
            result=result if isinstance(result, dict) else None,
            path=path,
            config_args=dict(entry.get("configArgs") or {}),
            network_config=network_config if isinstance(network_config, dict) else None,
        )

    def cached_result(self, network: str, container_id: str, ifname: str) -> JsonDict | None:
        cached = self._read_cache(self._cache_path(network, container_id, ifname))
        return cached.result if cached is not None else None

    def cached_attachments(self, network: str | None = None) -> list[CachedAttachment]:
        """Every cached attachment (of ``network`` when given), in a stable order."""
        results = self.cache_dir / "results"
        if not results.is_dir():
            return []
        found = []
        for path in sorted(results.iterdir()):
            if path.name.endswith(".tmp"):
                continue
            cached = self._read_cache(path)
            if cached is not None and (network is None or cached.network == network):
                found.append(cached)
        return found


def result_ips(result: Mapping[str, Any]) -> list[str]:
    """The ``ips[].address`` CIDRs of a CNI result, in result order."""
    ips = result.get("ips") or []
    return [str(entry["address"]) for entry in ips if isinstance(entry, dict) and "address" in entry]


def _require_attachment(rt: RuntimeConf, *, need_netns: bool) -> None:
    if not rt.container_id:
        raise ConfigError("container ID is required")
    if not rt.ifname:
        raise ConfigError("interface name is required")
    if need_netns and not rt.netns:
        raise ConfigError("network namespace path is required")


def _plugin_error(plugin: str, command: str, returncode: int, out: bytes, err: bytes) -> CniPluginError:
    stderr = err.decode(errors="replace").strip()
    try:
        obj = json.loads(out) if out else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "code" in obj:
        try:
            code = int(obj["code"])
        except (TypeError, ValueError):
            code = INTERNAL_CODE
        return CniPluginError(code, str(obj.get("msg", "")), str(obj.get("details", "")), plugin)
    text = out.decode(errors="replace").strip() or stderr or f"exit status {returncode}"
    return CniPluginError(INTERNAL_CODE, f"{command} failed: {text[:500]}", stderr[:500], plugin)


# ---------------------------------------------------------------------------------------
# cnitool-like CLI


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"CNI argument {item!r} is not KEY=VALUE")
        pairs.append((key, value))
    return tuple(pairs)


def _json_object(flag: str, text: str) -> JsonDict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: must be a JSON object, got {type(value).__name__}")
    return value


def _split_attachment(text: str) -> tuple[str, str]:
    container_id, sep, ifname = text.partition("/")
    if not sep or not container_id or not ifname:
        raise ConfigError(f"attachment {text!r} is not CONTAINERID/IFNAME")
    return container_id, ifname


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spiderpool_tools.cni_runtime", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["add", "del", "check", "gc", "status", "version"])
    parser.add_argument("config", help="conflist or plugin config file (for 'version': the plugin type)")
    parser.add_argument(
        "--path",
        default=os.environ.get("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        help="plugin directories, ':'-separated (default: $CNI_PATH)",
    )
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--container-id", default="cnitool-" + str(os.getpid()))
    parser.add_argument("--netns", default="", help="netns path (or a name under /run/netns)")
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--args", default="", help="CNI_ARGS, K1=V1;K2=V2")
    parser.add_argument("--capability-args", default="{}", help="JSON object of capability arguments")
    parser.add_argument(
        "--config-args",
        default="{}",
        help='JSON object inserted as each plugin\'s "args" (e.g. {"cni": {...}})',
    )
    parser.add_argument(
        "--valid", action="append", default=[], help="gc: CONTAINERID/IFNAME to keep (repeat)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = _build_parser().parse_args(argv)
    runtime = CniRuntime(ns.path.split(os.pathsep), ns.cache_dir)
    try:
        if ns.command == "version":
            print(json.dumps(runtime.version(ns.config)))
            return 0
        config = load_config_file(ns.config)
        netns = ns.netns if not ns.netns or "/" in ns.netns else f"/run/netns/{ns.netns}"
        rt = RuntimeConf(
            ns.container_id,
            ns.ifname,
            netns,
            parse_cni_args(ns.args),
            _json_object("--capability-args", ns.capability_args),
            _json_object("--config-args", ns.config_args),
        )
        started = time.monotonic()
        if ns.command == "add":
            print(json.dumps(runtime.add(config, rt), indent=2))
        elif ns.command == "del":
            runtime.delete(config, rt)
        elif ns.command == "check":
            runtime.check(config, rt)
        elif ns.command == "gc":
            runtime.gc(config, [_split_attachment(v) for v in ns.valid])
        else:
            runtime.status(config)
        print(f"{ns.command} ok in {(time.monotonic() - started) * 1000:.1f} ms", file=sys.stderr)
        return 0
    except CniPluginError as exc:
        print(json.dumps({"code": exc.code, "msg": exc.msg, "details": exc.details, "plugin": exc.plugin}))
        return 1
    except (CniRuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
