"""A progress line on stderr for spiderpoolctl's long operations, only when a human watches.

Owns one habit of command-line tools: a bar (``apply``: documents done of all) or a spinner
with the elapsed time (a GC scan, a consistency check: one call whose length is unknown)
drawn on stderr with carriage returns, from half a second on (a quick command shows
nothing), redrawn at most ten times a second, and only when stderr is a terminal, so a
pipe, a log file or a test's captured output never sees it. A line printed to stdout
meanwhile goes through ``print``, which clears the bar first and redraws it after, so the
two never mix on one terminal line. ``close`` erases it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 30
REDRAW_S = 0.1
SHOW_AFTER_S = 0.5
SPINNER = "|/-\\"
CLEAR = "\r\x1b[K"


class Progress:
    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int | None = None,
        *,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self._done = 0
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._ticks = 0
        self._visible = False
        self.enabled = _is_tty(stream) if enabled is None else enabled

    def render(self) -> str:
        """The line as drawn now (no carriage return)."""
        if self._total:
            filled = WIDTH * self._done // self._total
            bar = "#" * filled + "." * (WIDTH - filled)
            return f"{self._label} [{bar}] {self._done}/{self._total}"
        elapsed = self._clock() - self._started
        return f"{self._label} {SPINNER[self._ticks % len(SPINNER)]} {elapsed:.0f}s"

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if self._drawn_at is None and now - self._started < SHOW_AFTER_S:
            return
        if not force and self._drawn_at is not None and now - self._drawn_at < REDRAW_S:
            return
        self._drawn_at = now
        self._stream.write(CLEAR + self.render())
        self._stream.flush()
        self._visible = True

    def advance(self, n: int = 1) -> None:
        """``n`` more items done (a bar); redraws when due, and always at the last item."""
        self._done += n
        self._draw(force=self._total is not None and self._done >= self._total)

    def tick(self) -> None:
        """Still working (a spinner): turn it and redraw when due."""
        self._ticks += 1
        self._draw()

    def print(self, line: str, file: TextIO) -> None:
        """Print ``line`` to ``file`` without mixing it into the bar."""
        self._erase()
        print(line, file=file)
        file.flush()
        if self.enabled and self._drawn_at is not None:
            self._draw(force=True)

    def _erase(self) -> None:
        if self._visible:
            self._stream.write(CLEAR)
            self._stream.flush()
            self._visible = False

    def close(self) -> None:
        self._erase()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or a stand-in stream
        return False
