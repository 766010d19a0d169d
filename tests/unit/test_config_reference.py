"""The configuration reference is generated from the settings code: every setting, its flag (or
none), environment variable, type, default and source comment; and the committed page is current."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spiderpool_agent.settings import AgentSettings
from spiderpool_controller.settings import ControllerSettings
from spiderpool_tools import config_reference

ROOT = Path(__file__).resolve().parents[2]


def rows(text: str, section: str) -> dict[str, list[str]]:
    """The section's table rows by setting name, split into cells."""
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, list[str]] = {}
    for line in body.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            out[cells[0].strip("`")] = cells
    return out


def test_every_setting_of_both_services_is_listed_once() -> None:
    """The tables have exactly the dataclasses' fields, in their order."""
    text = config_reference.render()
    for section, cls in (("spiderpool-controller", ControllerSettings), ("spiderpool-agent", AgentSettings)):
        assert list(rows(text, section)) == [f.name for f in dataclasses.fields(cls)]


def test_a_row_names_flag_environment_type_default_and_description() -> None:
    """A flagged setting shows its flag and help; one without a flag says so and carries its comment."""
    agent = rows(config_reference.render(), "spiderpool-agent")
    assert agent["metrics_listen"][1:5] == [
        "`--metrics-listen`",
        "`SPIDERPOOL_METRICS_LISTEN`",
        "string",
        "(empty)",
    ]
    assert "Prometheus /metrics" in agent["metrics_listen"][5]
    assert agent["controller_timeout"][1:5] == [
        "(none)",
        "`SPIDERPOOL_CONTROLLER_TIMEOUT`",
        "number",
        "`30.0`",
    ]
    assert agent["controller_timeout"][5] == "deadline of one controller call, seconds"
    controller = rows(config_reference.render(), "spiderpool-controller")
    assert controller["allow_insecure_tcp"][1] == "`--insecure-tcp`"
    assert controller["gc_enabled"][3:5] == ["boolean", "`true`"]


def test_spiderpoolctl_commands_are_listed_with_their_options() -> None:
    """Every command, nested ones too, has a heading and its options, e.g. release's --yes."""
    text = config_reference.render()
    for command in ("apply", "get", "delete", "gc", "check", "release", "explain", "multus", "multus render"):
        assert f"### `spiderpoolctl {command}`" in text
    release = text.split("### `spiderpoolctl release`", 1)[1].split("###", 1)[0]
    assert "- `-y`, `--yes`: do not ask for confirmation" in release


def test_the_committed_page_is_what_the_code_generates() -> None:
    """docs/configuration.md is current (make docs regenerates it; CI runs make docs-verify)."""
    assert (ROOT / "docs" / "configuration.md").read_text() == config_reference.render()


def test_check_mode_fails_on_a_stale_page_and_writes_nothing(tmp_path: Path) -> None:
    """--check exits 1 for a missing or edited file and leaves it as it was; 0 once written."""
    page = tmp_path / "configuration.md"
    assert config_reference.main(["--out", str(page), "--check"]) == 1
    assert not page.exists()
    assert config_reference.main(["--out", str(page)]) == 0
    assert config_reference.main(["--out", str(page), "--check"]) == 0
    page.write_text(page.read_text().replace("spiderpool-agent", "agent"))
    edited = page.read_text()
    assert config_reference.main(["--out", str(page), "--check"]) == 1
    assert page.read_text() == edited
