"""The CLI is a client only and services never import each other.

Every module of ``src/astra`` and of each service package is parsed (``ast``, so imports
inside functions and under ``TYPE_CHECKING`` count too): the CLI may import ``astra_proto``
and ``astra_common`` but no service package, and a service no other service's package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = {
    "astra_synth": ROOT / "services" / "synth" / "src" / "astra_synth",
    "astra_envhost": ROOT / "services" / "envhost" / "src" / "astra_envhost",
    "astra_rollout": ROOT / "services" / "rollout" / "src" / "astra_rollout",
    "astra_trainer": ROOT / "services" / "trainer" / "src" / "astra_trainer",
}
CLI_PACKAGE = ROOT / "src" / "astra"


def imported_packages(source: str) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def forbidden_imports(root: Path, own: str | None) -> list[str]:
    """``file:line imports package`` for each service package (other than ``own``) that a
    module under ``root`` imports."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, package in sorted(imported_packages(path.read_text())):
            if package in SERVICE_PACKAGES and package != own:
                found.append(f"{path.relative_to(root.parent)}:{line} imports {package}")
    return found


def test_the_cli_imports_no_service_package() -> None:
    assert forbidden_imports(CLI_PACKAGE, own=None) == []


def test_no_service_imports_another_service() -> None:
    problems = [
        problem
        for package, root in SERVICE_PACKAGES.items()
        for problem in forbidden_imports(root, own=package)
    ]
    assert problems == []


def test_every_package_is_found() -> None:
    for root in [CLI_PACKAGE, *SERVICE_PACKAGES.values()]:
        assert (root / "__init__.py").is_file(), root


def test_late_and_type_checking_imports_are_caught(tmp_path: Path) -> None:
    package = tmp_path / "astra_probe"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import astra_proto\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from astra_rollout.settings import RolloutSettings\n"
        "def late() -> None:\n"
        "    import astra_trainer.models as models\n"
        "    from astra_synth import procedural\n"
    )
    assert forbidden_imports(package, own=None) == [
        "astra_probe/__init__.py:5 imports astra_rollout",
        "astra_probe/__init__.py:7 imports astra_trainer",
        "astra_probe/__init__.py:8 imports astra_synth",
    ]
    # A service may import itself, not another.
    assert forbidden_imports(package, own="astra_synth") == [
        "astra_probe/__init__.py:5 imports astra_rollout",
        "astra_probe/__init__.py:7 imports astra_trainer",
    ]
