"""The agent's DEL spool replay on real files, with the handlers replaced by recorders.

Files are written by the shim's own ``spiderpool_cni.spool.spool_del``, so what is replayed
is what a shim leaves. Covered: the directory's permissions, each outcome of a replay
(done and removed, kept on a transient failure, quarantined for a refused DEL, a corrupt
file or a file not owned by the agent's user), leftover temporary files, the ADD-time
``settle`` of one attachment, and the periodic loop.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
import structlog
from spiderpool_agent.cni_call import RawCall
from spiderpool_agent.del_spool import QUARANTINE, DelSpool, SpoolError
from spiderpool_cni import codes, spool
from spiderpool_common.errors import CniError, SpiderpoolError, Unavailable

from tests.component.agent_harness import wait_until

STDIN = b'{"cniVersion": "1.0.0", "name": "net-a", "ipam": {"type": "spiderpool"}}'


class Recorder:
    """A DEL handler: records each call's (container ID, ifname); raises ``fail`` for listed IDs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []
        self.fail: dict[str, SpiderpoolError] = {}
        self.attempts = 0

    async def __call__(self, call: RawCall) -> bytes:
        self.attempts += 1
        if call.container_id in self.fail:
            raise self.fail[call.container_id]
        self.calls.append((call.container_id, call.ifname, call.config))
        return b""


def spool_one(directory: Path, plugin: str, cid: str, ifname: str = "eth0", uid: str = "") -> str:
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin"}
    if uid:
        env["CNI_ARGS"] = f"IgnoreUnknown=1;K8S_POD_UID={uid}"
    path = spool.spool_del(plugin, str(directory), env, present=list(env), stdin=STDIN, reason="test")
    return Path(path).name


def make(
    tmp_path: Path, ipam: Recorder, coordinator: Recorder | None = None, **kw: object
) -> tuple[DelSpool, Path]:
    directory = tmp_path / "spool"
    handlers = {"ipam": ipam, "coordinator": coordinator or Recorder()}
    return DelSpool(directory, handlers, **kw), directory  # type: ignore[arg-type]


# -- the directory ---------------------------------------------------------------------------------


def test_prepare_creates_the_directory_root_only_and_tightens_a_loose_one(tmp_path: Path) -> None:
    """prepare makes the spool (and its parents) with mode 0700 on the directory, and sets an existing
    0755 directory back to 0700."""
    ds, directory = make(tmp_path / "state", Recorder())
    ds.prepare()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    directory.chmod(0o755)
    ds.prepare()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.parametrize("kind", ["symlink", "file", "foreign"])
def test_prepare_refuses_an_unsafe_spool(tmp_path: Path, kind: str) -> None:
    """A spool path that is a symlink, a file, or a directory owned by another user stops the agent
    with a message naming the path; nothing is replayed from it."""
    directory = tmp_path / "spool"
    euid = os.geteuid()
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir()
        directory.symlink_to(tmp_path / "elsewhere")
    elif kind == "file":
        directory.write_text("")
    else:
        directory.mkdir()
        euid += 1  # the agent runs as a user that does not own the directory
    ds = DelSpool(directory, {"ipam": Recorder()}, euid=euid)
    with pytest.raises(SpoolError, match=str(directory)):
        ds.prepare()


def test_prepare_removes_only_stale_temporary_files(tmp_path: Path) -> None:
    """A shim's leftover .tmp file is removed once older than five minutes (injected clock), not before."""
    now = [0.0]
    ds, directory = make(tmp_path, Recorder(), clock=lambda: now[0])
    ds.prepare()
    tmp = directory / ".0001-1-ipam.del.tmp"
    tmp.write_text("{")
    mtime = tmp.stat().st_mtime
    now[0] = mtime + 10
    ds.prepare()
    assert tmp.exists()
    now[0] = mtime + 301
    ds.prepare()
    assert not tmp.exists()


# -- one pass --------------------------------------------------------------------------------------


