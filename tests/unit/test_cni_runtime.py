"""The CNI runtime follows the spec's runtime rules, proven with recording fake plugins.

Each fake plugin is a small Python script in tmp_path that appends what it was given
(CNI_* environment and stdin) to a record file named in its own config, and answers per
its config: ADD returns prevResult with one interface appended, a configured verb fails
with a CNI error object (or with garbage), VERSION lists versions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from spiderpool_tools import cni_runtime
from spiderpool_tools.cni_runtime import (
    CniPluginError,
    CniRuntime,
    ConfigError,
    GcError,
    NotAttached,
    PluginNotFound,
    RuntimeConf,
    load_config,
)

FAKE_PLUGIN = """\
#!{python} -IS
import json, os, sys
conf = json.loads(sys.stdin.read())
cmd = os.environ["CNI_COMMAND"]
me = os.path.basename(sys.argv[0])
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
if conf.get("record"):
    with open(conf["record"], "a") as f:
        f.write(json.dumps({{"plugin": me, "command": cmd, "env": env, "stdin": conf}}) + "\\n")
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": conf["cniVersion"], "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}}))
    sys.exit(0)
fail = conf.get("fail", {{}}).get(cmd)
if fail == "garbage":
    sys.stderr.write("panic: something broke\\n")
    print("not json")
    sys.exit(2)
if fail:
    print(json.dumps({{"cniVersion": conf["cniVersion"], "code": fail, "msg": me + " refused " + cmd,
                      "details": "detail of " + me}}))
    sys.exit(1)
if cmd == "ADD":
    result = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "interfaces": [], "ips": []}}
    result["interfaces"].append({{"name": me + ":" + env["CNI_IFNAME"]}})
    print(json.dumps(result))
