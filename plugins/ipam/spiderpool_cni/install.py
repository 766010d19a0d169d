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

Which interpreter: ``--python`` when given; otherwise the fastest-starting real one among
this one and the system's ``python3`` (both must be 3.11 or newer). Start-up is most of a
shim's cost, and builds differ: a pyenv-style build loads ``libpython3.x.so`` and the
``_socket`` and ``_json`` extension modules as separate shared objects on every exec, while
Debian's ``/usr/bin/python3`` has libpython and ``_socket`` linked in, about 2 ms less per
call on this machine. Each candidate is asked once (a ``-IS`` probe reporting its version,
whether libpython is mapped, and which of the shim's C modules are built in).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import spiderpool_coordinator

import spiderpool_cni

DEFAULT_BIN_DIR = "/opt/cni/bin"
ENTRIES = {
    "spiderpool": ("spiderpool_cni.ipam_main", "the spiderpool IPAM plugin"),
    "coordinator": ("spiderpool_coordinator.shim", "the spiderpool coordinator plugin"),
}


SYSTEM_INTERPRETERS = ("/usr/bin/python3", "/usr/local/bin/python3")
MIN_VERSION = (3, 11)
SHIM_C_MODULES = ("_socket", "_json")  # what the shims import beyond the interpreter's core
_PROBE = (
    "import sys\n"
    "maps = open('/proc/self/maps').read()\n"
    "print(*sys.version_info[:2], int('libpython' in maps),"
    f" sum(n not in sys.builtin_module_names for n in {SHIM_C_MODULES!r}))"
)


@dataclass(frozen=True)
class Candidate:
    """An interpreter binary and what starting it costs: the fewer shared objects, the better."""

    path: str
    version: tuple[int, int]
    shared_libpython: bool
    extension_modules: int  # of SHIM_C_MODULES, how many load from a separate .so

    @property
    def start_cost(self) -> tuple[bool, int]:
        return (self.shared_libpython, self.extension_modules)


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


def probe(path: str) -> Candidate | None:
    """Ask ``path`` (run with ``-IS``, as the shims are) what it is; None if it cannot say."""
    try:
        proc = subprocess.run(
            [path, "-IS", "-c", _PROBE], capture_output=True, text=True, timeout=10, check=False
        )
        major, minor, shared, extensions = (int(field) for field in proc.stdout.split())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return Candidate(path, (major, minor), bool(shared), extensions)


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The supported candidate that starts fastest; on a tie the earliest listed."""
    usable = [c for c in candidates if c.version >= MIN_VERSION]
    return min(usable, key=lambda c: c.start_cost, default=None)


def default_interpreter() -> str:
    """This interpreter, unless a system ``python3`` of a supported version starts faster."""
    running = real_interpreter()
    paths = [running]
    for system in SYSTEM_INTERPRETERS:
        try:
            path = real_interpreter(system)
        except InstallError:
            continue
        if path not in paths:
            paths.append(path)
    probed = [c for c in map(probe, paths) if c is not None]
    best = choose(probed)
    return best.path if best is not None else running


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
    python = real_interpreter(interpreter) if interpreter else default_interpreter()
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
        "--python",
        default=None,
        help="interpreter for the shebang (default: the faster-starting of this one and the system python3)",
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
