"""Reading a service's Prometheus endpoint in tests: its bound port from the log, one scrape.

The services log the port their ``--metrics-listen HOST:0`` bound (``metrics_port=N`` in the
console log); ``scrape`` reads ``/metrics`` over HTTP and parses it with prometheus_client's
own parser, so a sample is looked up by name and labels exactly as Prometheus stores it.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.component.agent_harness import DEADLINE
from tests.waiting import wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

Sample = tuple[str, frozenset[tuple[str, str]]]


def metrics_port(log_path: Path) -> int:
    """The port of the service's latest start (the last ``metrics_port=`` in its log)."""

    def found() -> list[str]:
        return re.findall(r"metrics_port=(\d+)", log_path.read_text()) if log_path.exists() else []

    return int(wait_for(found, f"metrics_port in {log_path}")[-1])


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[Sample, float] = {}
        self.families: set[str] = set()  # as in the TYPE lines (a counter without its _total)
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (a counter never incremented)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def documented(section: str, modes: tuple[str, ...] = ()) -> list[str]:
    """The metric names docs/metrics.md lists in ``section`` (``Controller`` or ``Agent``), as
    family names (a counter without ``_total``); with ``modes``, only rows of those modes."""
    text = DOCS.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `spiderpool_"):
            continue
        if modes and cells[3] not in modes:
            continue
        names.append(cells[0].strip("`").removesuffix("_total"))
    return names


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as response:
        return Scrape(response.read().decode())
