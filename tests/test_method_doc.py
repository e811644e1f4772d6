"""docs/method.md defines every stage code the code cites, and names only what exists.

A docstring or comment that cites a stage (``Stage B3``, ``(docs/method.md A2-A3)``,
``part A``) must find a heading for it on the page; every module, file, REST endpoint and CLI
command the page names in backticks must exist; and every reference to the method page must
name a file that exists (case included).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import typer.main
from service_apps import routes_by_service

from astra.cli import app as cli_app

REPO_ROOT = Path(__file__).resolve().parents[1]
METHOD_PAGE = REPO_ROOT / "docs" / "method.md"
CODE_ROOTS = ("services", "src", "libs", "proto")
PACKAGE_ROOTS = {
    "astra": REPO_ROOT / "src" / "astra",
    "astra_proto": REPO_ROOT / "proto" / "src" / "astra_proto",
    "astra_common": REPO_ROOT / "libs" / "common" / "src" / "astra_common",
    "astra_synth": REPO_ROOT / "services" / "synth" / "src" / "astra_synth",
    "astra_envhost": REPO_ROOT / "services" / "envhost" / "src" / "astra_envhost",
    "astra_rollout": REPO_ROOT / "services" / "rollout" / "src" / "astra_rollout",
    "astra_trainer": REPO_ROOT / "services" / "trainer" / "src" / "astra_trainer",
}

_CODE = r"[ABC][1-9]?"
_SPAN = rf"{_CODE}(?:\s*[-\u2013]\s*{_CODE})?"
# "method.md C", "Stage B3", "part A": a code after a word that says it is one. A bare "C"
# needs that context ("Ctrl-C" is no citation); A1-A9 and B1-B9 are codes wherever they stand.
_CITED_AFTER_WORD = re.compile(rf"(?:method\.md|\b[Ss]tages?|\b[Pp]arts?)\s+({_SPAN})\b")
_CITED_BARE = re.compile(r"\b([AB][1-9](?:\s*[-\u2013]\s*[AB][1-9])?)\b")
_DEFINED = re.compile(rf"^#{{2,3}}\s+({_CODE})\.\s", re.MULTILINE)
_PAGE_REFERENCE = re.compile(r"(?i)(?<![\w/.-])((?:[\w.-]+/)*method\.md)\b")
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_ENDPOINT = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")


def expand(span: str) -> list[str]:
    """``B1-B3`` -> ``[B1, B2, B3]``; a single code -> itself."""
    parts = [part.strip() for part in re.split(r"[-\u2013]", span)]
    if len(parts) == 1:
        return parts
    first, last = parts
    if first[0] != last[0] or len(first) < 2 or len(last) < 2:
        return [first, last]
    return [f"{first[0]}{n}" for n in range(int(first[1:]), int(last[1:]) + 1)]


def cited_codes(text: str) -> set[str]:
    """The stage codes a piece of prose cites."""
    spans = _CITED_AFTER_WORD.findall(text) + _CITED_BARE.findall(text)
    return {code for span in spans for code in expand(span)}


def prose_of(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and docstring (any string statement) of a module."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            yield node.lineno, node.value.value
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def code_files() -> Iterator[Path]:
    """The project's Python sources (no virtual environments, no generated schemas)."""
    for root in CODE_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            if not {".venv", "node_modules", "build"} & set(path.parts):
                yield path


def defined_codes(page: str) -> set[str]:
    """The stage codes the page defines: headings ``## A.``, ``### B3.``."""
    return set(_DEFINED.findall(page))


def undefined_citations(
    files: Iterable[Path], defined: set[str], root: Path = REPO_ROOT
) -> list[str]:
    """``path:line: code`` for every citation of a code the page does not define."""
    missing = []
    for path in files:
        for line, text in prose_of(path.read_text()):
            for code in sorted(cited_codes(text) - defined):
                missing.append(f"{path.relative_to(root)}:{line}: {code}")
    return missing


def broken_page_references(path: Path, text: str) -> list[str]:
    """References to the method page that name no file (resolved from the repo or docs/)."""
    broken = []
    for name in _PAGE_REFERENCE.findall(text):
        candidates = [REPO_ROOT / name, REPO_ROOT / "docs" / name, path.parent / name]
        if not any(candidate.is_file() for candidate in candidates):
            broken.append(f"{path.relative_to(REPO_ROOT)}: {name}")
    return broken


def _module_names(path: Path) -> set[str]:
    """Names bound at the top level of a module, imports included."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def dotted_name_problem(name: str) -> str | None:
    """Why ``astra_x.module[.attribute]`` does not resolve to source, or None when it does."""
    package, *rest = name.split(".")
    path = PACKAGE_ROOTS.get(package)
    if path is None:
        return f"{name}: unknown package {package}"
    while rest and (path / rest[0]).is_dir():
        path = path / rest.pop(0)
    if rest and (path / f"{rest[0]}.py").is_file():
        module = path / f"{rest.pop(0)}.py"
    else:
        module = path / "__init__.py"
    if not module.is_file():
        return f"{name}: no module {module.relative_to(REPO_ROOT)}"
    if rest and rest[0] not in _module_names(module):
        return f"{name}: {module.relative_to(REPO_ROOT)} defines no {rest[0]}"
    return None


def cli_problem(root: object, command_line: str) -> str | None:
    """Why ``astra <command> [--option ...]`` is not a command of the CLI, or None."""
    command = root
    words = command_line.split()[1:]
    # Typer ships its own click: groups are told by their ``commands`` mapping, not by type.
    while words and isinstance(subcommands := getattr(command, "commands", None), dict):
        if words[0] not in subcommands:
            return f"{command_line}: no command {words[0]!r}"
        command, words = subcommands[words[0]], words[1:]
    if isinstance(getattr(command, "commands", None), dict):
        return f"{command_line}: names a group, not a command"
    options = {opt for param in getattr(command, "params", []) for opt in param.opts}
    unknown = [word for word in words if word.startswith("--") and word not in options]
    return f"{command_line}: no option {unknown[0]}" if unknown else None


def service_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route of the four services; ``*`` stands for any method."""
    return set().union(*routes_by_service(tmp_path).values())


