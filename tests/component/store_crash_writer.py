"""Child process for the kill -9 durability test: writes to a SQLite store until killed.

Run as ``python store_crash_writer.py DB ROUND SIZE``. Before each write it prints
``begin N``, and only after the write returned ``acked N OP NAME RV VALUE`` (flushed), so
the parent knows exactly which writes were answered. ``SIZE`` is ``small`` or ``large``
(a ~200 KB status on every status write, so a kill often lands inside a big commit).
Objects are named after ``ROUND`` so the rounds sharing one file never touch each other.
"""

from __future__ import annotations

import asyncio
import sys

from spiderpool_controller.store.sqlite import SqliteStore

KIND = "SpiderIPPool"
LARGE_BLOB = "a" * 200_000


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def write_forever(path: str, round_id: str, size: str) -> None:
    blob = LARGE_BLOB if size == "large" else ""
    store = SqliteStore(path)
    counter_name = f"r{round_id}-counter"
    say("begin 0")
    counter = await store.create(
        {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": KIND, "metadata": {"name": counter_name}}
    )
    say(f"acked 0 create {counter_name} {counter['metadata']['resourceVersion']} 0")
    n = 0
    while True:
        n += 1
        say(f"begin {n}")
        if n % 3 == 0:
            name = f"r{round_id}-o{n}"
            obj = {
                "apiVersion": "spiderpool.spidernet.io/v2beta1",
                "kind": KIND,
                "metadata": {"name": name},
                "spec": {"n": n},
            }
            created = await store.create(obj)
            say(f"acked {n} create {name} {created['metadata']['resourceVersion']} {n}")
        else:
            counter = await store.update_status({**counter, "status": {"n": n, "blob": blob}})
            say(f"acked {n} status {counter_name} {counter['metadata']['resourceVersion']} {n}")


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1], sys.argv[2], sys.argv[3]))
