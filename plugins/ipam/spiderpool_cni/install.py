"""``spiderpool-install-cni``: write the two shim executables into a CNI bin directory.

The runtime execs ``DIR/spiderpool`` (IPAM) and ``DIR/coordinator`` once per CNI call, so
each is a few lines of Python whose shebang names the real interpreter binary with
``-IS`` (isolated, no site-packages: nothing but the standard library and our two
stdlib-only packages is importable, and start-up stays near 7 ms). A version-manager shim
(a shell script, ~80 ms per start) is refused, and Linux passes the shebang's options as
one argument, hence the single ``-IS``. The file puts the directories holding
``spiderpool_cni`` and ``spiderpool_coordinator`` first on ``sys.path`` and calls the
entry, then leaves with ``posix._exit`` (the shim writes fd 1 directly, so nothing is
left to flush, and interpreter finalization would cost more than a millisecond). Files
are replaced atomically (temporary file + rename) so a runtime never executes a
half-written plugin.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import spiderpool_coordinator

import spiderpool_cni

DEFAULT_BIN_DIR = "/opt/cni/bin"
ENTRIES = {
    "spiderpool": ("spiderpool_cni.ipam_main", "the spiderpool IPAM plugin"),
    "coordinator": ("spiderpool_coordinator.shim", "the spiderpool coordinator plugin"),
}


class InstallError(Exception):
    """The shims cannot be installed as asked (no usable interpreter, unwritable directory)."""


def real_interpreter(candidate: str | None = None) -> str:
    """The absolute path of a real Python binary (ELF), never a shell-script shim."""
    path = os.path.realpath(candidate or sys.executable)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InstallError(f"cannot read the interpreter {path}: {exc}") from None
    if magic != b"\x7fELF":
        raise InstallError(
            f"{path} is not an interpreter binary (a version-manager shim?); pass --python with the real one"
        )
    return path


def package_roots() -> list[str]:
    """The directories to put on ``sys.path`` so both shim packages import, in order."""
    roots: list[str] = []
    for package in (spiderpool_cni, spiderpool_coordinator):
        root = str(Path(package.__file__ or "").resolve().parent.parent)
        if root not in roots:
            roots.append(root)
    return roots


def render(name: str, interpreter: str, roots: list[str]) -> str:
    """The text of one shim executable."""
    module, what = ENTRIES[name]
    return (
        f"#!{interpreter} -IS\n"
        f"# {what}, written by spiderpool-install-cni. Do not edit: re-run the installer.\n"
        "import sys\n"
        f"sys.path[0:0] = {roots!r}\n"
        f"from {module} import main\n"
        "code = main()\n"
        "import posix\n"
        "posix._exit(code)  # stdout was written unbuffered; skipping finalization saves ~1.5 ms\n"
    )


def write_atomically(path: Path, text: str, mode: int = 0o755) -> None:
    """Replace ``path`` with ``text`` so readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def install(bin_dir: str, interpreter: str | None = None) -> list[Path]:
    """Write both shims into ``bin_dir`` (created if missing); return their paths."""
    python = real_interpreter(interpreter)
    roots = package_roots()
    target = Path(bin_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for name in ENTRIES:
            path = target / name
            write_atomically(path, render(name, python, roots))
            written.append(path)
    except OSError as exc:
        raise InstallError(f"cannot write into {target}: {exc}") from None
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``spiderpool-install-cni [--bin-dir DIR] [--python PATH]``."""
    parser = argparse.ArgumentParser(
        prog="spiderpool-install-cni",
        description="Install the spiderpool and coordinator CNI plugins (stdlib-only shims).",
    )
    parser.add_argument(
        "--bin-dir", default=DEFAULT_BIN_DIR, help=f"CNI bin directory (default {DEFAULT_BIN_DIR})"
    )
    parser.add_argument(
        "--python", default=None, help="interpreter for the shebang (default: this one, resolved)"
    )
    args = parser.parse_args(argv)
    try:
        written = install(args.bin_dir, args.python)
    except InstallError as exc:
        print(f"spiderpool-install-cni: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
