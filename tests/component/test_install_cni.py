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
