"""structlog, configured once per process: contextvars, level, ISO UTC time, JSON or console.

Event names are snake_case facts (``ip_allocated``); values go in keys. Each RPC binds
``rpc``, ``pod``, ``container_id``, ``ifname`` and ``network`` to the context
(``grpc_server.translate_errors``), so every line logged while serving it carries them.

Libraries that log through the standard library (grpcio's ``grpc`` logger, ``asyncio``,
``py.warnings``) reach the same stream through a root handler whose
``structlog.stdlib.ProcessorFormatter`` runs the same processors and renderer: one JSON
object per line, whoever logged it, plus a ``logger`` key naming the stdlib logger.
structlog's own events skip the stdlib machinery (``PrintLogger``), which is faster.
grpcio's C core writes to stderr on its own (``GRPC_VERBOSITY``) and is not covered.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

# Marks the root handler this module installed, so a second configure replaces it.
_HANDLER_NAME = "spiderpool-structlog"


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger for a long-running process (stderr by default)."""
    lvl = _LEVELS.get(level.lower())
    if lvl is None:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}")
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        raise ValueError(f"unknown log format {fmt!r}; expected json or console")
    out = stream or sys.stderr
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(lvl, out, shared, renderer)


def _route_stdlib_logging(
    lvl: int, out: TextIO, shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor
) -> None:
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(lvl)
    logging.captureWarnings(True)
