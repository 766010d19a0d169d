"""``spiderpool-install-cni`` writes two self-contained shim executables, atomically.

The runtime execs the files directly, so their shebang must name a real interpreter binary
with the single option ``-IS`` (never a version-manager shell script), they must be
executable, and re-installing must replace them whole.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from spiderpool_cni import install


def test_cli_writes_both_shims_with_a_real_interpreter_shebang(tmp_path: Path) -> None:
    """The console script creates --bin-dir, writes spiderpool and coordinator 0755, and says so."""
    bin_dir = tmp_path / "opt" / "cni" / "bin"
    script = Path(sys.executable).parent / "spiderpool-install-cni"
    proc = subprocess.run(
        [str(script), "--bin-dir", str(bin_dir)], capture_output=True, text=True, check=True
    )
    assert proc.stdout.splitlines() == [
        f"installed {bin_dir / 'spiderpool'}",
        f"installed {bin_dir / 'coordinator'}",
    ]
    for name in ("spiderpool", "coordinator"):
        path = bin_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        first = path.read_text().splitlines()[0]
        interpreter, flags = first.removeprefix("#!").split(" ")
        assert flags == "-IS"
        assert os.path.isabs(interpreter)
        assert Path(interpreter).read_bytes()[:4] == b"\x7fELF"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["coordinator", "spiderpool"]  # no temp files left


def test_installed_shims_run_without_site_packages(tmp_path: Path) -> None:
    """Each installed file answers VERSION when executed directly, with an empty environment otherwise."""
    install.install(str(tmp_path))
    for name in ("spiderpool", "coordinator"):
        proc = subprocess.run(
            [str(tmp_path / name)], input=b'{"cniVersion": "0.3.1"}', env={"CNI_COMMAND": "VERSION"},
            capture_output=True, check=False,
        )  # fmt: skip
        assert (proc.returncode, proc.stderr) == (0, b"")
        assert proc.stdout.startswith(b'{"cniVersion": "0.3.1", "supportedVersions": [')


def test_reinstall_replaces_the_file_rather_than_rewriting_it(tmp_path: Path) -> None:
    """A second install swaps in a new inode, so a runtime executing the old file never reads half of one."""
    install.install(str(tmp_path))
    before = (tmp_path / "spiderpool").stat().st_ino
    install.install(str(tmp_path))
    assert (tmp_path / "spiderpool").stat().st_ino != before


def test_a_shell_script_interpreter_is_refused(tmp_path: Path) -> None:
    """A version-manager shim (a shell script) is not accepted as the shebang interpreter."""
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\nexec python3 "$@"\n')
    fake.chmod(0o755)
    with pytest.raises(install.InstallError, match="not an interpreter binary"):
        install.install(str(tmp_path / "bin"), str(fake))
    assert not (tmp_path / "bin").exists()
    assert install.main(["--bin-dir", str(tmp_path / "bin"), "--python", str(fake)]) == 1


def test_package_roots_make_both_packages_importable() -> None:
    """The sys.path entries written into the shims hold spiderpool_cni and spiderpool_coordinator."""
    roots = install.package_roots()
    assert any((Path(root) / "spiderpool_cni" / "shim.py").exists() for root in roots)
    assert any((Path(root) / "spiderpool_coordinator" / "shim.py").exists() for root in roots)


def _candidate(path: str, version: tuple[int, int], shared: bool, extensions: int) -> install.Candidate:
    return install.Candidate(path, version, shared, extensions)


def test_choose_prefers_the_interpreter_with_the_fewest_shared_objects_to_load() -> None:
    """A build with libpython linked in beats a shared-libpython one; then fewer extension modules;
    a tie keeps the earlier (the running interpreter); a too-old one is never chosen."""
    shared = _candidate("/pyenv/python3.11", (3, 11), True, 2)
    static = _candidate("/usr/bin/python3.11", (3, 11), False, 1)
    static_more_so = _candidate("/usr/local/bin/python3.12", (3, 12), False, 2)
    old = _candidate("/usr/bin/python3.9", (3, 9), False, 0)
    assert install.choose([shared, static]) == static
    assert install.choose([static_more_so, static]) == static
    assert install.choose([static, _candidate("/other", (3, 13), False, 1)]) == static
    assert install.choose([shared, old]) == shared
    assert install.choose([old]) is None
    assert install.choose([]) is None


def test_probe_reports_what_the_interpreter_is() -> None:
    """The probe runs the interpreter with -IS and reads its version and linkage; a non-Python fails."""
    me = install.probe(install.real_interpreter())
    assert me is not None
    assert me.version == sys.version_info[:2]
    maps = Path("/proc/self/maps").read_text()
    assert me.shared_libpython == ("libpython" in maps)
    assert install.probe("/bin/true") is None
    assert install.probe("/nonexistent/python3") is None


def test_default_interpreter_is_the_cheapest_supported_candidate_here() -> None:
    """Whatever this machine has, the default shebang is no costlier to start than any candidate."""
    chosen = install.probe(install.default_interpreter())
    assert chosen is not None
    assert chosen.version >= install.MIN_VERSION
    for path in (install.real_interpreter(), *install.SYSTEM_INTERPRETERS):
        if os.path.exists(path):
            other = install.probe(os.path.realpath(path))
            if other is not None and other.version >= install.MIN_VERSION:
                assert chosen.start_cost <= other.start_cost


def test_an_explicit_python_wins_over_the_default(tmp_path: Path) -> None:
    """--python names the shebang's interpreter even when another would start faster."""
    me = install.real_interpreter()
    install.install(str(tmp_path), me)
    assert (tmp_path / "spiderpool").read_text().splitlines()[0] == f"#!{me} -IS"
