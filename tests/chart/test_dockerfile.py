"""deploy/Dockerfile, which cannot be built here, checked against what `make dist` and the chart need.

``make dist`` (one target) must produce every file the Dockerfile copies: the wheel, the pinned runtime
requirements and the interpreter bundle with the plugins' modules. Every Debian package is pinned to the
version installed on the machine the tests run on, every command a RUN line starts is one the base image or
an earlier instruction provides, the wheel installs every command the chart's containers and probes run,
and the bundle lands where the chart's init container looks for it.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from spiderpool_cni import pybundle

from tests.chart.rendered import REPO, containers, render
from tests.chart.value_sets import MONITORING

DOCKERFILE = REPO / "deploy" / "Dockerfile"
BASE_COMMANDS = {"apt-get", "rm"}  # what debian:*-slim ships that the RUN lines use


@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.strip().partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("make") / "dist"
    proc = subprocess.run(
        ["make", "-s", "dist", f"DIST={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def test_make_dist_produces_the_wheel_the_requirements_and_the_bundle(dist: Path) -> None:
    """One target: a wheel, every runtime requirement pinned, a verified bundle holding the shims."""
    (wheel,) = dist.glob("spiderpool_py-*.whl")
    requirements = [
        line for line in (dist / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert requirements and all(re.fullmatch(r"[a-z0-9._-]+==[0-9][^\s]*", r) for r in requirements), (
        requirements
    )
    assert {"grpcio", "kubernetes-asyncio", "structlog"} <= {r.split("==")[0] for r in requirements}
    manifest = pybundle.Manifest.load(dist / "pybundle")
    pybundle.verify(dist / "pybundle", manifest)
    assert {"site/spiderpool_cni/shim.py", "site/spiderpool_coordinator/shim.py"} <= set(manifest.files)
    with zipfile.ZipFile(wheel) as zf:
        assert "spiderpool_cni/install.py" in zf.namelist()


def test_every_file_the_dockerfile_copies_comes_out_of_make_dist(
    parsed: list[Instruction], dist: Path
) -> None:
    """Each COPY source is under dist/ and matches what make dist wrote (the wheel glob exactly one file)."""
    copies = [i for i in parsed if i.keyword == "COPY"]
    assert copies
    for copy in copies:
        *sources, _dest = shlex.split(copy.text)
        for source in sources:
            assert source.startswith("dist/"), f"COPY {source}: only make dist's output is copied"
            matches = [
                p for p in dist.parent.rglob("*") if fnmatch.fnmatch(str(p.relative_to(dist.parent)), source)
            ]
            matches = [p for p in matches if p.parent == dist or p == dist / source.removeprefix("dist/")]
            assert len(matches) == 1, f"COPY {source}: make dist produced {matches}"


def test_the_base_image_and_every_package_are_pinned_to_what_the_tests_run_on(
    parsed: list[Instruction],
) -> None:
    """FROM names a point release; each apt package is name=version, the version installed here."""
    (base,) = [i.text for i in parsed if i.keyword == "FROM"]
    assert re.fullmatch(r"debian:12\.\d+-slim", base), base
    assert Path("/etc/debian_version").read_text().strip() == base.split(":")[1].removesuffix("-slim")
    installs = [i.text for i in parsed if i.keyword == "RUN" and "apt-get install" in i.text]
    pinned = re.findall(r"([a-z0-9.+-]+)=([0-9][^\s]*)", " ".join(installs))
    assert {name for name, _ in pinned} >= {"python3.11", "python3.11-venv", "libnftables1"}
    words = [
        w
        for w in shlex.split(" ".join(installs))
        if not w.startswith("-") and w not in ("apt-get", "install")
    ]
    for word in words:
        if word in ("&&", "rm", "/var/lib/apt/lists/*", "update") or word.startswith("/"):
            continue
        assert "=" in word, f"apt package {word} is not pinned"
    for name, version in pinned:
        installed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=False
        ).stdout
        assert installed == version, (
            f"{name}: the image pins {version}, the tests run on {installed or 'none'}"
        )


def installed_with(packages: list[str], depth: int = 2) -> set[str]:
    """The packages and what they depend on (``depth`` levels), as dpkg records them here."""
    out = set(packages)
    frontier = list(packages)
    for _ in range(depth):
        found = []
        for package in frontier:
            depends = subprocess.run(
                ["dpkg-query", "-W", "-f=${Depends}", package], capture_output=True, text=True, check=False
            ).stdout
            found += [d.strip().split()[0].split(":")[0] for d in re.split(r"[,|]", depends) if d.strip()]
        frontier = [p for p in found if p not in out]
        out |= set(frontier)
    return out


def test_every_run_command_exists_when_it_runs(parsed: list[Instruction]) -> None:
    """A RUN step starts only commands of the base image, of a package installed before it, or of the venv
    an earlier step created."""
    available = set(BASE_COMMANDS)
    for instruction in parsed:
        if instruction.keyword != "RUN":
            continue
        for step in instruction.text.split("&&"):
            command = shlex.split(step)[0]
            assert command in available, f"RUN {step.strip()!r}: {command} does not exist yet"
            for package in installed_with(re.findall(r"([a-z0-9.+-]+)=[0-9]", step)):
                listed = subprocess.run(
                    ["dpkg", "-L", package], capture_output=True, text=True, check=False
                ).stdout
                available |= {Path(p).name for p in listed.splitlines() if p.startswith("/usr/bin/")}
            venv = re.search(r"-m venv (\S+)", step)
            if venv:
                available |= {f"{venv.group(1)}/bin/pip", f"{venv.group(1)}/bin/python"}


def test_the_chart_s_commands_are_installed_and_on_the_path(parsed: list[Instruction], dist: Path) -> None:
    """Every command of every rendered container and probe is a console script of the wheel, installed into
    the venv whose bin directory leads PATH; the bundle is copied where the init container reads it."""
    commands = set()
    for values in ({}, {"spiderpoolController": {"webhook": {"enabled": True}}}, MONITORING):
        rendered = render(values)
        for container in containers(rendered).values():
            commands.add(container.command[0])
            commands |= {p["exec"]["command"][0] for p in container.probes.values()}
    (wheel,) = dist.glob("spiderpool_py-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        scripts = {
            line.split("=")[0].strip()
            for line in zf.read(entry_points).decode().split("[console_scripts]")[1].splitlines()
            if "=" in line
        }
    assert commands <= scripts, sorted(commands - scripts)
    (env,) = [i.text for i in parsed if i.keyword == "ENV"]
    venv = re.search(r"-m venv (\S+)", " ".join(i.text for i in parsed if i.keyword == "RUN"))
    assert venv is not None and env.startswith(f"PATH={venv.group(1)}/bin:")
    bundle_copy = [i.text for i in parsed if i.keyword == "COPY" and "pybundle" in i.text]
    install_cni = containers(render())["DaemonSet/spiderpool-agent/install-cni"]
    assert [shlex.split(c)[-1] for c in bundle_copy] == [install_cni.flags()["--bundle"]]


def test_the_parser_reads_continuations_and_skips_comments() -> None:
    """The reader joins continued lines and ignores comments (so the checks above see every word)."""
    parsed = instructions("# c\nFROM a:1\nRUN x \\\n  && y\n\nCOPY b c\n")
    assert parsed == [Instruction("FROM", "a:1"), Instruction("RUN", "x    && y"), Instruction("COPY", "b c")]
