"""What each attachment's ADD left on the node, recorded so that DEL and GC remove exactly that.

Owns the per-attachment record of the coordinator's node-side state and its files. An ADD
leaves, in the node's (the agent's) network namespace and nowhere else:

* for the first underlay NIC, the host end ``veth<containerID[:11]>`` of the veth pair
  (the coordinator made it, so DEL and GC delete it, and its peer ``veth0`` goes with it);
* for every NIC, a ``/32`` (``/128``) route to each of the NIC's addresses in the
  ``hostRuleTable`` (500 by default) through the host device, a permanent neighbour entry
  for each address on that device, and a rule ``to <address> lookup <hostRuleTable>`` at
  priority 1000. The host device is that veth (underlay), or the overlay CNI's host veth
  or its bridge (overlay NICs), which the coordinator does not own.

Everything else ADD does lives in the pod's namespace and goes with it: routes, rules and
neighbours there, sysctls, the MAC and queue length, and the connmark nftables table
``inet spiderpool_coordinator`` (``mangle.py`` runs in the thread that entered the pod).

Why a record on disk rather than tags on the kernel objects. A GC must find the node-side
objects of an attachment whose pod (and network namespace) may be long gone, and must tell
apart networks (GC is per network, and one node serves many). The objects that outlive a
pod are the host rules: the kernel drops a veth with its namespace, and the routes and
neighbour entries with the link, but a rule ``to <ip> lookup 500`` stays, and a rule can
carry no name, alias or owner (FRA_PROTOCOL is one byte for the whole node). A link alias
``spiderpool:<network>:<containerID>:<ifname>`` on the veth would only name the object that
needs no collecting. So the agent keeps one small file per attachment, written in the ADD's
own thread after planning and before the first route or rule is made (a crash before that
leaves at most a veth, which dies with the pod's namespace), removed by DEL and by GC once
the objects are gone. The record names the host device (with its index when the
coordinator does not own it, so a name reused by another pod's link is not mistaken for
it), whether the coordinator owns it, the addresses and the table: exactly what
``netlink.remove_host_side`` needs, and for GC nothing is inferred from the kernel.

Durability: the record is written atomically (temporary file, rename) but not fsynced. It
describes kernel state, which does not survive a reboot either; the page cache carries it
across an agent crash or restart, which is what it must survive. A record left from before
a reboot names objects that no longer exist, and removing them is harmless: a rule for an
address that a newer pod reuses is kept while a route to that address through another
link exists (``remove_host_side``).

Layout: ``<root>/<network>/<containerID>@<ifname>.json``. Network names and container IDs
are checked by the agent before they get here (alphanumeric first, then ``[A-Za-z0-9_.-]``,
so neither contains ``@`` or ``/``), and interface names contain no ``/``; the store checks
again and refuses anything that could leave its directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".json"
CORRUPT_SUFFIX = ".corrupt"


class RecordError(ValueError):
    """A name that cannot be a record's path component, or a record file that cannot be read."""


@dataclass(frozen=True)
class HostSide:
    """The node-side state of one attachment: enough to remove it without the pod."""

    host_dev: str  # the host link the routes go through
    owns_dev: bool  # the coordinator made it (first underlay NIC's veth): delete it
    ips: tuple[str, ...]  # the NIC's addresses (routes, neighbours and rules name them)
    table: int  # the hostRuleTable the routes and rules use
    host_index: int = 0  # the device's index when not owned (0: unknown, do not check)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hostDev": self.host_dev,
            "ownsDev": self.owns_dev,
            "ips": list(self.ips),
            "table": self.table,
            "hostIndex": self.host_index,
        }

    @classmethod
    def from_dict(cls, data: Any) -> HostSide:
        """Parse a record's ``hostSide``; ``RecordError`` names the first bad field."""
        if not isinstance(data, dict):
            raise RecordError("hostSide is not an object")
        dev, owns, ips, table, index = (
            data.get("hostDev"),
            data.get("ownsDev"),
            data.get("ips"),
            data.get("table"),
            data.get("hostIndex", 0),
        )
        if not isinstance(dev, str):
            raise RecordError("hostSide.hostDev is not a string")
        if not isinstance(owns, bool):
            raise RecordError("hostSide.ownsDev is not a boolean")
        if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
            raise RecordError("hostSide.ips is not an array of strings")
        return cls(
            host_dev=dev,
            owns_dev=owns,
            ips=tuple(ips),
            table=_natural("table", table),
            host_index=_natural("hostIndex", index),
        )


