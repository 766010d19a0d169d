"""The interpreter bundle: built from this machine's Python, installed into a host root, run there alone.

A node may have no Python and another C library, so the shims installed with ``--bundle`` must run in a root
that holds nothing but what the installer wrote: each such test runs them under ``chroot`` into the temporary
host root (with ``/proc`` mounted, as on any host). Installing is atomic and idempotent, an upgrade lands
beside the running version, and a damaged bundle is refused without touching the host.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from spiderpool_cni import install, pybundle
from spiderpool_tools import pybundle_build

ROOT = Path(__file__).resolve().parents[2]
SHIM_PACKAGE_FILES = {
    *(f"site/spiderpool_cni/{m}.py" for m in
      ("__init__", "shim", "ipam_main", "h2unary", "hpack", "wire", "cnijson", "codes", "spool")),
    "site/spiderpool_coordinator/__init__.py",
    "site/spiderpool_coordinator/shim.py",
}  # fmt: skip
HEAVY = ("json/", "asyncio/", "socket.py", "ssl.py", "subprocess.py", "logging/", "typing.py")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "pybundle"
    pybundle_build.build(install.default_interpreter(), out)
    return out


def in_root(
    root: Path, argv: Sequence[str], *, env: dict[str, str], stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` chrooted into ``root`` (in a private mount namespace with /proc mounted)."""
    (root / "proc").mkdir(exist_ok=True)
    script = 'mount -t proc proc "$0/proc" && exec /usr/sbin/chroot "$0" "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *argv],
        input=stdin, env=env, capture_output=True, timeout=30, check=False,
    )  # fmt: skip


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_the_bundle_holds_an_interpreter_with_its_libraries_and_only_what_the_shims_import(
    bundle: Path,
) -> None:
    """Binary, ELF loader and libc, the shims' modules exactly, and no heavy standard-library module."""
    manifest = pybundle.Manifest.load(bundle)
    files = set(manifest.files)
    assert {manifest.interpreter, manifest.loader, "lib/libc.so.6"} <= files
    assert (
        pybundle.read_interpreter((bundle / manifest.interpreter).read_bytes()) == pybundle.INTERP_PLACEHOLDER
    )
    site_sources = {f for f in files if f.startswith("site/") and f.endswith(".py")}
    assert site_sources == SHIM_PACKAGE_FILES
    stdlib = [f for f in files if f.startswith("lib/python")]
    assert not [f for f in stdlib if any(h in f for h in HEAVY)]
    assert f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/os.py" in files  # getpath's landmark
    assert files_under(bundle) == files | {pybundle.MANIFEST}
    pybundle.verify(bundle, manifest)


def test_the_shims_stdlib_imports_are_all_roots_of_the_bundle() -> None:
    """Every standard-library module a shim module imports (anywhere in it) is one the builder bundles."""
    own, foreign = pybundle_build.shim_modules()
    for path in own.values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            )  # fmt: skip
            for name in names:
                top = name.split(".")[0]
                assert top in foreign or top in pybundle_build.OWN_PACKAGES, (path, name)


def test_building_twice_gives_the_same_bundle(bundle: Path, tmp_path: Path) -> None:
    """The build is reproducible: the same inputs give the same id and the same bytes."""
    again = pybundle_build.build(install.default_interpreter(), tmp_path / "again")
    assert again == pybundle.Manifest.load(bundle)


def test_installed_shims_run_in_a_host_root_that_holds_nothing_else(bundle: Path, tmp_path: Path) -> None:
    """Chrooted into the host root, both shims answer VERSION, an ADD finds no agent (11), a DEL spools."""
    host = tmp_path / "host"
    done = install.install_from_bundle(str(bundle), str(host))
    assert done.bundle.directory.startswith(pybundle.DEFAULT_PYTHON_DIR + "/")
    env = {"CNI_COMMAND": "VERSION"}
    for name in ("spiderpool", "coordinator"):
        proc = in_root(host, [f"/opt/cni/bin/{name}"], env=env, stdin=b'{"cniVersion": "1.0.0"}')
        assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr
        assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"
    config = {"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "spiderpool"}}
    add = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}
    proc = in_root(host, ["/opt/cni/bin/spiderpool"], env=add, stdin=json.dumps(config).encode())
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 11, proc
    proc = in_root(host, ["/opt/cni/bin/spiderpool"], env=add | {"CNI_COMMAND": "DEL"},
                   stdin=json.dumps(config).encode())  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert len(list((host / "var/lib/spiderpool/agent/spool").iterdir())) == 1


