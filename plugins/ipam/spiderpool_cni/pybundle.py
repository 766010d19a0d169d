"""The interpreter bundle the shims run on, and installing it on a node.

The shims run on the node, outside any container, where no suitable Python may exist (many
Kubernetes node images ship none) and the C library may be another one or missing. So the
agent's image carries a bundle (built by ``spiderpool_tools.pybundle_build``, ``make dist``):
a CPython binary, the shared objects it needs (down to the ELF loader and libc), the
standard-library modules the shims import (and their imports), the shims' own modules, and
``manifest.json`` naming every file with its SHA-256 and mode. Nothing in it names an
absolute path but one: an ELF program's loader (``PT_INTERP``) must be absolute, so the
builder leaves a long placeholder there and ``install`` writes the loader's host path in
place. The binary finds its libraries through ``RPATH=$ORIGIN/../lib`` and its standard
library from its own location (``lib/pythonX.Y/os.py`` is the landmark CPython looks for
next to the binary), and the shims run it with ``-IS`` (no environment, no site-packages).

On the host a bundle lives in a directory of its own named by its id (``<python
version>-<digest>``) under the install directory (``/opt/spiderpool/python`` by default),
so an upgrade writes the new version beside the old one and the shims switch when their
files are renamed over: a CNI call runs one complete version or the other, never a mix.
Installing is idempotent: a version already present whose files match the manifest is
left alone, one that does not (a half-copied or damaged tree) is replaced. Every copy is
made in a temporary directory and renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1
# What the builder writes as PT_INTERP: long enough for any install path we accept.
INTERP_PLACEHOLDER = "/spiderpool-pybundle-loader-placeholder/" + "x" * 200
MAX_INTERP = len(INTERP_PLACEHOLDER)
DEFAULT_PYTHON_DIR = "/opt/spiderpool/python"
_PT_INTERP = 3


class BundleError(Exception):
    """The bundle is missing, malformed or damaged, or cannot be installed where asked."""


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: its id, its interpreter, loader and shim-module directory, its files."""

    id: str
    python: str  # the interpreter's version, e.g. 3.11.2
    interpreter: str  # relative paths inside the bundle
    loader: str
    site: str
    files: dict[str, tuple[str, int]]  # path -> (sha256 hex, mode)

    @classmethod
    def load(cls, bundle: Path) -> Manifest:
        path = bundle / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: not a bundle manifest ({exc})") from None
        try:
            if data["format"] != FORMAT:
                raise BundleError(f"{path}: format {data['format']!r}, this installer reads {FORMAT}")
            files = {str(k): (str(v["sha256"]), int(v["mode"])) for k, v in data["files"].items()}
            manifest = cls(
                str(data["id"]),
                str(data["python"]),
                str(data["interpreter"]),
                str(data["loader"]),
                str(data["site"]),
                files,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{path}: malformed manifest ({exc!r})") from None
        for rel in (*files, manifest.interpreter, manifest.loader):
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise BundleError(f"{path}: {rel!r} is not a path inside the bundle")
        if manifest.interpreter not in files or manifest.loader not in files:
            raise BundleError(f"{path}: the interpreter or the loader is not among the files")
        if not manifest.id or "/" in manifest.id or manifest.id.startswith("."):
            raise BundleError(f"{path}: bad id {manifest.id!r}")
        return manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "python": self.python,
            "interpreter": self.interpreter,
            "loader": self.loader,
            "site": self.site,
            "files": {k: {"sha256": h, "mode": m} for k, (h, m) in sorted(self.files.items())},
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest_of(files: dict[str, tuple[str, int]]) -> str:
    """One hash over every (path, content hash, mode): the bundle's identity."""
    text = "".join(f"{p}\0{h}\0{m:o}\n" for p, (h, m) in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def verify(bundle: Path, manifest: Manifest, *, patched_interpreter: bool = False) -> None:
    """Raise BundleError naming the first file that is missing or differs from the manifest.

    An installed interpreter differs from the bundle's by its loader path, so with
    ``patched_interpreter`` only its size is compared.
    """
    for rel, (sha, mode) in manifest.files.items():
        path = bundle / rel
        try:
            st = path.lstat()
        except OSError:
            raise BundleError(f"{path} is missing") from None
        if not path.is_file() or path.is_symlink():
            raise BundleError(f"{path} is not a regular file")
        if st.st_mode & 0o7777 != mode:
            raise BundleError(f"{path} has mode {st.st_mode & 0o7777:o}, the manifest says {mode:o}")
        if patched_interpreter and rel == manifest.interpreter:
            continue
        if sha256_file(path) != sha:
            raise BundleError(f"{path} differs from the manifest (sha256)")


def interp_segment(data: bytes) -> tuple[int, int]:
    """The file offset and size of the ELF program's PT_INTERP (64-bit little-endian only)."""
    if data[:4] != b"\x7fELF":
        raise BundleError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise BundleError("only 64-bit little-endian ELF programs are supported")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        base = phoff + index * phentsize
        p_type, _flags, p_offset = struct.unpack_from("<IIQ", data, base)
        if p_type == _PT_INTERP:
            (p_filesz,) = struct.unpack_from("<Q", data, base + 32)
            return p_offset, p_filesz
    raise BundleError("the program has no PT_INTERP (a static binary is not what the builder makes)")


def read_interpreter(data: bytes) -> str:
    offset, size = interp_segment(data)
    return data[offset : offset + size].split(b"\0", 1)[0].decode()


def set_interpreter(data: bytes, loader: str) -> bytes:
    """``data`` with PT_INTERP naming ``loader``, padded with NULs in the space the builder left."""
    offset, size = interp_segment(data)
    raw = loader.encode()
    if not loader.startswith("/") or b"\0" in raw:
        raise BundleError(f"the loader path {loader!r} must be absolute")
    if len(raw) + 1 > size:
        raise BundleError(
            f"the loader path {loader!r} is {len(raw)} bytes; the bundle's interpreter has room for "
            f"{size - 1}: install into a shorter directory"
        )
    return data[:offset] + raw + b"\0" * (size - len(raw)) + data[offset + size :]


@dataclass(frozen=True)
class Installed:
    """An installed bundle as the host sees it (paths for the shims' text)."""

    id: str
    directory: str  # host path of this version's directory
    interpreter: str
    site: str
    copied: bool  # False when the version was already in place


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_tree(bundle: Path, manifest: Manifest, stage: Path, loader_host_path: str) -> None:
    for rel, (_sha, mode) in sorted(manifest.files.items()):
        src, dst = bundle / rel, stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel == manifest.interpreter:
            dst.write_bytes(set_interpreter(src.read_bytes(), loader_host_path))
        else:
            shutil.copyfile(src, dst)
        os.chmod(dst, mode)
        with dst.open("rb") as fh:
            os.fsync(fh.fileno())
    (stage / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n")


def install_bundle(bundle: Path, local_dir: Path, host_dir: str) -> Installed:
    """Install ``bundle`` under ``local_dir`` (this process's view of the host's ``host_dir``).

    Verifies the bundle first; returns the installed version's host paths. Raises
    BundleError (nothing changed) when the bundle is damaged or the loader path too long.
    """
    manifest = Manifest.load(bundle)
    verify(bundle, manifest)
    host_version = f"{host_dir.rstrip('/')}/{manifest.id}"
    loader = f"{host_version}/{manifest.loader}"
    if len(loader.encode()) + 1 > MAX_INTERP:
        raise BundleError(f"the install directory {host_dir!r} is too long for the loader path")
    installed = Installed(
        manifest.id,
        host_version,
        f"{host_version}/{manifest.interpreter}",
        f"{host_version}/{manifest.site}",
        copied=True,
    )
    target = local_dir / manifest.id
    try:
        if _is_installed(target, manifest, loader):
            return dataclasses.replace(installed, copied=False)
        local_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=local_dir, prefix=f".{manifest.id}.new-"))
        try:
            _copy_tree(bundle, manifest, stage, loader)
            os.chmod(stage, 0o755)  # noqa: S103  (the host runs the shims as any user the runtime has)
            if target.exists() or target.is_symlink():  # a damaged copy: move it out of the way first
                trash = Path(tempfile.mkdtemp(dir=local_dir, prefix=f".{manifest.id}.old-"))
                os.replace(target, trash / "tree")
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(stage, target)
            _fsync_dir(local_dir)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    except OSError as exc:
        raise BundleError(f"cannot install the bundle into {local_dir}: {exc}") from None
    return installed


def _is_installed(target: Path, manifest: Manifest, loader: str) -> bool:
    try:
        if Manifest.load(target) != manifest:
            return False
        verify(target, manifest, patched_interpreter=True)
        return read_interpreter((target / manifest.interpreter).read_bytes()) == loader
    except (BundleError, OSError):
        return False


def prune(local_dir: Path, keep: set[str]) -> list[str]:
    """Remove the versions (and leftover temporary trees) under ``local_dir`` not in ``keep``."""
    removed: list[str] = []
    try:
        entries = list(local_dir.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name in keep or not entry.is_dir() or entry.is_symlink():
            continue
        if entry.name.startswith(".") or (entry / MANIFEST).exists():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return sorted(removed)
