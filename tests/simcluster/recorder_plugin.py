"""`sim-recorder`: a CNI plugin for tests that records how it was called and passes the result through.

Chained after a main plugin it appends one JSON line per call to the file named by its config's `record` key:
the verb, the CNI environment (`CNI_CONTAINERID`, `CNI_IFNAME`, `CNI_NETNS`, `CNI_ARGS`), the network name,
`runtimeConfig`, `args`, the addresses of `prevResult` and its own config's `tag`. ADD prints the `prevResult`
it was given (a chained plugin's duty), every other verb prints nothing. Tests read the file to see what the
kubelet stand-in did, in what order, with which identifiers. Standard library only (run with `python -I`).

Test hook: with `"hangOnce": PATH` in its config, the first ADD (the one that creates PATH) hangs after
recording itself, until its caller dies (a kubelet killed mid-ADD) or 60 s pass; later ADDs do not hang.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time

KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_ARGS")


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    raw = sys.stdin.read()
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}))
        return 0
    config = json.loads(raw) if raw else {}
    entry = {
        "command": command,
        "env": {k: os.environ.get(k, "") for k in KEYS},
        "network": config.get("name", ""),
        "tag": config.get("tag", ""),
        "runtimeConfig": config.get("runtimeConfig") or {},
        "args": config.get("args") or {},
        "ips": [ip.get("address", "") for ip in (config.get("prevResult") or {}).get("ips") or []],
    }
    record = config.get("record")
    if record:
        with open(record, "a", encoding="utf-8") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write(json.dumps(entry) + "\n")
    hang = config.get("hangOnce")
    if command == "ADD" and hang:
        try:
            os.close(os.open(hang, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            caller, until = os.getppid(), time.monotonic() + 60
            while os.getppid() == caller and time.monotonic() < until:
                time.sleep(0.05)
            return 1
    if command == "ADD":
        result = config.get("prevResult") or {"cniVersion": config.get("cniVersion", "1.0.0")}
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