def test_the_bundled_interpreter_uses_its_own_loader_libraries_and_standard_library(
    bundle: Path, tmp_path: Path
) -> None:
    """In the host root the interpreter maps only files of its version directory and its prefix is there."""
    host = tmp_path / "host"
    done = install.install_from_bundle(str(bundle), str(host))
    code = (
        "import sys, _json, _socket, traceback\n"
        "maps = {l.split()[-1] for l in open('/proc/self/maps') if '/' in l.split()[-1]}\n"
        "print(sys.prefix); print(*sorted(maps), sep='\\n')"
    )
    proc = in_root(host, [done.bundle.interpreter, "-IS", "-c", code], env={}, stdin=b"")
    assert proc.returncode == 0, proc.stderr
    prefix, *mapped = proc.stdout.decode().splitlines()
    assert prefix == done.bundle.directory
    outside = [
        m for m in mapped if not m.startswith(done.bundle.directory + "/") and not m.startswith("/proc")
    ]
    assert outside == [], outside


def test_reinstalling_leaves_the_version_in_place_and_renames_the_shims_over(
    bundle: Path, tmp_path: Path
) -> None:
    """A second install copies nothing (same directory inode) and renames each shim over, same text."""
    host = tmp_path / "host"
    first = install.install_from_bundle(str(bundle), str(host))
    version_dir = host / first.bundle.directory.lstrip("/")
    shim = host / "opt/cni/bin/spiderpool"
    before = (version_dir.stat().st_ino, shim.stat().st_ino, shim.read_text())
    second = install.install_from_bundle(str(bundle), str(host))
    assert (first.bundle.copied, second.bundle.copied) == (True, False)
    assert second.removed_versions == []
    after = (version_dir.stat().st_ino, shim.stat().st_ino, shim.read_text())
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] != before[1]
    assert files_under(host / "opt/spiderpool/python") == {
        f"{first.bundle.id}/{f}" for f in [*pybundle.Manifest.load(bundle).files, pybundle.MANIFEST]
    }


def _variant(bundle: Path, out: Path, marker: str) -> pybundle.Manifest:
    """A copy of ``bundle`` with one shim module changed: another version."""
    shutil.copytree(bundle, out)
    (out / pybundle.MANIFEST).unlink()
    with (out / "site/spiderpool_cni/codes.py").open("a") as fh:
        fh.write(f"# {marker}\n")
    manifest = pybundle.Manifest.load(bundle)
    return pybundle_build._write_manifest(out, manifest.python, manifest.interpreter, manifest.loader)


def test_an_upgrade_lands_beside_the_running_version_and_the_one_before_is_removed(
    bundle: Path, tmp_path: Path
) -> None:
    """v2 is installed next to v1 (still named by calls in flight); v3 removes v1 and keeps v2."""
    host = tmp_path / "host"
    v1 = install.install_from_bundle(str(bundle), str(host)).bundle.id
    v2 = _variant(bundle, tmp_path / "v2", "v2").id
    v3 = _variant(bundle, tmp_path / "v3", "v3").id
    python_dir = host / "opt/spiderpool/python"
    done = install.install_from_bundle(str(tmp_path / "v2"), str(host))
    assert done.removed_versions == []
    assert {p.name for p in python_dir.iterdir()} == {v1, v2}
    assert install.shim_bundle_id(host / "opt/cni/bin/coordinator", pybundle.DEFAULT_PYTHON_DIR) == v2
    done = install.install_from_bundle(str(tmp_path / "v3"), str(host))
    assert done.removed_versions == [v1]
    assert {p.name for p in python_dir.iterdir()} == {v2, v3}
    proc = in_root(
        host, ["/opt/cni/bin/spiderpool"], env={"CNI_COMMAND": "VERSION"}, stdin=b'{"cniVersion": "1.1.0"}'
    )
    assert proc.returncode == 0, proc.stderr


def test_a_damaged_installed_version_is_copied_again(bundle: Path, tmp_path: Path) -> None:
    """An installed file that no longer matches the manifest makes the next install replace the version."""
    host = tmp_path / "host"
    first = install.install_from_bundle(str(bundle), str(host))
    damaged = host / first.bundle.directory.lstrip("/") / "site/spiderpool_cni/shim.py"
    damaged.write_text("broken")
    again = install.install_from_bundle(str(bundle), str(host))
    assert again.bundle.copied
    assert damaged.read_bytes() == (bundle / "site/spiderpool_cni/shim.py").read_bytes()
    assert [p.name for p in (host / "opt/spiderpool/python").iterdir()] == [first.bundle.id]