# The page against the code.


def test_every_cited_stage_code_is_defined_on_the_page() -> None:
    defined = defined_codes(METHOD_PAGE.read_text())
    assert {"A", "B", "C"} <= defined
    assert undefined_citations(code_files(), defined) == []


def test_every_reference_to_the_page_names_a_file() -> None:
    texts = [(path, path.read_text()) for path in code_files()]
    docs = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    texts += [(path, path.read_text()) for path in docs]
    broken = [problem for path, text in texts for problem in broken_page_references(path, text)]
    assert broken == []


def test_page_is_linked_from_readme_and_architecture() -> None:
    assert "(docs/method.md)" in (REPO_ROOT / "README.md").read_text()
    assert "(method.md)" in (REPO_ROOT / "docs" / "architecture.md").read_text()


def test_modules_and_files_named_on_the_page_exist() -> None:
    spans = _BACKTICKED.findall(METHOD_PAGE.read_text())
    dotted = [s for s in spans if re.fullmatch(r"astra(_\w+)?(\.\w+)+", s)]
    files = [s for s in spans if re.fullmatch(r"[\w.-]+(/[\w.-]+)+\.(py|md)", s)]
    assert len(dotted) > 30  # the page names its modules
    problems = [p for p in map(dotted_name_problem, dotted) if p]
    problems += [f"{name}: no such file" for name in files if not (REPO_ROOT / name).is_file()]
    assert problems == []


def test_endpoints_named_on_the_page_exist(tmp_path: Path) -> None:
    routes = service_routes(tmp_path)
    spans = _BACKTICKED.findall(METHOD_PAGE.read_text())
    named = [m.groups() for m in map(_ENDPOINT.fullmatch, spans) if m]
    named += [("*", s) for s in spans if s.startswith("/") and " " not in s]
    assert len(named) > 15
    paths = {path for _, path in routes}
    missing = [
        f"{method} {path}"
        for method, path in named
        if (method, path) not in routes and not (method == "*" and path in paths)
    ]
    assert missing == []


def test_cli_commands_named_on_the_page_exist() -> None:
    root = typer.main.get_command(cli_app)
    spans = [s for s in _BACKTICKED.findall(METHOD_PAGE.read_text()) if s.startswith("astra ")]
    assert len(spans) > 10
    assert [p for p in (cli_problem(root, span) for span in spans) if p] == []


# The checks themselves: they catch what they are for, and only that.


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("Stage B3 prompts", {"B3"}),
        ("(docs/method.md A2-A3): tool-call graph", {"A2", "A3"}),
        ("pipeline (docs/method.md B1\u2013B5)", {"B1", "B2", "B3", "B4", "B5"}),
        ("decompose (B1) -> judge (B2)", {"B1", "B2"}),
        ("Scores (docs/method.md C, per-tool)", {"C"}),
        ("Knobs (docs/method.md part A)", {"A"}),
        ("press Ctrl-C to stop; LANG=C.UTF-8", set()),
        ("a 0xA1 byte and section C of a form", set()),
    ],
)
def test_citations_are_recognised(text: str, codes: set[str]) -> None:
    assert cited_codes(text) == codes


def test_an_undefined_citation_is_reported(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text('"""Stage B7: not a stage."""\n\nX = 1  # see part C\n')
    assert undefined_citations([module], {"B7"}, root=tmp_path) == ["probe.py:3: C"]
    assert undefined_citations([module], {"C"}, root=tmp_path) == ["probe.py:1: B7"]
    assert undefined_citations([module], {"B7", "C"}, root=tmp_path) == []


def test_a_page_reference_to_a_missing_file_is_reported() -> None:
    here = REPO_ROOT / "tests" / "x.py"
    assert broken_page_references(here, "see docs/method.md and method.md") == []
    assert broken_page_references(here, "(METHOD.md B1)") == ["tests/x.py: METHOD.md"]


def test_a_missing_module_attribute_or_command_is_reported() -> None:
    assert dotted_name_problem("astra_synth.llm_pipeline.decompose") is None
    assert dotted_name_problem("astra_proto.answers.output_holds_answer") is None
    assert dotted_name_problem("astra_synth.llm_pipeline.decompose.no_such_name") is not None
    assert dotted_name_problem("astra_synth.no_such_module") is not None
    root = typer.main.get_command(cli_app)
    assert cli_problem(root, "astra synth run --source qa --qa FILE") is None
    assert cli_problem(root, "astra synth run --no-such-option") is not None
    assert cli_problem(root, "astra synth no-such-command") is not None
