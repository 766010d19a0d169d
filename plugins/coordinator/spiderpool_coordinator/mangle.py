"""The pod's connmark rules: replies to connections that entered through veth0 leave through it.

Owns reference 5.3 step 10's packet marking. A new connection arriving on ``veth0`` (the
node, kubelet probes, service traffic) is marked, the mark is saved on the connection, and
every locally generated packet restores it; the pod's ``fwmark 0x1 lookup 100`` rule (made
by ``netlink.py``) then sends the reply through veth0 whatever its destination. The rules are
installed with the distribution's ``iptables``/``ip6tables`` run inside the pod namespace
(``nsenter --net``), checked with ``-C`` first so a repeated ADD adds nothing twice.
"""

from __future__ import annotations

import subprocess

from spiderpool_coordinator.errors import CoordinatorError
from spiderpool_coordinator.plan import FWMARK, POD_VETH

_MARK = f"{FWMARK:#x}/{FWMARK:#x}"
RULES: tuple[tuple[str, ...], ...] = (
    ("PREROUTING", "-i", POD_VETH, "-m", "conntrack", "--ctstate", "NEW", "-j", "MARK", "--set-xmark", _MARK),
    ("PREROUTING", "-m", "mark", "--mark", _MARK, "-j", "CONNMARK", "--save-mark"),
    ("OUTPUT", "-j", "CONNMARK", "--restore-mark"),
)
_TIMEOUT = 10.0


def _tool(version: int) -> str:
    return "iptables" if version == 4 else "ip6tables"


def _run(netns: str | None, argv: list[str]) -> subprocess.CompletedProcess[str]:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    try:
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CoordinatorError(f"running {argv[0]} in the pod failed: {exc}") from exc


def _present(netns: str | None, version: int, rule: tuple[str, ...]) -> bool:
    return _run(netns, [_tool(version), "-w", "-t", "mangle", "-C", *rule]).returncode == 0


def ensure(netns: str | None, versions: tuple[int, ...]) -> None:
    """Install the connmark rules for each IP family, once."""
    for version in versions:
        for rule in RULES:
            if _present(netns, version, rule):
                continue
            done = _run(netns, [_tool(version), "-w", "-t", "mangle", "-A", *rule])
            if done.returncode != 0:
                raise CoordinatorError(
                    f"{_tool(version)} -t mangle -A {' '.join(rule)} failed in the pod: {done.stderr.strip()}"
                )


def missing(netns: str | None, versions: tuple[int, ...]) -> list[str]:
    """The connmark rules that are absent, as readable strings (for CHECK)."""
    return [
        f"{_tool(version)} mangle {' '.join(rule)}"
        for version in versions
        for rule in RULES
        if not _present(netns, version, rule)
    ]
