"""The pod's connmark rules: replies to connections that entered through veth0 leave through it.

Owns the packet marking of upstream's cmd/coordinator/cmd/command_add.go. A new connection arriving
on ``veth0`` (the
node, kubelet probes, service traffic) is marked, the mark is saved on the connection, and
every locally generated packet restores it; the pod's ``fwmark 0x1 lookup 100`` rule (made
by ``netlink.py``) then sends the reply through veth0 whatever its destination.

Upstream installs the same three rules with iptables and ip6tables in the pod's ``mangle``
table. Here they live in one nftables table of family ``inet`` (both IP families), written
in one transaction through ``libnftables`` (Debian's ``nftables`` / ``libnftables1``) called
in-process from the thread that already sits in the pod's namespace: no ``nsenter``, no
``iptables`` process per rule and family (six processes of ~7 ms each per ADD before; the
transaction takes well under a millisecond). The output chain is of type ``route``, like
iptables' mangle OUTPUT, so a packet whose mark was restored is routed again.

A repeated ADD first lists the table and writes nothing when it is already whole; otherwise
the script adds the table and chains (``add`` of an existing one is a no-op), flushes the
two chains and adds the rules, so nothing is ever duplicated. CHECK compares the listing.
Every function here runs in the calling thread's network namespace.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from spiderpool_coordinator.errors import CoordinatorError
from spiderpool_coordinator.plan import FWMARK, POD_VETH

TABLE = "inet spiderpool_coordinator"
_MARK = f"0x{FWMARK:08x}"
# chain -> (its declaration, its rules), each as ``nft list`` prints it.
CHAINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "prerouting": (
        "type filter hook prerouting priority mangle; policy accept;",
        (
            f'iifname "{POD_VETH}" ct state new meta mark set meta mark | {_MARK}',
            f"meta mark & {_MARK} == {_MARK} ct mark set meta mark",
        ),
    ),
    "output": (
        "type route hook output priority mangle; policy accept;",
        ("meta mark set ct mark",),
    ),
}
_LIBRARY = "libnftables.so.1"


def script() -> str:
    """The idempotent nft script that makes the table exactly ``CHAINS``."""
    lines = [f"add table {TABLE}"]
    for chain, (decl, _) in CHAINS.items():
        lines.append(f"add chain {TABLE} {chain} {{ {decl} }}")
        lines.append(f"flush chain {TABLE} {chain}")
    for chain, (_, rules) in CHAINS.items():
        lines.extend(f"add rule {TABLE} {chain} {rule}" for rule in rules)
    return "\n".join(lines) + "\n"


@functools.cache
def _library() -> Any:
    try:
        lib = ctypes.CDLL(_LIBRARY)
    except OSError as exc:
        raise CoordinatorError(
            f"the connmark rules need {_LIBRARY} (Debian package nftables / libnftables1): {exc}"
        ) from exc
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    return lib


def run(commands: str) -> tuple[int, str, str]:
    """(status, output, error) of nft ``commands`` in the calling thread's namespace."""
    lib = _library()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise CoordinatorError("libnftables: cannot create a context")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        status = int(lib.nft_run_cmd_from_buffer(ctx, commands.encode()))
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    finally:
        lib.nft_ctx_free(ctx)
    return status, out, err


def _listed() -> dict[str, list[str]]:
    """chain -> its lines (declaration first, then rules) as listed; empty when no table."""
    status, out, _ = run(f"list table {TABLE}")
    if status != 0:
        return {}
    chains: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in out.splitlines():
        line = raw.strip()
        if line.startswith("chain ") and line.endswith("{"):
            current = chains.setdefault(line.split()[1], [])
        elif line == "}":
            current = None
        elif line and current is not None:
            current.append(line)
    return chains


def missing() -> list[str]:
    """What of ``CHAINS`` is absent or different, as readable strings (for CHECK)."""
    listed = _listed()
    if not listed:
        return [f"nftables table {TABLE}"]
    out: list[str] = []
    for chain, (decl, rules) in CHAINS.items():
        have = listed.get(chain)
        if have is None:
            out.append(f"nftables chain {TABLE} {chain}")
            continue
        if have[:1] != [decl]:
            out.append(f"nftables chain {TABLE} {chain}: {decl}")
        absent = [rule for rule in rules if rule not in have[1:]]
        out.extend(f"nftables rule {TABLE} {chain}: {rule}" for rule in absent)
        if not absent and have[1:] != list(rules):
            out.append(f"nftables chain {TABLE} {chain}: exactly {'; '.join(rules)}")
    return out


def ensure() -> None:
    """Make the connmark table exactly ``CHAINS``; writes nothing when it already is."""
    if not missing():
        return
    status, _, err = run(script())
    if status != 0:
        raise CoordinatorError(f"nftables connmark rules could not be set in the pod: {err.strip()}")