"""


class Plugins:
    """A plugin directory with fake plugins and the record file they write to."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "bin"
        self.dir.mkdir()
        self.record = root / "record.jsonl"
        for name in ("first", "second", "third"):
            self.make(name)

    def make(self, name: str) -> None:
        path = self.dir / name
        path.write_text(FAKE_PLUGIN.format(python=sys.executable))
        path.chmod(0o755)

    def calls(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def clear(self) -> None:
        self.record.unlink(missing_ok=True)

    def conflist(self, *types: str, version: str = "1.0.0", **top: Any) -> dict[str, Any]:
        plugins = [{"type": t, "record": str(self.record)} for t in types]
        return {"cniVersion": version, "name": "testnet", "plugins": plugins, **top}


@pytest.fixture
def plugins(tmp_path: Path) -> Plugins:
    return Plugins(tmp_path)


@pytest.fixture
def runtime(plugins: Plugins, tmp_path: Path) -> CniRuntime:
    return CniRuntime([str(tmp_path / "nowhere"), str(plugins.dir)], tmp_path / "cache")


RT = RuntimeConf("ctr1", "eth0", "/run/netns/fake", args=(("K8S_POD_NAME", "p1"), ("IgnoreUnknown", "true")))


def test_add_runs_plugins_in_order_passing_prev_result(plugins: Plugins, runtime: CniRuntime) -> None:
    """ADD runs each plugin in order, the first without prevResult, later ones with the previous result."""
    result = runtime.add(load_config(plugins.conflist("first", "second", "third")), RT)
    calls = plugins.calls()
    assert [c["plugin"] for c in calls] == ["first", "second", "third"]
    assert "prevResult" not in calls[0]["stdin"]
    assert calls[1]["stdin"]["prevResult"]["interfaces"] == [{"name": "first:eth0"}]
    assert calls[2]["stdin"]["prevResult"]["interfaces"] == [{"name": "first:eth0"}, {"name": "second:eth0"}]
    assert [i["name"] for i in result["interfaces"]] == ["first:eth0", "second:eth0", "third:eth0"]


def test_add_sets_the_spec_environment_and_injects_name_and_version(
    plugins: Plugins, runtime: CniRuntime
) -> None:
    """Plugins get the CNI_* environment and a config carrying the network name and cniVersion."""
    runtime.add(load_config(plugins.conflist("first")), RT)
    (call,) = plugins.calls()
    assert call["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "ctr1",
        "CNI_NETNS": "/run/netns/fake",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAME=p1;IgnoreUnknown=true",
        "CNI_PATH": ":".join(runtime.plugin_dirs),
    }
    assert call["stdin"]["name"] == "testnet"
    assert call["stdin"]["cniVersion"] == "1.0.0"


def test_runtime_config_is_the_declared_capabilities_the_caller_supplied(
    plugins: Plugins, runtime: CniRuntime
) -> None:
    """runtimeConfig holds the capabilities declared true that the caller gave; capabilities is dropped."""
    conf = plugins.conflist("first", "second")
    conf["plugins"][0]["capabilities"] = {"ips": True, "mac": False, "bandwidth": True}
    rt = RuntimeConf("ctr1", "eth0", "/run/netns/fake", capability_args={"ips": ["10.0.0.5/24"], "mac": "aa"})
    runtime.add(load_config(conf), rt)
    first, second = plugins.calls()
    assert first["stdin"]["runtimeConfig"] == {"ips": ["10.0.0.5/24"]}
    assert "capabilities" not in first["stdin"]
    assert "runtimeConfig" not in second["stdin"]


def test_config_args_become_every_plugins_args_and_are_cached_for_gc(
    plugins: Plugins, runtime: CniRuntime
) -> None:
    """config_args is inserted as each plugin's "args" (CONVENTIONS.md) on ADD; GC's DEL of a cached
    attachment, which has only the cache to go by, sends the same object."""
    config = load_config(plugins.conflist("first", "second"))
    pod = {"cni": {"labels": [{"key": "app", "value": "web"}]}}
    runtime.add(config, RuntimeConf("ctr1", "eth0", "/run/netns/fake", config_args=pod))
    runtime.add(config, RuntimeConf("ctr2", "eth0", "/run/netns/fake"))
    assert [c["stdin"].get("args") for c in plugins.calls()] == [pod, pod, None, None]
    plugins.clear()
    runtime.gc(config, valid=[("ctr2", "eth0")])
    deletes = [c for c in plugins.calls() if c["command"] == "DEL"]
    assert [(c["env"]["CNI_CONTAINERID"], c["stdin"].get("args")) for c in deletes] == [
        ("ctr1", pod),
        ("ctr1", pod),
    ]


def test_add_caches_the_final_result_per_network_container_and_ifname(
    plugins: Plugins, runtime: CniRuntime, tmp_path: Path
) -> None:
    """The final ADD result is stored in the cache dir under network-container-ifname."""
    result = runtime.add(load_config(plugins.conflist("first", "second")), RT)
    assert runtime.cached_result("testnet", "ctr1", "eth0") == result
    assert (tmp_path / "cache" / "results" / "testnet-ctr1-eth0").is_file()
    assert runtime.cached_result("testnet", "ctr1", "net1") is None
    (cached,) = runtime.cached_attachments("testnet")
    assert cached.runtime_conf() == RT


def test_a_cached_attachment_carries_the_configuration_it_was_added_with(
    plugins: Plugins, runtime: CniRuntime
) -> None:
    """The cache gives back the network configuration of the ADD, so GC can run after the config is gone."""
    raw = plugins.conflist("first", "second")
    runtime.add(load_config(raw), RT)
    (cached,) = runtime.cached_attachments("testnet")
    assert cached.network_config == load_config(raw).raw
    assert [p["type"] for p in cached.network_config["plugins"]] == ["first", "second"]


def test_del_runs_in_reverse_with_the_cached_result_and_drops_the_cache(
    plugins: Plugins, runtime: CniRuntime
) -> None:
    """DEL executes plugins last to first, each with prevResult = the cached final ADD result."""
    config = load_config(plugins.conflist("first", "second", "third"))
    result = runtime.add(config, RT)
    plugins.clear()
    runtime.delete(config, RT)
    calls = plugins.calls()
    assert [c["plugin"] for c in calls] == ["third", "second", "first"]
    assert all(c["stdin"]["prevResult"] == result for c in calls)
    assert all(c["env"]["CNI_COMMAND"] == "DEL" for c in calls)
    assert runtime.cached_result("testnet", "ctr1", "eth0") is None


def test_del_twice_and_del_without_add_succeed_without_prev_result(
    plugins: Plugins, runtime: CniRuntime
) -> None:
    """A second DEL (nothing cached) still calls every plugin, without prevResult, and succeeds."""
    config = load_config(plugins.conflist("first", "second"))
    runtime.add(config, RT)
    runtime.delete(config, RT)
    plugins.clear()
    runtime.delete(config, RuntimeConf("ctr1", "eth0"))
    calls = plugins.calls()
    assert [c["plugin"] for c in calls] == ["second", "first"]
    assert all("prevResult" not in c["stdin"] for c in calls)
    assert all("CNI_NETNS" not in c["env"] for c in calls)


def test_check_runs_in_order_with_the_cached_result(plugins: Plugins, runtime: CniRuntime) -> None:
    """CHECK executes plugins first to last with the cached ADD result as prevResult."""
    config = load_config(plugins.conflist("first", "second"))
    result = runtime.add(config, RT)
    plugins.clear()
    runtime.check(config, RT)
    calls = plugins.calls()
    assert [(c["plugin"], c["command"]) for c in calls] == [("first", "CHECK"), ("second", "CHECK")]
    assert all(c["stdin"]["prevResult"] == result for c in calls)


def test_check_is_refused_for_an_attachment_never_added(plugins: Plugins, runtime: CniRuntime) -> None:
    """CHECK without a cached ADD result raises NotAttached and calls no plugin."""
    with pytest.raises(NotAttached):
        runtime.check(load_config(plugins.conflist("first")), RT)
    assert plugins.calls() == []


def test_check_honours_disable_check(plugins: Plugins, runtime: CniRuntime) -> None:
    """With disableCheck the runtime calls no plugin for CHECK."""
    config = load_config(plugins.conflist("first", disableCheck=True))
    runtime.add(config, RT)
    plugins.clear()
    runtime.check(config, RT)
    assert plugins.calls() == []


def test_check_is_refused_below_version_0_4_0(plugins: Plugins, runtime: CniRuntime) -> None:
    """CHECK does not exist before 0.4.0: the runtime raises ConfigError."""
    config = load_config(plugins.conflist("first", version="0.3.1"))
    runtime.add(config, RT)
    with pytest.raises(ConfigError, match="CHECK"):
        runtime.check(config, RT)


def test_plugin_error_object_becomes_cni_plugin_error(plugins: Plugins, runtime: CniRuntime) -> None:
    """A plugin's CNI error object surfaces as CniPluginError with its code, msg, details and plugin."""
    conf = plugins.conflist("first", "second", "third")
    conf["plugins"][1]["fail"] = {"ADD": 11}
    with pytest.raises(CniPluginError) as caught:
        runtime.add(load_config(conf), RT)
    err = caught.value
    assert (err.code, err.msg, err.details, err.plugin) == (
        11,
        "second refused ADD",
        "detail of second",
        "second",
    )
    assert [c["plugin"] for c in plugins.calls()] == ["first", "second"]
    assert runtime.cached_result("testnet", "ctr1", "eth0") is None


def test_unstructured_plugin_failure_is_code_999_with_stderr(plugins: Plugins, runtime: CniRuntime) -> None:
    """A plugin failing without a JSON error object gives code 999 carrying its output and stderr."""
    conf = plugins.conflist("first")
    conf["plugins"][0]["fail"] = {"ADD": "garbage"}
    with pytest.raises(CniPluginError) as caught:
        runtime.add(load_config(conf), RT)
    assert caught.value.code == 999
    assert "not json" in caught.value.msg
    assert "panic: something broke" in caught.value.details


def test_missing_plugin_is_reported_with_the_search_path(plugins: Plugins, runtime: CniRuntime) -> None:
    """A type with no executable on the CNI path raises PluginNotFound naming the type."""
    with pytest.raises(PluginNotFound, match="absent"):
        runtime.add(load_config(plugins.conflist("first", "absent")), RT)


def test_version_negotiation_picks_the_highest_shared_version() -> None:
    """With cniVersions the highest version the runtime also speaks wins; unknown ones are ignored."""
    raw = {
        "cniVersion": "0.3.1",
        "cniVersions": ["0.4.0", "1.1.0", "9.0.0"],
        "name": "n",
        "plugins": [{"type": "x"}],
    }
    assert load_config(raw).cni_version == "1.1.0"
    assert load_config({**raw, "cniVersions": ["0.3.1", "1.0.0"]}).cni_version == "1.0.0"
    assert load_config({k: v for k, v in raw.items() if k != "cniVersions"}).cni_version == "0.3.1"
    with pytest.raises(ConfigError, match="no version"):
        load_config({**raw, "cniVersions": ["9.0.0"]})


def test_negotiated_version_is_what_plugins_receive(plugins: Plugins, runtime: CniRuntime) -> None:
    """Plugins receive the negotiated version as cniVersion, not the config's legacy cniVersion."""
    runtime.add(load_config(plugins.conflist("first", version="0.4.0", cniVersions=["0.4.0", "1.0.0"])), RT)
    (call,) = plugins.calls()
    assert call["stdin"]["cniVersion"] == "1.0.0"


def test_single_plugin_config_is_a_one_plugin_list() -> None:
    """A plain plugin config (no plugins key) loads as a list holding itself."""
    config = load_config(json.dumps({"cniVersion": "0.4.0", "name": "n", "type": "bridge", "bridge": "br0"}))
    assert config.plugin_types == ["bridge"]
    assert config.plugins[0]["bridge"] == "br0"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}, "name"),
        ({"cniVersion": "1.0.0", "name": "n", "plugins": []}, "plugins"),
        ({"cniVersion": "1.0.0", "name": "n", "plugins": [{"master": "x"}]}, "type"),
        ({"name": "n", "plugins": [{"type": "x"}]}, "cniVersion"),
        ({"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "x"}, {"type": "y"}]}, "chaining"),
    ],
)
def test_malformed_configs_are_rejected(raw: dict[str, Any], message: str) -> None:
    """A config without name, plugins, plugin type or version (or chaining before 0.3.0) is a ConfigError."""
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_gc_deletes_unlisted_cached_attachments_then_sends_gc(plugins: Plugins, runtime: CniRuntime) -> None:
    """GC DELs cached attachments missing from the valid list, keeps listed ones, then GCs every plugin."""
    config = load_config(plugins.conflist("first", "second", version="1.1.0"))
    keep = RuntimeConf("keep", "eth0", "/run/netns/a")
    stale = RuntimeConf("stale", "eth0", "/run/netns/b")
    runtime.add(config, keep)
    stale_result = runtime.add(config, stale)
    plugins.clear()
    runtime.gc(config, [("keep", "eth0")])
    calls = plugins.calls()
    dels = [c for c in calls if c["command"] == "DEL"]
    assert [(c["plugin"], c["env"]["CNI_CONTAINERID"]) for c in dels] == [
        ("second", "stale"),
        ("first", "stale"),
    ]
    assert dels[0]["stdin"]["prevResult"] == stale_result
    gcs = [c for c in calls if c["command"] == "GC"]
    assert [c["plugin"] for c in gcs] == ["first", "second"]
    expected = [{"containerID": "keep", "ifname": "eth0"}]
    for call in gcs:
        assert call["stdin"]["cni.dev/valid-attachments"] == expected
        assert call["stdin"]["cni.dev/attachments"] == expected
        assert set(call["env"]) == {"CNI_COMMAND", "CNI_PATH"}
    assert [c.container_id for c in runtime.cached_attachments("testnet")] == ["keep"]


