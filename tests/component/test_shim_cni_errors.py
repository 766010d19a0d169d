"""What the installed shims print when the call cannot reach the agent or is malformed.

Every case runs the installed executable as a CNI runtime would (env + stdin, subprocess)
and checks that stdout is exactly one JSON object, spec-shaped (``{cniVersion, code, msg,
details}`` for errors), that the exit code says the same, and that no traceback reaches
stdout. VERSION is answered locally; bad stdin (6) and a bad command (4) never contact the
agent; an unreachable agent is "try again later" (11), or "not available" (50) for STATUS,
except on DEL, which is spooled on the node and answered with success.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from spiderpool_cni import codes, shim
from spiderpool_cni.install import install

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cnibin")
    install(str(path))
    return path


def run(executable: Path, env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any], bytes]:
    """Run a shim; return its exit code, its stdout parsed as one JSON object, and stderr."""
    proc = subprocess.run(
        [str(executable)], input=stdin, env=env, capture_output=True, timeout=30, check=False
    )
    assert b"Traceback" not in proc.stdout
    assert proc.stdout.endswith(b"\n")
    obj = json.loads(proc.stdout)  # exactly one document, or this raises
    assert isinstance(obj, dict)
    return proc.returncode, obj, proc.stderr


def assert_cni_error(rc: int, obj: dict[str, Any], code: int, cni_version: str = "1.1.0") -> None:
    assert rc == 1
    assert set(obj) == {"cniVersion", "code", "msg", "details"}
    assert obj["code"] == code
    assert obj["cniVersion"] == cni_version
    assert isinstance(obj["msg"], str)
    assert obj["msg"]


def add_env(**extra: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/p",
        "CNI_IFNAME": "eth0",
        **extra,
    }


def dead_config(tmp_path: Path, cni_version: str = "1.0.0") -> bytes:
    sock = str(tmp_path / "no-agent.sock")
    return json.dumps(
        {
            "cniVersion": cni_version,
            "name": "n",
            "ipam_unix_socket_path": sock,
            "del_spool_dir": str(tmp_path / "spool"),
            "logOptions": {"logFile": str(tmp_path / "coordinator.log")},
            "ipam": {
                "type": "spiderpool",
                "ipam_unix_socket_path": sock,
                "log_file_path": str(tmp_path / "ipam.log"),
                "del_spool_dir": str(tmp_path / "spool"),
            },
        }
    ).encode()


SHIMS = ["spiderpool", "coordinator"]


@pytest.mark.parametrize("name", SHIMS)
@pytest.mark.parametrize(
    ("stdin", "details"),
    [
        (b"", "empty input"),
        (b"   \n", "empty input"),
        (b"not json", "expecting a JSON value"),
        (b'{"cniVersion": "1.0.0",', "Expecting property name"),
        (b'{"name": "\x01"}', "Invalid control character"),
        (b'{"a": NaN}', "invalid JSON constant NaN"),
        (b"{} {}", "extra data"),
        (b'{"name": "\xff"}', "not UTF-8"),
        (b"[1, 2]", "got an array"),
        (b'"a string"', "got a string"),
        (b"42", "got a number"),
        (b"null", "got null"),
    ],
)
def test_stdin_that_is_not_a_json_object_is_a_decoding_failure(
    bin_dir: Path, name: str, stdin: bytes, details: str
) -> None:
    """Stdin that is empty, malformed or not an object gives code 6 with details saying why."""
    rc, obj, stderr = run(bin_dir / name, add_env(), stdin)
    assert_cni_error(rc, obj, codes.DECODING_FAILURE)
    assert details in obj["details"]
    assert stderr == b""


@pytest.mark.parametrize("name", SHIMS)
@pytest.mark.parametrize(("env", "fragment"), [({"CNI_COMMAND": "ATTACH"}, "ATTACH"), ({}, "not set")])
def test_unknown_or_missing_command_is_invalid_environment(
    bin_dir: Path, tmp_path: Path, name: str, env: dict[str, str], fragment: str
) -> None:
    """An unknown or absent CNI_COMMAND gives code 4 and carries the request's cniVersion."""
    rc, obj, _ = run(bin_dir / name, env, dead_config(tmp_path, "0.4.0"))
    assert_cni_error(rc, obj, codes.INVALID_ENVIRONMENT, "0.4.0")
    assert fragment in obj["msg"]


