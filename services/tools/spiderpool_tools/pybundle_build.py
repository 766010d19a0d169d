"""Build the interpreter bundle the shims run on (``make dist``; the format is ``spiderpool_cni.pybundle``).

From one CPython on the build machine (by default the fastest-starting one the installer
would pick, e.g. Debian's ``/usr/bin/python3.11``, whose libpython and ``_socket`` are linked
in) the builder takes:

- the binary, with ``RPATH=$ORIGIN/../lib`` (an RPATH, not a RUNPATH: it also governs the
  libraries' own dependencies and wins over a host's ``LD_LIBRARY_PATH``) and a placeholder
  loader path the installer overwrites with the host's;
- every shared object the binary and the copied extension modules load (``ldd``), the ELF
  loader and libc included, so the host need not have a matching C library;
- the shims' modules, found by following their imports (every ``import`` statement in the
  files, also those inside functions) from the two entry modules through our packages;
- the standard-library modules those imports load when the interpreter runs them with
  ``-IS``, plus what every start needs (the ``encodings`` the standard streams may use) and
  ``os.py``, the landmark by which CPython finds its library next to the binary. Sources are
  kept beside unchecked-hash ``.pyc`` files compiled by the bundle's own interpreter, so
  nothing is compiled or written on the host and the build is reproducible.

``manifest.json`` lists every file with its SHA-256 and mode; the bundle's id is the Python
version and a digest of that list. Needs ``patchelf`` and ``ldd`` at build time only.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import spiderpool_cni
import spiderpool_coordinator
from spiderpool_cni import install, pybundle

ENTRY_MODULES = ("spiderpool_cni.ipam_main", "spiderpool_coordinator.shim")
OWN_PACKAGES = ("spiderpool_cni", "spiderpool_coordinator")
# Every interpreter start may decode its standard streams with one of these (C.UTF-8, a
# UTF-8 locale, the POSIX locale's ASCII, Latin-1 locales), and os.py is getpath's landmark.
START_MODULES = ("encodings", "encodings.aliases", "encodings.utf_8", "encodings.ascii", "encodings.latin_1")
LANDMARK = "os"
SITE = "site"

# Run by the bundle's interpreter with -IS: import the roots, report every module loaded from a
# file (frozen and built-in modules live in the binary), then the stdlib's location.
_CLOSURE = """
import sys
roots = sys.argv[1:]
for name in roots:
    __import__(name)
found = {}
for name, module in list(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) if spec else None
    if origin and origin.startswith("/"):
        found[name] = origin
import sysconfig, json
print(json.dumps({"modules": found, "stdlib": sysconfig.get_path("stdlib"),
                  "platstdlib": sysconfig.get_path("platstdlib"),
                  "version": "%d.%d.%d" % sys.version_info[:3], "xy": "%d.%d" % sys.version_info[:2]}))