def _natural(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"hostSide.{name} is not a non-negative integer")
    return value


@dataclass(frozen=True)
class Record:
    """One attachment (network, container ID, interface) and what its ADD left on the node."""

    network: str
    container_id: str
    ifname: str
    side: HostSide

    @property
    def attachment(self) -> tuple[str, str]:
        """The (containerID, ifname) pair GC's valid list names."""
        return (self.container_id, self.ifname)


def _component(kind: str, value: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\0" in value or value.startswith("."):
        raise RecordError(f"{kind} {value!r} cannot name a host record")
    return value


class HostRecords:
    """The record files under ``root``; every method is a few small blocking file operations."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, network: str, container_id: str, ifname: str) -> Path:
        network = _component("network", network)
        container_id = _component("container ID", container_id)
        ifname = _component("interface", ifname)
        if "@" in container_id:
            raise RecordError(f"container ID {container_id!r} cannot name a host record")
        return self.root / network / f"{container_id}@{ifname}{SUFFIX}"

    def write(self, network: str, container_id: str, ifname: str, side: HostSide) -> None:
        """Record ``side`` for the attachment, replacing an earlier record atomically."""
        path = self.path(network, container_id, ifname)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {"network": network, "containerID": container_id, "ifname": ifname, "hostSide": side.to_dict()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body, sort_keys=True) + "\n")
        tmp.replace(path)

    def get(self, network: str, container_id: str, ifname: str) -> HostSide | None:
        """The attachment's record, or None when there is none (or it is unreadable)."""
        try:
            return _read(self.path(network, container_id, ifname)).side
        except (FileNotFoundError, RecordError):
            return None

    def remove(self, network: str, container_id: str, ifname: str) -> None:
        """Forget the attachment (its node-side objects are gone); no record is fine."""
        self.path(network, container_id, ifname).unlink(missing_ok=True)

    def network(self, network: str) -> tuple[list[Record], list[str]]:
        """Every record of ``network``, and the unreadable files found, each renamed to
        ``*.corrupt`` so it is reported once and never read again."""
        directory = self.root / _component("network", network)
        records: list[Record] = []
        corrupt: list[str] = []
        for path in _record_files(directory):
            try:
                record = self._read_own(path)
            except FileNotFoundError:
                continue  # a concurrent DEL removed it
            except RecordError as exc:
                corrupt.append(f"{path}: {exc}")
                path.replace(path.with_name(path.name + CORRUPT_SUFFIX))
                continue
            records.append(record)
        return records, corrupt

    def _read_own(self, path: Path) -> Record:
        record = _read(path)
        if self.path(record.network, record.container_id, record.ifname) != path:
            where = f"{record.network}/{record.container_id}/{record.ifname}"
            raise RecordError(f"names {where}, not its own path")
        return record


def _record_files(directory: Path) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.name
        if name.endswith(SUFFIX) and not name.startswith(".") and entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


def _read(path: Path) -> Record:
    raw = path.read_bytes()
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RecordError("not a JSON object")
    ids = [obj.get(key) for key in ("network", "containerID", "ifname")]
    if not all(isinstance(v, str) and v for v in ids):
        raise RecordError("network, containerID and ifname must be non-empty strings")
    network, container_id, ifname = (str(v) for v in ids)
    return Record(network, container_id, ifname, HostSide.from_dict(obj.get("hostSide")))