@pytest.mark.parametrize("name", SHIMS)
@pytest.mark.parametrize("version", [*VERSIONS, "0.2.0"])
def test_version_echoes_the_request_and_lists_supported_versions(
    bin_dir: Path, name: str, version: str
) -> None:
    """VERSION is answered without the agent: the requested cniVersion and every supported one."""
    rc, obj, _ = run(bin_dir / name, {"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": version}).encode())
    assert rc == 0
    assert obj == {"cniVersion": version, "supportedVersions": VERSIONS}


def test_version_with_empty_stdin_answers_the_current_version(bin_dir: Path) -> None:
    """VERSION with nothing on stdin reports 1.1.0 rather than failing (runtimes probe plugins so)."""
    rc, obj, _ = run(bin_dir / "spiderpool", {"CNI_COMMAND": "VERSION"}, b"")
    assert (rc, obj["cniVersion"], obj["supportedVersions"]) == (0, "1.1.0", VERSIONS)


def test_version_with_malformed_stdin_is_a_decoding_failure(bin_dir: Path) -> None:
    """VERSION with stdin that is not a JSON object gives code 6."""
    rc, obj, _ = run(bin_dir / "coordinator", {"CNI_COMMAND": "VERSION"}, b"[]")
    assert_cni_error(rc, obj, codes.DECODING_FAILURE)


@pytest.mark.parametrize("name", SHIMS)
@pytest.mark.parametrize("verb", ["ADD", "CHECK", "GC"])
def test_unreachable_agent_is_try_again_later(bin_dir: Path, tmp_path: Path, name: str, verb: str) -> None:
    """With no agent on the configured socket, ADD, CHECK and GC give code 11 naming the socket and
    spool nothing (only DEL is spooled)."""
    rc, obj, _ = run(bin_dir / name, add_env(CNI_COMMAND=verb), dead_config(tmp_path))
    assert_cni_error(rc, obj, codes.TRY_AGAIN_LATER, "1.0.0")
    socket_path = tmp_path / "no-agent.sock"
    assert obj["msg"] == f"spiderpool-agent unreachable at {socket_path}: [Errno 2] No such file or directory"
    assert not (tmp_path / "spool").exists()