"""

# The recorded file name is the path inside the bundle (the import system puts the real one
# in place when it loads the file), so two builds of the same inputs are byte for byte equal.
_COMPILE = """
import os, py_compile, sys
root = sys.argv[1]
for path in sys.argv[2:]:
    py_compile.compile(path, dfile=os.path.relpath(path, root), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""

_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


class BuildError(Exception):
    """The bundle cannot be built (a tool missing, the interpreter unusable)."""


def _package_dirs() -> dict[str, Path]:
    return {
        "spiderpool_cni": Path(spiderpool_cni.__file__ or "").resolve().parent,
        "spiderpool_coordinator": Path(spiderpool_coordinator.__file__ or "").resolve().parent,
    }


def _module_file(name: str, packages: dict[str, Path]) -> Path | None:
    top, _, rest = name.partition(".")
    if top not in packages:
        return None
    base = packages[top]
    if not rest:
        return base / "__init__.py"
    candidate = base.joinpath(*rest.split(".")).with_suffix(".py")
    return candidate if candidate.exists() else None


def _imports(path: Path) -> set[str]:
    """Every module name a file imports, anywhere in it (``from a import b`` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def shim_modules() -> tuple[dict[str, Path], set[str]]:
    """The shims' own modules (name -> file) and the other top-level modules they import."""
    packages = _package_dirs()
    own: dict[str, Path] = {}
    foreign: set[str] = set()
    todo = list(ENTRY_MODULES)
    while todo:
        name = todo.pop()
        if name in own:
            continue
        path = _module_file(name, packages)
        if path is None:
            if name.split(".")[0] not in packages:
                foreign.add(name.split(".")[0])
            continue  # ``from package import function``: not a module
        own[name] = path
        if "." in name:
            todo.append(name.rsplit(".", 1)[0])  # a package's __init__ runs first
        todo.extend(_imports(path))
    return own, foreign


def _run(args: list[str], what: str) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        raise BuildError(f"{what}: cannot run {args[0]}: {exc}") from None
    if proc.returncode != 0:
        raise BuildError(f"{what} failed ({args[0]} exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def stdlib_closure(python: str, roots: list[str]) -> dict[str, object]:
    """What ``python -IS`` loads from files when it imports ``roots`` (and starts at all)."""
    return dict(json.loads(_run([python, "-IS", "-c", _CLOSURE, *roots], "listing the stdlib modules")))


def shared_objects(paths: list[Path]) -> tuple[Path, list[Path]]:
    """The ELF loader and every library the ``paths`` load, resolved by ``ldd``."""
    loader: Path | None = None
    libs: dict[str, Path] = {}
    for path in paths:
        for line in _run(["ldd", str(path)], f"ldd {path}").splitlines():
            match = _LDD_LINE.match(line)
            if not match:
                continue
            soname, resolved = match.groups()
            if soname is None:
                loader = Path(resolved)
            else:
                libs[soname] = Path(resolved)
    if loader is None:
        raise BuildError(f"ldd names no ELF loader for {paths[0]} (a static build is not supported)")
    return loader, [libs[name] for name in sorted(libs)]


def build(python: str, out: Path, patchelf: str = "patchelf") -> pybundle.Manifest:
    """Build the bundle from ``python`` into ``out`` (replaced whole); return its manifest."""
    binary = Path(install.real_interpreter(python))
    if shutil.which(patchelf) is None:
        raise BuildError(f"{patchelf} not found (Debian package patchelf)")
    own, foreign = shim_modules()
    roots = sorted(set(foreign) | set(START_MODULES))
    closure = stdlib_closure(str(binary), roots)
    xy = str(closure["xy"])
    stdlib, platstdlib = Path(str(closure["stdlib"])), Path(str(closure["platstdlib"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.build-"))
    try:
        libdir = stage / "lib" / f"python{xy}"
        sources: list[Path] = []
        extensions: list[Path] = []
        modules = closure["modules"]
        assert isinstance(modules, dict)
        for name, origin in sorted(modules.items()):
            origin_path = Path(origin)
            if origin_path.suffix == ".py":
                rel = origin_path.relative_to(stdlib)  # a source from elsewhere is not stdlib: fail loudly
                dest = libdir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin_path, dest)
                sources.append(dest)
            elif origin_path.suffix == ".so":
                dest = libdir / origin_path.relative_to(platstdlib)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin_path, dest)
                extensions.append(dest)
            else:
                raise BuildError(f"module {name} loads from {origin}, neither a source nor an extension")  # noqa: TRY301
        # getpath's landmarks: os.py (frozen into the binary, so never "loaded from a file") and
        # lib-dynload, without which the interpreter would fall back to its build prefix.
        shutil.copyfile(stdlib / f"{LANDMARK}.py", libdir / f"{LANDMARK}.py")
        sources.append(libdir / f"{LANDMARK}.py")
        (libdir / "lib-dynload").mkdir(exist_ok=True)
        for name, path in sorted(own.items()):
            dest = stage / SITE / Path(*name.split(".")).with_suffix(".py")
            if path.name == "__init__.py":
                dest = dest.with_suffix("") / "__init__.py"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            sources.append(dest)
        bindir = stage / "bin"
        bindir.mkdir()
        target = bindir / f"python{xy}"
        shutil.copyfile(binary, target)
        loader, libs = shared_objects([binary, *extensions])
        (stage / "lib").mkdir(exist_ok=True)
        for lib in [loader, *libs]:
            shutil.copyfile(lib.resolve(), stage / "lib" / lib.name)
        _run(
            [patchelf, "--force-rpath", "--set-rpath", "$ORIGIN/../lib",
             "--set-interpreter", pybundle.INTERP_PLACEHOLDER, str(target)],
            "patchelf",
        )  # fmt: skip
        _run([str(binary), "-IS", "-c", _COMPILE, str(stage), *map(str, sources)], "compiling the modules")
        manifest = _write_manifest(stage, str(closure["version"]), f"bin/python{xy}", f"lib/{loader.name}")
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _write_manifest(stage: Path, version: str, interpreter: str, loader: str) -> pybundle.Manifest:
    files: dict[str, tuple[str, int]] = {}
    for path in sorted(stage.rglob("*")):
        if path.is_file():
            mode = 0o755 if path.parent.name == "bin" or path.name == Path(loader).name else 0o644
            os.chmod(path, mode)
            files[str(path.relative_to(stage))] = (pybundle.sha256_file(path), mode)
    digest = pybundle.digest_of(files)
    manifest = pybundle.Manifest(f"{version}-{digest[:12]}", version, interpreter, loader, SITE, files)
    (stage / pybundle.MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spiderpool_tools.pybundle_build",
        description="Build the interpreter bundle the CNI shims run on (spiderpool-install-cni --bundle).",
    )
    parser.add_argument("--out", required=True, help="output directory (replaced)")
    parser.add_argument(
        "--python", default=None, help="interpreter to bundle (default: the one the installer would pick)"
    )
    parser.add_argument("--patchelf", default="patchelf", help="patchelf executable (default: on PATH)")
    args = parser.parse_args(argv)
    try:
        python = args.python or install.default_interpreter()
        manifest = build(python, Path(args.out), args.patchelf)
    except (BuildError, install.InstallError, OSError) as exc:
        print(f"pybundle_build: {exc}", file=sys.stderr)
        return 1
    size = sum((Path(args.out) / rel).stat().st_size for rel in manifest.files)
    print(f"built {args.out}: bundle {manifest.id}, {len(manifest.files)} files, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