async def test_a_pass_removes_done_files_keeps_failed_ones_and_quarantines_refused_ones(
    tmp_path: Path,
) -> None:
    """Each file goes to its plugin's handler with the DEL exactly as spooled; a handled one is
    removed, one whose handler is unavailable stays, and one the handler refuses as invalid (code 7)
    is moved to quarantine/ with a warning; a second pass retries only the kept one."""
    ipam, coordinator = Recorder(), Recorder()
    ds, directory = make(tmp_path, ipam, coordinator)
    ds.prepare()
    ok = spool_one(directory, "ipam", "ok")
    later = spool_one(directory, "ipam", "later")
    refused = spool_one(directory, "ipam", "refused")
    routed = spool_one(directory, "coordinator", "ok")
    ipam.fail = {
        "later": Unavailable("controller down"),
        "refused": CniError(codes.INVALID_CONFIG, "no name"),
    }
    with structlog.testing.capture_logs() as logs:
        report = await ds.replay_once()
    assert sorted(report.done) == sorted([ok, routed])
    assert report.kept == [later]
    assert report.quarantined == [refused]
    assert ipam.calls == [("ok", "eth0", STDIN)]
    assert coordinator.calls == [("ok", "eth0", STDIN)]
    assert ds.pending() == [later]
    assert (directory / QUARANTINE / refused).exists()
    assert any(e["event"] == "spooled_del_quarantined" and "code 7" in e["reason"] for e in logs)

    ipam.fail = {}
    report = await ds.replay_once()
    assert report.done == [later]
    assert ds.pending() == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"{not json", "not JSON"), (b'{"format": 1, "plugin": "tap"}', "unknown plugin")],
)
async def test_a_corrupt_file_is_quarantined_with_a_log_line_and_the_rest_replays(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """A file that cannot be parsed is moved to quarantine/ with a warning naming why; the good file
    next to it is replayed; nothing raises."""
    ipam = Recorder()
    ds, directory = make(tmp_path, ipam)
    ds.prepare()
    good = spool_one(directory, "ipam", "good")
    (directory / "00000000000000000001-1-ipam.del").write_bytes(content)
    with structlog.testing.capture_logs() as logs:
        report = await ds.replay_once()
    assert report.done == [good]
    assert report.quarantined == ["00000000000000000001-1-ipam.del"]
    assert next(e["reason"] for e in logs if e["event"] == "spooled_del_quarantined").startswith(reason)
    assert ds.pending() == []


async def test_a_file_not_owned_by_the_agents_user_is_never_replayed(tmp_path: Path) -> None:
    """A spool file owned by another user (here: the agent runs under another uid) is quarantined
    without reaching any handler."""
    ipam = Recorder()
    directory = tmp_path / "spool"
    DelSpool(directory, {"ipam": ipam}).prepare()
    name = spool_one(directory, "ipam", "planted")
    ds = DelSpool(directory, {"ipam": ipam}, euid=os.geteuid() + 1)
    report = await ds.replay_once()
    assert report.quarantined == [name]
    assert ipam.calls == []


# -- settle and the loop ---------------------------------------------------------------------------


async def test_settle_replays_only_the_same_plugins_dels_of_the_same_attachment(tmp_path: Path) -> None:
    """Before an ADD of (pod uid-1, eth0) through the IPAM plugin, settle replays the IPAM DEL spooled
    for that pod (from an older sandbox) and leaves the coordinator's, another pod's and another
    interface's DELs for the loop."""
    ipam = Recorder()
    ds, directory = make(tmp_path, ipam)
    ds.prepare()
    spool_one(directory, "ipam", "old-sandbox", uid="uid-1")
    others = [
        spool_one(directory, "coordinator", "old-sandbox", uid="uid-1"),
        spool_one(directory, "ipam", "x", uid="uid-2"),
        spool_one(directory, "ipam", "old-sandbox", "net1", uid="uid-1"),
    ]

    class Add:
        command, container_id, netns, ifname, config, path = "ADD", "new-sandbox", "/n", "eth0", b"", ""
        args = "K8S_POD_UID=uid-1"
        present: list[str] = []

    await ds.settle("ipam", Add())
    assert ipam.calls == [("old-sandbox", "eth0", STDIN)]
    assert ds.pending() == sorted(others)


async def test_settle_fails_the_add_with_code_11_while_the_matching_del_cannot_replay(tmp_path: Path) -> None:
    """When the attachment's spooled DEL fails again, settle raises Unavailable (code 11) and keeps it."""
    ipam = Recorder()
    ds, directory = make(tmp_path, ipam)
    ds.prepare()
    name = spool_one(directory, "ipam", "c1")
    ipam.fail = {"c1": Unavailable("controller down")}

    class Add:
        command, container_id, netns, ifname, config, path, args = "ADD", "c1", "/n", "eth0", b"", "", ""
        present: list[str] = []

    with pytest.raises(Unavailable) as caught:
        await ds.settle("ipam", Add())
    assert caught.value.cni_code == codes.TRY_AGAIN_LATER
    assert ds.pending() == [name]


async def test_the_loop_replays_a_del_spooled_while_the_agent_runs(tmp_path: Path) -> None:
    """With the loop running (a long interval), a DEL spooled meanwhile is replayed when the loop is
    woken, and the loop survives a pass whose handler raises."""
    ipam = Recorder()
    ds, directory = make(tmp_path, ipam, interval=3600.0)
    ds.prepare()
    loop = asyncio.create_task(ds.run())
    try:
        spool_one(directory, "ipam", "boom")
        ipam.fail = {"boom": CniError(codes.INTERNAL, "bug")}
        ds.wake()
        await wait_until(lambda: ipam.attempts == 1, "the first pass to fail")
        spool_one(directory, "ipam", "late")
        ds.wake()
        await wait_until(lambda: ("late", "eth0", STDIN) in ipam.calls, "the loop to replay the DEL")
        ipam.fail = {}
        ds.wake()
        await wait_until(lambda: ds.pending() == [], "the spool to empty")
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
