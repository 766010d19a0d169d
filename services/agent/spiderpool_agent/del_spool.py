"""The agent's half of the DEL spool: replay the DELs the shims recorded while it was away.

The shims write a DEL they could not hand to the agent into the spool directory and answer
success (``spiderpool_cni.spool`` owns the file format and says why). This module makes
those DELs happen:

* at start, before the agent serves (so before it reports ready), one pass over the spool;
  then a pass every ``interval`` seconds, for DELs spooled while the agent was running but
  did not answer in time;
* each DEL goes through the agent's normal DEL path, the handler of its plugin, with the
  CNI call rebuilt exactly as the shim would have sent it (the container ID as the DEL had
  it: the controller refuses to free an address on behalf of a container ID that no longer
  holds it, so a late replay cannot take a newer sandbox's address). The IPAM handler
  releases at the controller or, when the controller is unreachable, writes the release to
  the durable release journal; the coordinator handler removes the node-side state;
* a file is removed (unlink, then the directory fsynced) only once its handler returned:
  the work is done, or durably handed to the release journal. A handler that fails keeps
  the file for the next pass; one that refuses the DEL itself (codes 1, 2, 4, 6, 7: the
  DEL would have failed the same with the agent up) has it quarantined;
* an ADD first replays the spooled DELs of its own attachment (same plugin, same pod UID
  or container ID, same interface), as the release journal's ``settle`` does, so a DEL
  spooled late can never undo a later ADD of the same attachment; if that replay fails the
  ADD fails with code 11.

Bad files never stop the agent: a file that is not JSON, has the wrong shape, names an
unknown plugin, is not a regular file or is not owned by the agent's user is moved to
``<spool>/quarantine/`` with a warning naming the reason, and left there for a human.
Leftover ``.*.tmp`` files (a shim killed before its rename) are removed once older than
``STALE_TMP_SECONDS``.

Permissions: the directory is the agent's (root's) alone. ``prepare`` creates it 0700,
tightens an existing one to 0700, and refuses to start on a path that is a symlink, not a
directory, or owned by another user: replaying a DEL someone else could plant would let
them release addresses and delete host links.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from spiderpool.agent.v1 import cni_pb2
from spiderpool_cni import codes, spool
from spiderpool_common.errors import SpiderpoolError, Unavailable

from spiderpool_agent.cni_call import RawCall

log = structlog.get_logger(__name__)

QUARANTINE = "quarantine"
STALE_TMP_SECONDS = 300.0
CNI_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
# The DEL itself is invalid: replaying it again can only fail again.
PERMANENT_CODES = frozenset(
    {
        codes.INCOMPATIBLE_VERSION,
        codes.UNSUPPORTED_FIELD,
        codes.INVALID_ENVIRONMENT,
        codes.DECODING_FAILURE,
        codes.INVALID_CONFIG,
    }
)

Handler = Callable[[RawCall], Awaitable[bytes]]


class SpoolError(Exception):
    """The spool directory cannot be used safely; the message names the path and why."""


class SpoolCorrupt(ValueError):
    """A spool file that cannot be replayed; the message says why."""


@dataclass(frozen=True)
class SpooledDel:
    """One spooled DEL, ready to hand to its plugin's handler."""

    name: str
    plugin: str
    call: cni_pb2.CniCall
    key: tuple[str, str]  # (pod UID, or the container ID outside Kubernetes; interface)


@dataclass
class ReplayReport:
    """What one pass did, by file name."""

    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)


def pod_uid(cni_args: str) -> str:
    """``K8S_POD_UID`` from ``CNI_ARGS`` (``K=V;K=V``), or "" when absent."""
    for item in cni_args.split(";"):
        key, _, value = item.partition("=")
        if key == "K8S_POD_UID":
            return value
    return ""


def attachment_key(container_id: str, ifname: str, cni_args: str) -> tuple[str, str]:
    """The key the controller and the release journal use: (pod UID or container ID, interface)."""
    return (pod_uid(cni_args) or container_id, ifname)


