"""Print the third-party requirements of the given pyproject files, one per line.

Local packages (``astra-*``) are left out: the Dockerfiles install those from source with
``--no-deps`` after this layer, so the dependency layer is rebuilt only when a pyproject
changes. Standard library only; runs on the bare base image.

Usage: python docker/deps.py proto/pyproject.toml libs/common/pyproject.toml ...
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

LOCAL_PREFIX = "astra-"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalized_name(requirement: str) -> str:
    """The PEP 503 normalized project name at the start of a PEP 508 requirement."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def is_local(requirement: str) -> bool:
    """Whether the requirement names one of this repository's own packages."""
    return normalized_name(requirement).startswith(LOCAL_PREFIX)


def third_party_requirements(pyprojects: Iterable[Path]) -> list[str]:
    """``[project].dependencies`` of every file minus local packages, deduplicated in order."""
    seen: set[str] = set()
    requirements: list[str] = []
    for path in pyprojects:
        with path.open("rb") as file:
            project = tomllib.load(file).get("project", {})
        for requirement in project.get("dependencies", []):
            text = requirement.strip()
            if is_local(text) or text in seen:
                continue
            seen.add(text)
            requirements.append(text)
    return requirements


def main(argv: Sequence[str] | None = None) -> int:
    """Print the requirements of the pyproject files named in ``argv``."""
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: deps.py PYPROJECT [PYPROJECT ...]", file=sys.stderr)
        return 2
    for requirement in third_party_requirements(paths):
        print(requirement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