def run_silent(executable: Path, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(
        [str(executable)], input=stdin, env=env, capture_output=True, timeout=30, check=False
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(("name", "plugin"), [("spiderpool", "ipam"), ("coordinator", "coordinator")])
def test_del_with_the_agent_unreachable_is_spooled_and_succeeds(
    bin_dir: Path, tmp_path: Path, name: str, plugin: str
) -> None:
    """With no agent, DEL exits 0 printing nothing and leaves exactly one spool file (0600, in a 0700
    directory, no temporary left) holding the verb, the container ID, the CNI environment and the
    stdin config byte for byte; the log line names the file."""
    stdin = dead_config(tmp_path)
    env = add_env(CNI_COMMAND="DEL", CNI_ARGS="K8S_POD_UID=u-1;IgnoreUnknown=1")
    rc, stdout, stderr = run_silent(bin_dir / name, env, stdin)
    assert (rc, stdout, stderr) == (0, b"", b"")
    spool_dir = tmp_path / "spool"
    files = sorted(spool_dir.iterdir())
    assert [f.suffix for f in files] == [".del"]
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    content = json.loads(files[0].read_bytes())
    assert content["format"] == 1
    assert (content["plugin"], content["command"], content["containerID"], content["ifname"]) == (
        plugin, "DEL", "c1", "eth0",
    )  # fmt: skip
    assert content["env"] == env
    assert content["config"].encode() == stdin
    assert "unreachable" in content["reason"]
    log = (tmp_path / ("ipam.log" if plugin == "ipam" else "coordinator.log")).read_text()
    assert "result=ok" in log
    assert f"spooled={json.dumps(str(files[0]))}" in log


@pytest.mark.parametrize("name", SHIMS)
def test_del_that_cannot_be_spooled_is_still_try_again_later(
    bin_dir: Path, tmp_path: Path, name: str
) -> None:
    """A spool directory that cannot be created (a file stands in its way) makes DEL answer code 11
    naming both the unreachable agent and the spool failure: a DEL is never answered with success
    unless it is recorded."""
    (tmp_path / "spool").write_text("in the way")
    rc, obj, _ = run(bin_dir / name, add_env(CNI_COMMAND="DEL"), dead_config(tmp_path))
    assert_cni_error(rc, obj, codes.TRY_AGAIN_LATER, "1.0.0")
    assert "unreachable" in obj["msg"]
    assert "cannot spool the DEL" in obj["msg"]


@pytest.mark.parametrize("name", SHIMS)
@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CNI_CONTAINERID": ""}, "CNI_CONTAINERID"),
        ({"CNI_IFNAME": ""}, "CNI_IFNAME"),
        ({"CNI_CONTAINERID": "-bad id"}, "invalid characters"),
    ],
)
def test_del_without_a_usable_attachment_is_refused_rather_than_spooled(
    bin_dir: Path, tmp_path: Path, name: str, env: dict[str, str], fragment: str
) -> None:
    """A DEL with no agent and no (or a malformed) container ID or interface gets code 4, as the agent
    would answer, and nothing is spooled."""
    rc, obj, _ = run(bin_dir / name, add_env(CNI_COMMAND="DEL", **env), dead_config(tmp_path))
    assert_cni_error(rc, obj, codes.INVALID_ENVIRONMENT, "1.0.0")
    assert fragment in obj["msg"]
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize("name", SHIMS)
@pytest.mark.parametrize("value", ["relative/spool", 42])
def test_spool_dir_must_be_an_absolute_path(bin_dir: Path, tmp_path: Path, name: str, value: object) -> None:
    """``del_spool_dir`` that is not an absolute path string is code 7 for every verb."""
    config = json.loads(dead_config(tmp_path))
    config["del_spool_dir"] = config["ipam"]["del_spool_dir"] = value
    rc, obj, _ = run(bin_dir / name, add_env(CNI_COMMAND="DEL"), json.dumps(config).encode())
    assert_cni_error(rc, obj, codes.INVALID_CONFIG, "1.0.0")
    assert "del_spool_dir must be an absolute path" in obj["msg"]


@pytest.mark.parametrize("name", SHIMS)
def test_unreachable_agent_on_status_is_not_available(bin_dir: Path, tmp_path: Path, name: str) -> None:
    """STATUS with no agent gives code 50: the plugin cannot serve ADD."""
    rc, obj, _ = run(bin_dir / name, {"CNI_COMMAND": "STATUS"}, dead_config(tmp_path, "1.1.0"))
    assert_cni_error(rc, obj, codes.NOT_AVAILABLE, "1.1.0")


def test_default_socket_is_used_when_the_config_names_none(bin_dir: Path) -> None:
    """Without ipam_unix_socket_path the shim tries /var/run/spidernet/spiderpool.sock."""
    config = (
        b'{"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "spiderpool", "log_file_path": "/dev/null"}}'
    )
    if Path("/var/run/spidernet/spiderpool.sock").exists():
        pytest.fail("a real agent socket exists on this machine; the test needs it absent")
    rc, obj, _ = run(bin_dir / "spiderpool", add_env(), config)
    assert_cni_error(rc, obj, codes.TRY_AGAIN_LATER, "1.0.0")
    assert "/var/run/spidernet/spiderpool.sock" in obj["msg"]