def parse(name: str, data: bytes, plugins: Mapping[str, object]) -> SpooledDel:
    """A spool file's content as a ``SpooledDel``; ``SpoolCorrupt`` says what is wrong."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpoolCorrupt(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SpoolCorrupt("not a JSON object")
    if obj.get("format") != spool.FORMAT:
        raise SpoolCorrupt(f"format {obj.get('format')!r} is not {spool.FORMAT}")
    plugin = obj.get("plugin")
    if plugin not in plugins:
        raise SpoolCorrupt(f"unknown plugin {plugin!r}")
    env, config = obj.get("env"), obj.get("config")
    if not isinstance(env, dict) or not all(k in CNI_ENV and isinstance(v, str) for k, v in env.items()):
        raise SpoolCorrupt("env is not an object of CNI_* strings")
    if not isinstance(config, str):
        raise SpoolCorrupt("config is not a string")
    if obj.get("command") != "DEL" or env.get("CNI_COMMAND") != "DEL":
        raise SpoolCorrupt("not a DEL")
    container_id, ifname = env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", "")
    if not container_id or not ifname:
        raise SpoolCorrupt("no CNI_CONTAINERID or CNI_IFNAME")
    if obj.get("containerID") != container_id or obj.get("ifname") != ifname:
        raise SpoolCorrupt("containerID or ifname disagrees with the environment")
    call = cni_pb2.CniCall(
        command="DEL",
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        args=env.get("CNI_ARGS", ""),
        path=env.get("CNI_PATH", ""),
        config=config.encode("utf-8"),
        present=[k for k in CNI_ENV if k in env],
    )
    return SpooledDel(name, str(plugin), call, attachment_key(container_id, ifname, call.args))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DelSpool:
    """The spool directory and its replay through the agent's DEL handlers (by plugin)."""

    def __init__(
        self,
        directory: Path,
        handlers: Mapping[str, Handler],
        *,
        interval: float = 10.0,
        parallel: int = 8,
        euid: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._handlers = dict(handlers)
        self._interval = interval
        self._parallel = parallel
        self._euid = os.geteuid() if euid is None else euid
        self._clock = clock
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._wake = asyncio.Event()

    # -- the directory ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the directory 0700 (or tighten it), refuse an unsafe one, drop stale temp files."""
        path = self.directory
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=spool.DIR_MODE)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise SpoolError(f"DEL spool {path}: not a directory (a symlink or a file)")
        if st.st_uid != self._euid:
            raise SpoolError(f"DEL spool {path}: owned by uid {st.st_uid}, not the agent's uid {self._euid}")
        if stat.S_IMODE(st.st_mode) != spool.DIR_MODE:
            os.chmod(path, spool.DIR_MODE)
            log.warning("del_spool_permissions_tightened", path=str(path), was=oct(stat.S_IMODE(st.st_mode)))
        now = self._clock()
        for entry in os.scandir(path):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS:
                        os.unlink(entry.path)
                        log.info("del_spool_stale_tmp_removed", file=entry.name)

    def pending(self) -> list[str]:
        """The spooled DELs' file names, oldest first."""
        try:
            names = [
                e.name
                for e in os.scandir(self.directory)
                if e.name.endswith(spool.SUFFIX) and not e.name.startswith(".")
            ]
        except FileNotFoundError:
            return []
        return sorted(names)

    def _load(self, name: str) -> SpooledDel:
        """Read one file safely (no symlink, a regular file of ours) and parse it."""
        try:
            fd = os.open(self.directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise SpoolCorrupt(f"cannot be opened: {exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SpoolCorrupt("not a regular file")
            if st.st_uid != self._euid:
                raise SpoolCorrupt(f"owned by uid {st.st_uid}, not the agent's uid {self._euid}")
            data = b"".join(iter(lambda: os.read(fd, 1 << 16), b""))
        finally:
            os.close(fd)
        return parse(name, data, self._handlers)

    def _load_all(self) -> tuple[list[SpooledDel], list[tuple[str, str]]]:
        loaded: list[SpooledDel] = []
        corrupt: list[tuple[str, str]] = []
        for name in self.pending():
            try:
                loaded.append(self._load(name))
            except FileNotFoundError:
                continue  # replayed by a concurrent settle
            except SpoolCorrupt as exc:
                corrupt.append((name, str(exc)))
        return loaded, corrupt

    def _quarantine(self, name: str, reason: str) -> None:
        target = self.directory / QUARANTINE
        try:
            with contextlib.suppress(FileExistsError):
                target.mkdir(mode=spool.DIR_MODE)
            os.replace(self.directory / name, target / name)
            _fsync_dir(self.directory)
        except FileNotFoundError:
            return
        except OSError:
            log.exception("spooled_del_quarantine_failed", file=name, reason=reason)
            return
        log.warning("spooled_del_quarantined", file=name, reason=reason, moved_to=str(target / name))

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / name)
        _fsync_dir(self.directory)

    # -- replay ------------------------------------------------------------------------------

    async def _replay(self, entry: SpooledDel) -> str:
        """Run one spooled DEL; return "done", "kept" or "quarantined"."""
        lock = self._locks.setdefault((entry.plugin, *entry.key), asyncio.Lock())
        async with lock:
            if not (self.directory / entry.name).exists():
                return "done"  # a concurrent pass or settle did it
            call = entry.call
            try:
                await self._handlers[entry.plugin](call)
            except SpiderpoolError as exc:
                if exc.cni_code in PERMANENT_CODES:
                    await asyncio.to_thread(self._quarantine, entry.name, f"code {exc.cni_code}: {exc}")
                    return "quarantined"
                log.warning("spooled_del_kept", file=entry.name, plugin=entry.plugin, error=str(exc))
                return "kept"
            except Exception as exc:  # every failure is retried by the next pass
                log.warning("spooled_del_kept", file=entry.name, plugin=entry.plugin, error=repr(exc))
                return "kept"
            try:
                await asyncio.to_thread(self._remove, entry.name)
            except OSError as exc:  # done, but still on disk: the next pass repeats the (idempotent) DEL
                log.warning("spooled_del_not_removed", file=entry.name, error=str(exc))
                return "kept"
            log.info(
                "spooled_del_replayed",
                file=entry.name,
                plugin=entry.plugin,
                container_id=call.container_id,
                ifname=call.ifname,
            )
            return "done"

    async def replay_once(self) -> ReplayReport:
        """Replay every spooled DEL once (``parallel`` at a time); quarantine the bad files."""
        report = ReplayReport()
        if not self.pending():
            return report
        loaded, corrupt = await asyncio.to_thread(self._load_all)
        for name, reason in corrupt:
            await asyncio.to_thread(self._quarantine, name, reason)
            report.quarantined.append(name)
        gate = asyncio.Semaphore(self._parallel)

        async def one(entry: SpooledDel) -> tuple[str, str]:
            async with gate:
                return entry.name, await self._replay(entry)

        for name, outcome in await asyncio.gather(*(one(e) for e in loaded)):
            getattr(report, outcome).append(name)
        log.info(
            "del_spool_replayed",
            done=len(report.done),
            kept=len(report.kept),
            quarantined=len(report.quarantined),
        )
        return report

    async def settle(self, plugin: str, call: RawCall) -> None:
        """Before an ADD: replay the spooled DELs of the same attachment; code 11 if one fails."""
        if not self.pending():  # the common case: one directory listing
            return
        key = attachment_key(call.container_id, call.ifname, call.args)
        loaded, _ = await asyncio.to_thread(self._load_all)
        for entry in loaded:
            if entry.plugin == plugin and entry.key == key and await self._replay(entry) == "kept":
                raise Unavailable(
                    f"a spooled DEL of {entry.call.container_id}/{entry.call.ifname} ({entry.name}) "
                    "could not be replayed yet"
                )

    def wake(self) -> None:
        """Run a pass now rather than at the next interval."""
        self._wake.set()

    async def run(self) -> None:
        """Replay loop: a pass every ``interval`` seconds (or when woken) while files are pending."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self.replay_once()
            except Exception:  # a broken pass must not end the loop
                log.exception("del_spool_pass_failed")
