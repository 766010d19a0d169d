"""spiderpoolctl's progress line: only on a terminal, only after half a second, throttled, and never
mixed into the lines printed meanwhile."""

from __future__ import annotations

import io

from spiderpool_tools.progress import CLEAR, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_drawn_when_stderr_is_not_a_terminal() -> None:
    """A pipe or a captured stream never sees the bar, however long the work."""
    clock, stream = Clock(), io.StringIO()
    progress = Progress(stream, "applying", 3, clock=clock)
    clock.now += 5
    progress.advance()
    progress.close()
    assert stream.getvalue() == ""


def test_a_quick_operation_shows_nothing() -> None:
    """Work done within half a second leaves the terminal untouched."""
    clock, stream = Clock(), Terminal()
    progress = Progress(stream, "applying", 2, clock=clock)
    clock.now += 0.2
    progress.advance()
    progress.advance()
    progress.close()
    assert stream.getvalue() == ""


def test_a_bar_counts_items_redraws_at_most_ten_times_a_second_and_is_erased() -> None:
    """Once shown, the bar is redrawn when 0.1 s passed (and always at the last item), then erased."""
    clock, stream = Clock(), Terminal()
    progress = Progress(stream, "applying", 4, clock=clock)
    clock.now += 0.6
    progress.advance()
    assert stream.getvalue() == CLEAR + "applying [#######.......................] 1/4"
    clock.now += 0.05
    progress.advance()  # too soon: not redrawn
    assert stream.getvalue().count(CLEAR) == 1
    clock.now += 0.01
    progress.advance()
    progress.advance()  # the last item is always drawn
    assert stream.getvalue().endswith(CLEAR + "applying [##############################] 4/4")
    progress.close()
    assert stream.getvalue().endswith(CLEAR)


def test_a_spinner_shows_the_elapsed_seconds() -> None:
    """A call of unknown length turns a spinner with the time it has taken so far."""
    clock, stream = Clock(), Terminal()
    progress = Progress(stream, "consistency check", clock=clock)
    clock.now += 2.4
    progress.tick()
    assert stream.getvalue() == CLEAR + "consistency check / 2s"


def test_lines_printed_meanwhile_clear_the_bar_first_and_redraw_it_after() -> None:
    """A result line goes out on a line of its own, with the bar back below it."""
    clock, stream = Clock(), Terminal()
    out = Terminal()
    progress = Progress(stream, "applying", 2, clock=clock)
    clock.now += 1
    progress.advance()
    progress.print("spiderippool.spiderpool.spidernet.io/a created", out)
    assert out.getvalue() == "spiderippool.spiderpool.spidernet.io/a created\n"
    assert stream.getvalue().split(CLEAR)[1:] == [
        "applying [###############...............] 1/2",
        "",
        "applying [###############...............] 1/2",
    ]
