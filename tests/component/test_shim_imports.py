"""The installed shims import only light standard-library modules on every path.

A shim runs once per CNI call; ``json`` alone costs ~8 ms per exec (it pulls in ``re`` and
``enum``), grpcio ~80 ms (measured on the CI machines). Each installed shim is run
under ``python -X importtime -IS`` on its common paths, and the test fails when a module
outside the standard library and our two shim packages, or a known-heavy stdlib module,
is imported. Nothing is timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from spiderpool_cni.install import install

# Heavy or pointless on a shim's path; each has a built-in or C replacement
# (posix for os, _socket for socket, _json for json, binascii for base64).
FORBIDDEN = {
    "json",
    "re",
    "enum",
    "socket",
    "selectors",
    "asyncio",
    "grpc",
    "google",
    "structlog",
    "base64",
    "typing",
    "traceback",
    "os",
    "urllib",
    "logging",
    "subprocess",
    "collections",
    "functools",
    "dataclasses",
    "struct",
    "argparse",
    "pathlib",
    "__future__",
}
OURS = {"spiderpool_cni", "spiderpool_coordinator"}


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cnibin")
    install(str(path))
    return path


def imported_modules(executable: Path, env: dict[str, str], stdin: bytes) -> tuple[set[str], bytes]:
    """Run the installed shim under -X importtime with its shebang's interpreter."""
    shebang = executable.read_text().splitlines()[0]
    interpreter, flags = shebang[2:].split()
    assert flags == "-IS"
    proc = subprocess.run(
        [interpreter, "-X", "importtime", "-IS", str(executable)],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    modules = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line and "imported package" not in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert modules, proc.stderr
    return modules, proc.stdout


def check(modules: set[str], shim_module: str) -> None:
    tops = {name.split(".")[0] for name in modules}
    assert not tops & FORBIDDEN, f"forbidden imports: {sorted(tops & FORBIDDEN)}"
    foreign = {t for t in tops if t not in sys.stdlib_module_names and t not in OURS}
    assert not foreign, f"non-stdlib imports: {sorted(foreign)}"
    coordinator_modules = {m for m in modules if m.startswith("spiderpool_coordinator.")}
    assert coordinator_modules <= {"spiderpool_coordinator.shim"}, coordinator_modules
    assert shim_module in modules


CASES = {
    "version": ({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}'),
    "add-dead-socket": (
        {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"},
        b'{"cniVersion": "1.0.0", "name": "n", "ipam_unix_socket_path": "/nonexistent/a.sock",'
        b' "ipam": {"ipam_unix_socket_path": "/nonexistent/a.sock"}}',
    ),
    "malformed-json": ({"CNI_COMMAND": "ADD"}, b'{"cniVersion": "1.0.0", "name": "\x01"}'),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    ("name", "entry"),
    [("spiderpool", "spiderpool_cni.ipam_main"), ("coordinator", "spiderpool_coordinator.shim")],
)
def test_shim_imports_only_light_stdlib_modules(
    bin_dir: Path, tmp_path: Path, case: str, name: str, entry: str
) -> None:
    """VERSION, ADD against a dead socket and malformed stdin import nothing heavy or foreign."""
    env, stdin = CASES[case]
    modules, stdout = imported_modules(bin_dir / name, env, stdin)
    check(modules, entry)
    answer = json.loads(stdout)
    if case == "version":
        assert answer["cniVersion"] == "1.0.0"
    else:
        assert answer["code"] == (11 if case == "add-dead-socket" else 6)


@pytest.mark.parametrize(
    ("name", "entry"),
    [("spiderpool", "spiderpool_cni.ipam_main"), ("coordinator", "spiderpool_coordinator.shim")],
)
def test_spooling_a_del_imports_only_light_stdlib_modules(
    bin_dir: Path, tmp_path: Path, name: str, entry: str
) -> None:
    """DEL against a dead socket, which writes the DEL spool file, imports nothing heavy or foreign."""
    spool = str(tmp_path / "spool")
    sock = str(tmp_path / "none.sock")
    config = {"cniVersion": "1.0.0", "name": "n", "ipam_unix_socket_path": sock, "del_spool_dir": spool,
              "ipam": {"ipam_unix_socket_path": sock, "del_spool_dir": spool}}  # fmt: skip
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"}
    modules, stdout = imported_modules(bin_dir / name, env, json.dumps(config).encode())
    check(modules, entry)
    assert "spiderpool_cni.spool" in modules
    assert stdout == b""
    assert len(list((tmp_path / "spool").iterdir())) == 1


def test_the_check_detects_a_forbidden_import(tmp_path: Path) -> None:
    """The import check itself fails for a script that imports json (so it can fail)."""
    script = tmp_path / "bad"
    script.write_text(f"#!{sys.executable} -IS\nimport json\n")
    modules, _ = imported_modules(script, {}, b"")
    with pytest.raises(AssertionError, match="forbidden imports"):
        check(modules, "json")
