"""``spiderpool-controller``: parse settings, configure logging, run. Dispatch only.

Exit codes: 0 stopped by a signal, 1 could not start (the store or the socket refused,
one line on stderr), 2 bad settings (one line naming the setting).
"""

from __future__ import annotations

import asyncio
import sys

from spiderpool_common.errors import SpiderpoolError
from spiderpool_common.logging import configure_logging

from spiderpool_controller.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
        configure_logging(settings.log_level, settings.log_format)
    except (ValueError, OSError) as exc:
        print(f"spiderpool-controller: {exc}", file=sys.stderr)
        return 2
    from spiderpool_controller.server import run  # noqa: PLC0415 (keep --help fast)

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    except (OSError, SpiderpoolError) as exc:  # the store refused (locked, not ours), the socket is taken
        print(f"spiderpool-controller: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