def test_gc_below_1_1_0_only_deletes_stale_attachments(plugins: Plugins, runtime: CniRuntime) -> None:
    """For a 1.0.0 config GC still DELs unlisted cached attachments but sends no GC verb."""
    config = load_config(plugins.conflist("first"))
    runtime.add(config, RT)
    plugins.clear()
    runtime.gc(config, [])
    assert [c["command"] for c in plugins.calls()] == ["DEL"]
    assert runtime.cached_attachments() == []


def test_gc_honours_disable_gc(plugins: Plugins, runtime: CniRuntime) -> None:
    """With disableGC nothing is deleted and no plugin is called."""
    config = load_config(plugins.conflist("first", version="1.1.0", disableGC=True))
    runtime.add(config, RT)
    plugins.clear()
    runtime.gc(config, [])
    assert plugins.calls() == []
    assert len(runtime.cached_attachments()) == 1


def test_gc_continues_past_failures_and_reports_them_all(plugins: Plugins, runtime: CniRuntime) -> None:
    """A failing plugin GC does not stop the others; every failure is in the raised GcError."""
    conf = plugins.conflist("first", "second", "third", version="1.1.0")
    conf["plugins"][0]["fail"] = {"GC": 100}
    conf["plugins"][2]["fail"] = {"GC": 101}
    with pytest.raises(GcError) as caught:
        runtime.gc(load_config(conf), [])
    assert [c["plugin"] for c in plugins.calls()] == ["first", "second", "third"]
    codes = [e.code for e in caught.value.errors if isinstance(e, CniPluginError)]
    assert codes == [100, 101]


