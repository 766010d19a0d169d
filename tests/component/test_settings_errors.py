"""Bad settings stop the controller and the agent with one line naming the setting, never a traceback.

The programs are run as a user runs them, with a ``--config`` YAML file whose value has
the wrong type (a list, a mapping, null, a boolean for a number, a number for a text, a
non-finite number) or with an agent state directory that is a regular file. Each exits
2 before opening anything, its stderr one line that names the setting.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spiderpool_common.setting_values import convert

BIN = Path(sys.executable).parent
TIMEOUT_S = 60

CONTROLLER_VALUES = [
    ("max_allocated_ips", "[1]", "expected an integer, got a list"),
    ("max_allocated_ips", "true", "expected an integer, got a boolean"),
    ("max_allocated_ips", "1.5", "expected an integer, got a number"),
    ("enable_ipv4", '"maybe"', "'maybe' is not a boolean"),
    ("enable_ipv4", "1", "expected a boolean (true or false), got an integer"),
    ("conflict_quarantine_seconds", ".nan", "nan is not a finite number"),
    ("conflict_quarantine_seconds", "{a: 1}", "expected a number, got a mapping"),
    ("log_level", "5", "expected a string, got an integer"),
    ("listen", "[unix:/run/x.sock]", "expected a string, got a list"),
    ("metrics_listen", "null", "expected a string, got null"),
]
AGENT_VALUES = [
    ("controller_timeout", "[1]", "expected a number, got a list"),
    ("controller_timeout", ".inf", "inf is not a finite number"),
    ("check_netns", '"maybe"', "'maybe' is not a boolean"),
    ("socket", "5", "expected a string, got an integer"),
    ("node", "{a: b}", "expected a string, got a mapping"),
]


def run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stderr.decode()


def one_line(err: str, program: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith(f"{program}: "), err
    return err


@pytest.mark.parametrize(("name", "value", "fragment"), CONTROLLER_VALUES)
def test_a_wrongly_typed_controller_setting_is_one_line(
    tmp_path: Path, name: str, value: str, fragment: str
) -> None:
    """A controller --config value of the wrong type exits 2 naming the setting; no store is created."""
    config = tmp_path / "controller.yaml"
    config.write_text(f"{name}: {value}\n")
    store = f"sqlite://{tmp_path / 's.db'}"
    argv = [str(BIN / "spiderpool-controller"), "--config", str(config), "--store", store]
    code, err = run(argv)
    assert code == 2
    assert f"setting {name}: {fragment}" in one_line(err, "spiderpool-controller"), err
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("name", "value", "fragment"), AGENT_VALUES)
def test_a_wrongly_typed_agent_setting_is_one_line(
    tmp_path: Path, name: str, value: str, fragment: str
) -> None:
    """An agent --config value of the wrong type exits 2 naming the setting; no socket is created."""
    config = tmp_path / "agent.yaml"
    config.write_text(f"{name}: {value}\n")
    argv = [
        str(BIN / "spiderpool-agent"), "--config", str(config),
        "--socket", str(tmp_path / "a.sock"), "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    code, err = run(argv)
    assert code == 2
    assert f"setting {name}: {fragment}" in one_line(err, "spiderpool-agent"), err
    assert not (tmp_path / "a.sock").exists()


def test_an_agent_state_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    """``--state-dir`` naming a regular file exits 2 saying so, and the file is left alone."""
    state = tmp_path / "state"
    state.write_text("mine\n")
    argv = [
        str(BIN / "spiderpool-agent"), "--controller", f"unix:{tmp_path / 'c.sock'}",
        "--socket", str(tmp_path / "a.sock"), "--state-dir", str(state),
    ]  # fmt: skip
    code, err = run(argv)
    assert code == 2
    assert f"setting state_dir: {state} is not a directory" in one_line(err, "spiderpool-agent"), err
    assert state.read_text() == "mine\n"
    assert not (tmp_path / "a.sock").exists()


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("bool", True, True),
        ("bool", " Off ", False),
        ("int", 7, 7),
        ("int", "12", 12),
        ("float", 3, 3.0),
        ("float", "0.25", 0.25),
        ("str", "unix:/x", "unix:/x"),
    ],
)
def test_values_of_the_right_type_or_text_are_read(kind: str, value: object, expected: object) -> None:
    """YAML values of the declared type, and text from flags or the environment, convert."""
    result = convert("x", kind, value)
    assert result == expected and type(result) is type(expected)
