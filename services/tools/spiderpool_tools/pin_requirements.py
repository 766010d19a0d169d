"""Pin the runtime dependencies of the installed project to the versions installed here (``make dist``).

The container image installs the wheel with ``pip install --no-deps -r requirements.txt``, so
the image holds exactly the versions the tests ran against: the project's own requirements
(extras such as ``test`` left out), their requirements, and so on, each as ``name==version``
as installed in this environment. A requirement whose marker does not apply here (another
Python, another platform) is left out like pip would. Build time only: needs ``packaging``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "spiderpool-py"


def runtime_closure(project: str = PROJECT) -> dict[str, str]:
    """Canonical name -> installed version of everything ``project`` needs at run time."""
    pinned: dict[str, str] = {}
    todo = [project]
    while todo:
        name = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            key = canonicalize_name(req.name)
            if key in pinned:
                continue
            version = metadata.version(req.name)
            if not req.specifier.contains(version, prereleases=True):
                raise SystemExit(f"pin_requirements: installed {req.name} {version} does not satisfy {req}")
            pinned[key] = version
            todo.append(req.name)
    return dict(sorted(pinned.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spiderpool_tools.pin_requirements",
        description="Print the runtime dependencies pinned to the installed versions.",
    )
    parser.add_argument("--project", default=PROJECT)
    args = parser.parse_args(argv)
    print(f"# {args.project}'s runtime dependencies as installed where `make dist` ran")
    for name, version in runtime_closure(args.project).items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
