"""The coordinator's per-attachment host records and the GC rule over them, on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spiderpool_coordinator import gc
from spiderpool_coordinator.host_records import HostRecords, HostSide, RecordError

SIDE = HostSide(host_dev="cni0", owns_dev=False, ips=("10.244.0.5", "fd00::5"), table=600, host_index=7)


def test_a_record_round_trips_and_is_keyed_by_network_container_and_interface(tmp_path: Path) -> None:
    """A written record reads back equal under its own key only, at <root>/<network>/<cid>@<ifname>.json,
    and leaves no temporary file behind; removing it twice is fine."""
    records = HostRecords(tmp_path)
    records.write("net-a", "ctr-1", "net1", SIDE)
    assert records.get("net-a", "ctr-1", "net1") == SIDE
    assert records.get("net-a", "ctr-1", "eth0") is None
    assert records.get("net-b", "ctr-1", "net1") is None
    assert sorted(p.name for p in (tmp_path / "net-a").iterdir()) == ["ctr-1@net1.json"]
    records.remove("net-a", "ctr-1", "net1")
    records.remove("net-a", "ctr-1", "net1")
    assert records.get("net-a", "ctr-1", "net1") is None


@pytest.mark.parametrize(
    ("network", "container_id", "ifname"),
    [("..", "c", "eth0"), ("a/b", "c", "eth0"), ("n", "../c", "eth0"), ("n", "c@d", "eth0"), ("n", "c", "")],
)
def test_names_that_could_leave_the_directory_are_refused(
    tmp_path: Path, network: str, container_id: str, ifname: str
) -> None:
    """A network, container ID or interface that is empty, a dot name, holds '/' (or '@' in the
    container ID) cannot name a record, and nothing is written."""
    with pytest.raises(RecordError):
        HostRecords(tmp_path / "r").write(network, container_id, ifname, SIDE)
    assert not (tmp_path / "r").exists()


def test_unreadable_records_are_set_aside_once_and_reported(tmp_path: Path) -> None:
    """Listing a network returns its good records; a non-JSON file, a record with a bad field and a
    record whose content names another attachment are renamed *.corrupt and reported, once."""
    records = HostRecords(tmp_path)
    records.write("net-a", "good", "eth0", SIDE)
    directory = tmp_path / "net-a"
    (directory / "junk@eth0.json").write_text("{not json")
    bad = {
        "network": "net-a",
        "containerID": "badtable",
        "ifname": "eth0",
        "hostSide": {**SIDE.to_dict(), "table": -1},
    }
    (directory / "badtable@eth0.json").write_text(json.dumps(bad))
    moved = {"network": "net-a", "containerID": "elsewhere", "ifname": "eth0", "hostSide": SIDE.to_dict()}
    (directory / "moved@eth0.json").write_text(json.dumps(moved))
    found, corrupt = records.network("net-a")
    assert [(r.container_id, r.side) for r in found] == [("good", SIDE)]
    assert len(corrupt) == 3
    assert any("not JSON" in c for c in corrupt)
    assert any("hostSide.table" in c for c in corrupt)
    assert any("not its own path" in c for c in corrupt)
    assert sorted(p.name for p in directory.iterdir() if p.name.endswith(".corrupt")) == [
        "badtable@eth0.json.corrupt",
        "junk@eth0.json.corrupt",
        "moved@eth0.json.corrupt",
    ]
    assert records.network("net-a")[1] == []


async def test_collect_removes_unlisted_records_of_its_network_and_keeps_failures(tmp_path: Path) -> None:
    """gc.collect calls remove for each of the network's records missing from the valid list, forgets
    the removed ones, keeps a failed one with its error, and never reads another network's records."""
    records = HostRecords(tmp_path)
    for network, cid in (("net-a", "keep"), ("net-a", "stale"), ("net-a", "stuck"), ("net-b", "other")):
        records.write(network, cid, "eth0", HostSide(f"veth{cid}", True, (f"10.0.0.{len(cid)}",), 500))
    removed: list[str] = []

    async def remove(side: HostSide) -> None:
        if side.host_dev == "vethstuck":
            raise RuntimeError("EBUSY")
        removed.append(side.host_dev)

    outcome = await gc.collect(records, "net-a", [("keep", "eth0")], remove)
    assert removed == ["vethstale"]
    assert [r.container_id for r in outcome.removed] == ["stale"]
    assert [r.container_id for r in outcome.kept] == ["keep"]
    assert outcome.errors == ["stuck/eth0: EBUSY"]
    assert records.get("net-a", "stale", "eth0") is None
    assert records.get("net-a", "stuck", "eth0") is not None
    assert records.get("net-b", "other", "eth0") is not None
