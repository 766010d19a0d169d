"""Whether a program accepts a rendered container as it is: the chart/program drift checks.

Shared by tests/chart/test_chart_programs.py (every container of every value set) and the simulated cluster
(tests/simcluster/chart_deployment.py, before it starts the controllers and agents from the chart). Each
check takes what the kubelet would run (``Materialized``: the argv and environment with the volumes written
out) and hands it to the program's own parser and settings loader; it raises ``Drift`` for an option the
program does not have (spelt out: argparse would take a prefix), an argument or settings-file value it
refuses, or an environment variable it does not read.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from spiderpool_agent import main as agent_main
from spiderpool_agent import settings as agent_settings
from spiderpool_controller import settings as controller_settings

from tests.chart.rendered import Container, Materialized

AGENT_ENV = {"SPIDERPOOL_NODE_NAME", "MULTUS_CLUSTER_NETWORK"}  # variables the agent reads by name


class Drift(AssertionError):
    """A rendered container the program does not accept as it is."""


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option a parser (and its subcommands) accepts, spelt out."""
    out: set[str] = set()
    for action in parser._actions:
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= option_strings(sub)
    return out


def exact_flags(container: Container, parser: argparse.ArgumentParser, args: Sequence[str]) -> None:
    """argparse accepts a unique prefix of an option (``--manifest`` for ``--manifests``): the chart
    must spell every flag out, so a renamed option cannot keep working by accident."""
    known = option_strings(parser)
    for arg in args:
        if arg.startswith("--") and arg.split("=", 1)[0] not in known:
            raise Drift(f"{container.key}: {arg.split('=', 1)[0]} is not an option of {container.command[0]}")


def env_known(container: Container, env: dict[str, str], fields: set[str], extra: set[str]) -> None:
    """Every variable is a setting of the program (SPIDERPOOL_<FIELD>), one it reads by name, or one the
    container's own arguments reference as $(VAR)."""
    referenced = {m for arg in container.argv for m in re.findall(r"\$\(([A-Za-z_0-9]+)\)", arg)}
    for name in env:
        known = name in extra or name in referenced or (
            name.startswith("SPIDERPOOL_") and name.removeprefix("SPIDERPOOL_").lower() in fields
        )  # fmt: skip
        if not known:
            raise Drift(f"{container.key}: environment variable {name} is read by nothing")


def check_controller(
    container: Container, run: Materialized, kubeconfig: Path
) -> controller_settings.ControllerSettings:
    """The controller's settings from the container's argv, environment and mounted settings file
    (``--kubeconfig`` added: it stands in for the in-cluster ServiceAccount)."""
    args = run.argv[1:]
    exact_flags(container, controller_settings.build_parser(), args)
    try:
        settings = controller_settings.load_settings([*args, f"--kubeconfig={kubeconfig}"], environ=run.env)
    except SystemExit as exc:
        raise Drift(f"{container.key}: the controller refuses its arguments {args}") from exc
    except ValueError as exc:
        raise Drift(f"{container.key}: {exc}") from exc
    env_known(container, run.env, {f.name for f in dataclasses.fields(settings)}, set())
    return settings


def check_agent(container: Container, run: Materialized) -> agent_settings.AgentSettings:
    """The agent's settings from the container's argv, environment and mounted settings file."""
    exact_flags(container, agent_main.build_parser(), run.argv[1:])
    try:
        args = agent_main.build_parser().parse_args(run.argv[1:])
    except SystemExit as exc:
        raise Drift(f"{container.key}: the agent refuses its arguments {run.argv[1:]}") from exc
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        settings = agent_settings.load_settings(flags, env=run.env, config_file=args.config)
    except ValueError as exc:
        raise Drift(f"{container.key}: {exc}") from exc
    env_known(container, run.env, {f.name for f in dataclasses.fields(settings)}, AGENT_ENV)
    return settings
