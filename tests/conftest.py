"""Rules for the whole suite, and the fixtures every layer shares.

pyproject.toml's ``[tool.pytest.ini_options]`` makes the run strict: ``--strict-markers``
(an unregistered marker is an error), ``--strict-config`` (so is an unknown config key)
and ``filterwarnings = error`` (a ResourceWarning from an unclosed socket, an un-awaited
coroutine or a deprecation fails the test that caused it; the few exceptions there each
say why). This file adds the rule CI depends on: no test skips or is expected to fail,
because CI runs everything as root; a skip or xfail, by marker or at run time, is a
failure here, not a quiet gap.

Timing is asserted against ``fake_clock`` (``tests/fake_clock.py``), never the wall
clock; waiting for something to happen uses ``tests/waiting.py``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.fake_clock import FakeClock

NO_SKIP = "no test may skip or be xfail: CI runs everything, as root (see tests/conftest.py)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a run in which any collected test carries a skip, skipif or xfail marker."""
    skipping = {"skip", "skipif", "xfail"}
    marked = [item.nodeid for item in items if any(m.name in skipping for m in item.iter_markers())]
    if marked:
        raise pytest.UsageError(f"{NO_SKIP}; marked: {', '.join(marked)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test or fixture that skips (or xfails) at run time fails instead, with the reason it gave."""
    report = yield
    if report.skipped:
        longrepr = report.longrepr
        said = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)  # (path, line, reason)
        reason = getattr(report, "wasxfail", "") or said
        report.outcome = "failed"
        report.longrepr = f"{NO_SKIP}; it said: {reason}"
    return report


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock at 0 that moves only through ``advance`` (inject ``fake_clock`` or ``fake_clock.sleep``)."""
    return FakeClock()
