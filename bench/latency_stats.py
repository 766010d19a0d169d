"""The latency percentiles every benchmark reports, computed one way (bench/ is the scripts' directory)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile_ms(latencies_s: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``latencies_s`` in milliseconds (the median for 0.5; NaN when empty)."""
    if not latencies_s:
        return float("nan")
    ordered = sorted(latencies_s)
    if q == 0.5:
        return statistics.median(ordered) * 1000
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000
