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

On a Kubernetes node the installer runs in the agent's init container, and the host may
have no Python at all: ``--bundle DIR --host-root ROOT`` installs the image's interpreter
bundle (``pybundle``: a CPython with its own loader and libraries, the standard-library
modules the shims import and the shims' modules) into the host's ``--python-dir``
(``/opt/spiderpool/python/<id>``), then the shims into the host's ``--bin-dir``, their
shebang and ``sys.path`` naming the bundle as the host sees it (``ROOT`` is where the
host's ``/`` is mounted). Both steps are atomic and idempotent: run on every agent start,
an unchanged bundle is left in place and the shims are renamed over with the same text;
a new bundle version is written beside the old one, the shims switch to it by rename, and
versions no shim names any more are removed (the one the previous shims named is kept
for the calls still running on it).
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
from spiderpool_cni import pybundle

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


def host_path(host_root: str, path: str) -> Path:
    """Where this process reaches the host's absolute ``path`` (the host's / is ``host_root``)."""
    if not path.startswith("/"):
        raise InstallError(f"{path!r} must be an absolute path on the host")
    return Path(host_root) / path.lstrip("/")


def shim_bundle_id(path: Path, python_dir: str) -> str | None:
    """The bundle version an installed shim's shebang names under ``python_dir``, if any."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(4096).decode(errors="replace")
    except OSError:
        return None
    prefix = f"#!{python_dir.rstrip('/')}/"
    if not first.startswith(prefix):
        return None
    return first[len(prefix) :].split("/", 1)[0] or None


@dataclass(frozen=True)
class BundleInstall:
    """What ``install_from_bundle`` did, in this process's paths."""

    bundle: pybundle.Installed
    shims: list[Path]
    removed_versions: list[str]


def install_from_bundle(
    bundle: str,
    host_root: str = "/",
    bin_dir: str = DEFAULT_BIN_DIR,
    python_dir: str = pybundle.DEFAULT_PYTHON_DIR,
) -> BundleInstall:
    """Install the interpreter bundle into the host's ``python_dir`` and the shims running on it
    into the host's ``bin_dir``; both directories are host paths under ``host_root``."""
    local_python = host_path(host_root, python_dir)
    local_bin = host_path(host_root, bin_dir)
    try:
        installed = pybundle.install_bundle(Path(bundle), local_python, python_dir)
    except pybundle.BundleError as exc:
        raise InstallError(str(exc)) from None
    keep = {installed.id}
    written = []
    try:
        local_bin.mkdir(parents=True, exist_ok=True)
        for name in ENTRIES:
            path = local_bin / name
            previous = shim_bundle_id(path, python_dir)
            if previous:
                keep.add(previous)
            write_atomically(path, render(name, installed.interpreter, [installed.site]))
            written.append(path)
    except OSError as exc:
        raise InstallError(f"cannot write into {local_bin}: {exc}") from None
    return BundleInstall(installed, written, pybundle.prune(local_python, keep))


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--bundle",
        default=None,
        help="install this interpreter bundle (make dist's pybundle) on the host and run the shims on it",
    )
    parser.add_argument(
        "--host-root",
        default="/",
        help="with --bundle: where the host's / is mounted; --bin-dir and --python-dir are host paths",
    )
    parser.add_argument(
        "--python-dir",
        default=pybundle.DEFAULT_PYTHON_DIR,
        help=f"with --bundle: host directory of the bundle versions (default {pybundle.DEFAULT_PYTHON_DIR})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: ``spiderpool-install-cni [--bin-dir DIR] [--python PATH | --bundle DIR
    [--host-root ROOT] [--python-dir DIR]]``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bundle is None and (args.host_root != "/" or args.python_dir != pybundle.DEFAULT_PYTHON_DIR):
        parser.error("--host-root and --python-dir go with --bundle")
    if args.bundle is not None and args.python is not None:
        parser.error("--python and --bundle exclude each other (the bundle brings its interpreter)")
    try:
        if args.bundle is not None:
            done = install_from_bundle(args.bundle, args.host_root, args.bin_dir, args.python_dir)
            state = "installed" if done.bundle.copied else "unchanged"
            print(f"{state} {host_path(args.host_root, done.bundle.directory)} (bundle {done.bundle.id})")
            for version in done.removed_versions:
                print(f"removed {host_path(args.host_root, args.python_dir) / version}")
            written = done.shims
        else:
            written = install(args.bin_dir, args.python)
    except InstallError as exc:
        print(f"spiderpool-install-cni: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
