"""grpcio's and asyncio's own log records reach stderr as the services' JSON lines.

A child process configures logging as the services do and makes grpcio (a servicer that
raises) and asyncio (an exception handed to the loop) log through the standard library;
every stderr line must be one JSON object with the services' keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EMITTER = Path(__file__).with_name("stdlib_log_emitter.py")


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The child's stderr, every line parsed as one JSON object."""
    proc = subprocess.run(
        [sys.executable, str(EMITTER), str(tmp_path_factory.mktemp("log") / "log.sock")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout == ""
    return [json.loads(line) for line in proc.stderr.splitlines()]  # each line is JSON, or this raises


def test_grpc_logger_output_arrives_as_a_json_line(emitted: list[dict[str, Any]]) -> None:
    """grpcio's servicer-crash record is a JSON line with level, timestamp, logger, context and traceback."""
    lines = [line for line in emitted if line.get("logger", "").startswith("grpc")]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["level"] == "error"
    assert "raised by servicer method [/test.Logging/Boom]" in line["event"]
    assert "RuntimeError: servicer bug" in line["exception"]
    assert line["timestamp"].endswith("Z")
    assert line["container_id"] == "ctr-9"


def test_asyncio_logger_output_arrives_as_a_json_line(emitted: list[dict[str, Any]]) -> None:
    """asyncio's exception-handler record is a JSON line under the asyncio logger."""
    lines = [line for line in emitted if line.get("logger") == "asyncio"]
    assert [(line["level"], line["event"]) for line in lines] == [("error", "loop_trouble")]


@pytest.mark.parametrize("package", ["spiderpool_controller", "spiderpool_agent", "spiderpool_tools"])
def test_a_service_package_keeps_grpcs_c_core_to_its_errors_unless_told_otherwise(package: str) -> None:
    """Importing a service's package sets GRPC_VERBOSITY=ERROR before grpc loads (the C core's INFO
    lines, such as a GOAWAY, are not JSON); an operator's own setting wins."""
    probe = f"import {package}, os; print(os.environ['GRPC_VERBOSITY'])"
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    quiet = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert quiet.stdout.strip() == "ERROR"
    env["GRPC_VERBOSITY"] = "DEBUG"
    loud = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert loud.stdout.strip() == "DEBUG"