@pytest.mark.parametrize(
    ("name", "log_name"), [("spiderpool", "ipam.log"), ("coordinator", "coordinator.log")]
)
def test_each_call_appends_one_line_to_the_configured_log(
    bin_dir: Path, tmp_path: Path, name: str, log_name: str
) -> None:
    """The shim logs one line per call to its configured file (never stdout), creating the file."""
    for _ in range(2):
        run(bin_dir / name, add_env(), dead_config(tmp_path))
    lines = (tmp_path / log_name).read_text().splitlines()
    assert len(lines) == 2
    assert all(
        'command="ADD"' in line and "code=11" in line and 'container_id="c1"' in line for line in lines
    )


def log_keys(line: str) -> dict[str, str]:
    """The ``key=value`` pairs of a shim log line, quoted values decoded."""
    pairs = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)
    return {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}


@pytest.mark.parametrize(
    ("name", "log_name", "rpc"),
    [("spiderpool", "ipam.log", "IpamAdd"), ("coordinator", "coordinator.log", "CoordinatorAdd")],
)
def test_the_log_line_names_the_call_with_the_services_log_keys(
    bin_dir: Path, tmp_path: Path, name: str, log_name: str, rpc: str
) -> None:
    """The shim's line carries rpc, pod (namespace/name), container_id, ifname and network, as services do."""
    env = add_env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=u1")
    run(bin_dir / name, env, dead_config(tmp_path))
    keys = log_keys((tmp_path / log_name).read_text())
    assert {k: keys[k] for k in ("rpc", "pod", "container_id", "ifname", "network", "code")} == {
        "rpc": rpc,
        "pod": "team-a/web-0",
        "container_id": "c1",
        "ifname": "eth0",
        "network": "n",
        "code": "11",
    }


def test_the_log_line_leaves_pod_empty_without_both_namespace_and_name(bin_dir: Path, tmp_path: Path) -> None:
    """A call without K8S_POD_NAMESPACE and K8S_POD_NAME (not from a kubelet) logs an empty pod."""
    run(bin_dir / "spiderpool", add_env(CNI_ARGS="K8S_POD_NAME=web-0"), dead_config(tmp_path))
    assert log_keys((tmp_path / "ipam.log").read_text())["pod"] == ""


def test_an_unwritable_log_never_fails_the_call(bin_dir: Path, tmp_path: Path) -> None:
    """A log path that cannot be created (a file as its directory) leaves the answer unchanged."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = json.dumps(
        {"cniVersion": "1.0.0", "ipam": {"ipam_unix_socket_path": str(tmp_path / "x.sock"),
                                         "log_file_path": str(blocker / "sub" / "ipam.log")}}
    ).encode()  # fmt: skip
    rc, obj, stderr = run(bin_dir / "spiderpool", add_env(), config)
    assert_cni_error(rc, obj, codes.TRY_AGAIN_LATER, "1.0.0")
    assert stderr == b""


def test_log_directory_is_created(bin_dir: Path, tmp_path: Path) -> None:
    """A log path in directories that do not exist yet gets them created."""
    log = tmp_path / "a" / "b" / "ipam.log"
    config = json.dumps(
        {
            "cniVersion": "1.0.0",
            "ipam": {"ipam_unix_socket_path": str(tmp_path / "x.sock"), "log_file_path": str(log)},
        }
    ).encode()
    run(bin_dir / "spiderpool", add_env(), config)
    assert "code=11" in log.read_text()


def test_unexpected_exception_prints_internal_error_json_and_logs_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A crash inside the shim prints code 999 as JSON on fd 1; the traceback goes to the log only."""

    def boom(kind: str, env: dict[str, str], stdin: bytes) -> shim.Reply:
        raise RuntimeError("kaput")

    log = tmp_path / "crash.log"
    monkeypatch.setattr(shim, "handle", boom)
    monkeypatch.setattr(shim, "_read_stdin", lambda: b"{}")
    monkeypatch.setitem(shim.DEFAULT_LOG, "ipam", str(log))
    assert shim.run("ipam") == 1
    out = capfd.readouterr().out
    obj = json.loads(out)
    assert obj["code"] == codes.INTERNAL
    assert "RuntimeError: kaput" in obj["msg"]
    assert "Traceback" not in out
    assert "Traceback" in log.read_text()