def test_a_damaged_bundle_is_refused_and_the_host_is_left_alone(bundle: Path, tmp_path: Path) -> None:
    """A bundle file that differs from its manifest stops the install before anything is written."""
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "site/spiderpool_cni/wire.py").write_text("tampered")
    host = tmp_path / "host"
    with pytest.raises(install.InstallError, match=r"wire\.py differs from the manifest"):
        install.install_from_bundle(str(broken), str(host))
    assert not host.exists()
    assert install.main(["--bundle", str(broken), "--host-root", str(host)]) == 1


def test_the_command_installs_bundle_and_shims_into_the_host_root(bundle: Path, tmp_path: Path) -> None:
    """spiderpool-install-cni --bundle --host-root says what it did; the shims name the host's paths."""
    host = tmp_path / "host"
    script = Path(sys.executable).parent / "spiderpool-install-cni"
    argv = [str(script), "--bundle", str(bundle), "--host-root", str(host), "--bin-dir", "/opt/cni/bin"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    bundle_id = pybundle.Manifest.load(bundle).id
    version_dir = host / "opt/spiderpool/python" / bundle_id
    assert out == [
        f"installed {version_dir} (bundle {bundle_id})",
        f"installed {host}/opt/cni/bin/spiderpool",
        f"installed {host}/opt/cni/bin/coordinator",
    ]
    text = (host / "opt/cni/bin/spiderpool").read_text()
    assert text.startswith(f"#!/opt/spiderpool/python/{bundle_id}/bin/python")
    assert f"sys.path[0:0] = ['/opt/spiderpool/python/{bundle_id}/site']" in text
    assert stat.S_IMODE((host / "opt/cni/bin/spiderpool").stat().st_mode) == 0o755
    again = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    assert again[0] == f"unchanged {version_dir} (bundle {bundle_id})"


@pytest.mark.parametrize(
    "argv",
    [["--bundle", "B", "--python", sys.executable], ["--host-root", "/x"], ["--python-dir", "/x"]],
    ids=["python-and-bundle", "host-root-alone", "python-dir-alone"],
)
def test_options_that_do_not_go_together_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--python with --bundle, or --host-root/--python-dir without --bundle, is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        install.main(argv)
    assert exc.value.code == 2
    assert "spiderpool-install-cni: error:" in capsys.readouterr().err


def test_the_loader_path_is_written_in_place_and_a_long_one_refused(bundle: Path) -> None:
    """set_interpreter keeps the file's size and layout; a path longer than the placeholder is refused."""
    data = (bundle / "bin").iterdir().__next__().read_bytes()
    patched = pybundle.set_interpreter(data, "/opt/x/lib/ld.so")
    assert len(patched) == len(data)
    assert pybundle.read_interpreter(patched) == "/opt/x/lib/ld.so"
    assert sum(a != b for a, b in zip(data, patched, strict=True)) <= len(pybundle.INTERP_PLACEHOLDER)
    with pytest.raises(pybundle.BundleError, match="install into a shorter directory"):
        pybundle.set_interpreter(data, "/" + "y" * 400)
    with pytest.raises(pybundle.BundleError, match="not an ELF file"):
        pybundle.set_interpreter(b"#!/bin/sh\n", "/x")


def test_an_install_directory_too_long_for_the_loader_is_refused(bundle: Path, tmp_path: Path) -> None:
    """A --python-dir whose loader path would not fit is refused before anything is written."""
    with pytest.raises(install.InstallError, match="too long"):
        install.install_from_bundle(str(bundle), str(tmp_path / "h"), python_dir="/" + "d" * 300)
    assert not (tmp_path / "h").exists()


def test_the_builder_runs_as_a_command(tmp_path: Path) -> None:
    """python -m spiderpool_tools.pybundle_build --out DIR builds a bundle whose manifest verifies."""
    out = tmp_path / "b"
    proc = subprocess.run(
        [sys.executable, "-m", "spiderpool_tools.pybundle_build", "--out", str(out)],
        capture_output=True, text=True, check=False, cwd=ROOT, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = pybundle.Manifest.load(out)
    assert proc.stdout.startswith(f"built {out}: bundle {manifest.id}, {len(manifest.files)} files")