def test_status_asks_every_plugin_and_raises_the_first_failure(plugins: Plugins, runtime: CniRuntime) -> None:
    """STATUS goes to each plugin in order at 1.1.0; a code 50 answer is raised as CniPluginError."""
    config = load_config(plugins.conflist("first", "second", version="1.1.0"))
    runtime.status(config)
    assert [(c["plugin"], c["command"]) for c in plugins.calls()] == [
        ("first", "STATUS"),
        ("second", "STATUS"),
    ]
    conf = plugins.conflist("first", "second", version="1.1.0")
    conf["plugins"][1]["fail"] = {"STATUS": 50}
    with pytest.raises(CniPluginError) as caught:
        runtime.status(load_config(conf))
    assert (caught.value.code, caught.value.plugin) == (50, "second")


def test_status_is_skipped_below_1_1_0(plugins: Plugins, runtime: CniRuntime) -> None:
    """A pre-1.1.0 config gets no STATUS call (libcni skips it too)."""
    runtime.status(load_config(plugins.conflist("first", version="1.0.0")))
    assert plugins.calls() == []


def test_version_reports_the_plugins_supported_versions(plugins: Plugins, runtime: CniRuntime) -> None:
    """VERSION sends only CNI_COMMAND and returns the plugin's supportedVersions."""
    answer = runtime.version("first", "1.0.0")
    assert answer["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]
    assert plugins.calls() == []  # VERSION stdin has no record key: the plugin recorded nothing


def test_cli_add_prints_the_result_and_del_clears_the_cache(
    plugins: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cnitool-like CLI adds (printing the result JSON) and deletes through the same cache."""
    conf_file = tmp_path / "net.conflist"
    conf_file.write_text(json.dumps(plugins.conflist("first", "second")))
    common = ["--path", str(plugins.dir), "--cache-dir", str(tmp_path / "c"), "--container-id", "x1"]
    assert cni_runtime.main(["add", str(conf_file), "--netns", "podns", *common]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in printed["interfaces"]] == ["first:eth0", "second:eth0"]
    assert plugins.calls()[0]["env"]["CNI_NETNS"] == "/run/netns/podns"
    assert cni_runtime.main(["del", str(conf_file), *common]) == 0
    assert not (tmp_path / "c" / "results" / "testnet-x1-eth0").exists()


@pytest.mark.parametrize(
    ("flag", "value", "error"),
    [
        ("--config-args", "{oops", "error: --config-args: not JSON (Expecting property name"),
        ("--config-args", "[1]", "error: --config-args: must be a JSON object, got list"),
        ("--capability-args", '"ips"', "error: --capability-args: must be a JSON object, got str"),
    ],
)
def test_cli_refuses_json_flags_that_are_not_objects_and_runs_nothing(
    plugins: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, error: str
) -> None:
    conf_file = tmp_path / "net.conflist"
    conf_file.write_text(json.dumps(plugins.conflist("first")))
    argv = [
        "add",
        str(conf_file),
        "--path",
        str(plugins.dir),
        "--cache-dir",
        str(tmp_path / "c"),
        flag,
        value,
    ]
    assert cni_runtime.main(argv) == 1
    assert capsys.readouterr().err.startswith(error)
    assert plugins.calls() == []


def test_exec_context_holds_while_each_plugin_is_spawned(plugins: Plugins, tmp_path: Path) -> None:
    """The runtime enters exec_context once per plugin execution (how plugins run in the node netns)."""
    entered: list[str] = []

    @contextmanager
    def context() -> Iterator[None]:
        entered.append("in")
        yield
        entered.append("out")

    runtime = CniRuntime([str(plugins.dir)], tmp_path / "cache", exec_context=context)
    config = load_config(plugins.conflist("first", "second"))
    runtime.add(config, RT)
    runtime.delete(config, RT)
    assert entered == ["in", "out"] * 4
