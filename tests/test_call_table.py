"""The table "Inter-service calls" of docs/architecture.md against the code.

The calls are found by scanning the source of every package that runs (``astra``,
``astra_common``, ``astra_proto`` and the four services) with these rules:

- HTTP: a string literal or f-string that, after a leading placeholder (a base URL) and
  without its query string, is a wire path: ``/v1/...``, ``/healthz``, or one of the
  OpenAI/vLLM endpoints the code calls relative to a base URL (``/chat/completions``,
  ``/models``, ``/collective_rpc``, ``/reset_prefix_cache``). Placeholders read as ``{}``.
- MCP: a path literal ending in ``/mcp``; and a module that imports the MCP SDK's ``Client``.
- Redis: a use of a Redis name that ``astra_proto.stream`` defines (its ``astra:`` constants),
  by constant or by its literal value.
- Typed clients: the HTTP calls of a service client (``astra_common.clients.<service>``) are
  found in its methods, as above, and counted where they are used: a module that imports a
  client class and calls one of the methods that class defines (``.start_batch(...)``) makes
  the calls of that method.

Docstrings are no calls. Modules that serve these paths, and a few strings that name a path
without calling it, are listed below with the reason. Every call found must have a row naming
its module; every row must be a call its modules make, to a route its callee app serves (the
apps' OpenAPI plus their MCP routes), naming models that exist in ``astra_proto``.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from service_apps import routes_by_service

import astra_proto
import astra_proto.api
import astra_proto.stream

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE_PAGE = REPO_ROOT / "docs" / "architecture.md"
SECTION = "## Inter-service calls"
CALLER_PACKAGES = {
    "astra": REPO_ROOT / "src" / "astra",
    "astra_common": REPO_ROOT / "libs" / "common" / "src" / "astra_common",
    "astra_proto": REPO_ROOT / "proto" / "src" / "astra_proto",
    "astra_synth": REPO_ROOT / "services" / "synth" / "src" / "astra_synth",
    "astra_envhost": REPO_ROOT / "services" / "envhost" / "src" / "astra_envhost",
    "astra_rollout": REPO_ROOT / "services" / "rollout" / "src" / "astra_rollout",
    "astra_trainer": REPO_ROOT / "services" / "trainer" / "src" / "astra_trainer",
}
SERVICES = ("synth", "envhost", "rollout", "trainer")
SERVING_MODULES = {
    "astra_common.service": "declares /healthz, /metrics and /v1/info of every app",
    "astra_envhost.app": "declares the MCP routes",
    "astra_envhost.fast_path": "answers the MCP route it names",
    "astra_proto.stream": "defines the Redis names",
}
NOT_CALLS = {
    ("astra_envhost.episodes", "/episodes/{}/mcp"): "the MCP URL an episode hands its client",
    ("astra.cli_demo", "/envs/{}/mcp"): "an address printed for the user",
}
REDIS_CONSTANTS = {
    name: value
    for name, value in vars(astra_proto.stream).items()
    if name.isupper() and isinstance(value, str) and value.startswith("astra:")
}
REDIS_NAMES = set(REDIS_CONSTANTS.values())
_WIRE_PATH = re.compile(
    r"/v1/[\w{}./-]+|/healthz|[\w{}/.-]*/mcp|/chat/completions|/models|/collective_rpc"
    r"|/reset_prefix_cache"
)
_TEMPLATE = re.compile(r"\{[^{}]*\}")
_HTTP_CALL = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")
_MCP_CALL = re.compile(r"^MCP(?: (/\S*))?(?: .*)?$")
_REDIS_CALL = re.compile(r"^(XADD|XREADGROUP|SET|GET) (astra:\w+)$")
_DB_CALL = re.compile(r"^DB \w+$")
_BACKTICKED = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Call:
    """One call as the scan sees it: kind (HTTP, MCP, Redis), target, and the calling module."""

    kind: str
    target: str
    module: str


@dataclass(frozen=True)
class Row:
    """One row of the table."""

    caller: str
    callee: str
    call: str
    contract: str
    modules: tuple[str, ...]

    def covers(self) -> set[tuple[str, str]]:
        """The (kind, target) pairs of the scan that this row accounts for."""
        if match := _HTTP_CALL.match(self.call):
            return {("HTTP", normalise(match.group(2)))}
        if match := _MCP_CALL.match(self.call):
            path = match.group(1)
            return {("MCP", "client")} | ({("MCP", normalise(path))} if path else set())
        if match := _REDIS_CALL.match(self.call):
            return {("Redis", match.group(2))}
        return set()


def normalise(path: str) -> str:
    """A path template with every placeholder as ``{}`` and no query string."""
    return _TEMPLATE.sub("{}", path.split("?")[0])


def module_name(package: str, root: Path, path: Path) -> str:
    """The dotted module name of ``path`` inside ``package`` at ``root``."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts).removesuffix(".__init__")


def _text(node: ast.Constant | ast.JoinedStr) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)


def scan_module(module: str, source: str) -> Iterator[Call]:
    """The calls a module's source makes, by the rules of this file's docstring."""
    tree = ast.parse(source)
    not_strings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            not_strings.update(id(value) for value in node.values)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            not_strings.add(id(node.value))  # docstrings and bare strings
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in REDIS_CONSTANTS:
            yield Call("Redis", REDIS_CONSTANTS[node.id], module)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mcp":
            if any(alias.name == "Client" for alias in node.names):
                yield Call("MCP", "client", module)
        elif id(node) in not_strings:
            continue
        elif isinstance(node, ast.JoinedStr) or (
            isinstance(node, ast.Constant) and isinstance(node.value, str)
        ):
            text = _text(node)
            if text in REDIS_NAMES:
                yield Call("Redis", text, module)
                continue
            path = normalise(text.removeprefix("{}"))
            if _WIRE_PATH.fullmatch(path) and (module, path) not in NOT_CALLS:
                yield Call("MCP" if path.endswith("/mcp") else "HTTP", path, module)


ClientMethods = dict[str, dict[str, set[tuple[str, str]]]]
"""Client class name → method name → the (kind, target) calls the method makes."""


def client_methods(module: str, source: str) -> ClientMethods:
    """The methods of the ``ServiceClient`` subclasses in a client module's source, each with
    the calls it makes itself or through another method of its class (``self.other()``)."""
    tree = ast.parse(source)
    found: ClientMethods = {}
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        if not any(isinstance(b, ast.Name) and b.id == "ServiceClient" for b in cls.bases):
            continue
        direct: dict[str, set[tuple[str, str]]] = {}
        uses: dict[str, set[str]] = {}
        for method in cls.body:
            if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = ast.Module(body=method.body, type_ignores=[])
            direct[method.name] = {
                (c.kind, c.target) for c in scan_module(module, ast.unparse(body))
            }
            uses[method.name] = {
                node.func.attr
                for node in ast.walk(method)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self"
            }
        for name in direct:
            seen, todo, calls = {name}, [name], set()
            while todo:
                current = todo.pop()
                calls |= direct.get(current, set())
                for other in uses.get(current, set()) & set(direct) - seen:
                    seen.add(other)
                    todo.append(other)
            if calls and not name.startswith("_"):
                found.setdefault(cls.name, {})[name] = calls
    return found


def scan_client_uses(module: str, source: str, clients: ClientMethods) -> Iterator[Call]:
    """The calls a module makes through the typed clients it imports: a call of a method that
    one of those client classes defines."""
    tree = ast.parse(source)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("astra_common.clients")
        for alias in node.names
        if alias.name in clients
    }
    methods: dict[str, set[tuple[str, str]]] = {}
    for name in imported:
        for method, calls in clients[name].items():
            methods.setdefault(method, set()).update(calls)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            for kind, target in methods.get(node.func.attr, ()):
                yield Call(kind, target, module)


def scan_packages(packages: dict[str, Path] = CALLER_PACKAGES) -> set[Call]:
    """Every call the running packages make (serving modules left out), directly or through
    a typed client."""
    sources: dict[str, str] = {}
    for package, root in packages.items():
        for path in sorted(root.rglob("*.py")):
            module = module_name(package, root, path)
            if module not in SERVING_MODULES:
                sources[module] = path.read_text()
    clients: ClientMethods = {}
    for module, source in sources.items():
        if module.startswith("astra_common.clients."):
            clients.update(client_methods(module, source))
    calls: set[Call] = set()
    for module, source in sources.items():
        if not module.startswith("astra_common.clients."):  # counted where they are used
            calls.update(scan_module(module, source))
        calls.update(scan_client_uses(module, source, clients))
    return calls


def table_rows(page: str) -> list[Row]:
    """The rows of the first table under the section heading (header and rule left out)."""
    if SECTION not in page:
        raise ValueError(f"the page has no section {SECTION!r}")
    section = page.split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != 5:
            raise ValueError(f"a row of the call table needs 5 cells: {line}")
        caller, callee, call, contract, modules = cells
        call_text = _BACKTICKED.fullmatch(call)
        rows.append(
            Row(
                caller,
                callee,
                call_text.group(1) if call_text else call,
                contract,
                tuple(_BACKTICKED.findall(modules)),
            )
        )
    return rows


def calls_missing_from_table(calls: Iterable[Call], rows: Iterable[Row]) -> list[str]:
    """``module: kind target`` for every call that no row with its module accounts for."""
    covered = {(module, pair) for row in rows for module in row.modules for pair in row.covers()}
    return sorted(
        f"{c.module}: {c.kind} {c.target}"
        for c in calls
        if (c.module, (c.kind, c.target)) not in covered
    )


def made_by(calls: Iterable[Call], module: str, pair: tuple[str, str]) -> bool:
    """Whether ``module`` makes the call ``(kind, target)``; a placeholder in the code (a
    path built from a variable, ``/v1/runs/{kind}``) stands for any one path segment."""
    kind, target = pair
    wanted = target.split("/")
    for call in calls:
        if call.module != module or call.kind != kind:
            continue
        found = call.target.split("/")
        if len(found) == len(wanted) and all(
            f in ("{}", w) for f, w in zip(found, wanted, strict=True)
        ):
            return True
    return False


def rows_not_in_code(calls: Iterable[Call], rows: Iterable[Row]) -> list[str]:
    """Rows that no module they name makes, rows of an unknown call shape, unknown modules."""
    problems = []
    for row in rows:
        for module in row.modules:
            if module_file(module) is None:
                problems.append(f"{row.call}: no module {module}")
        if _DB_CALL.match(row.call):
            continue  # a shared table: the scan has no rule for it, the modules must exist
        pairs = row.covers()
        if not pairs:
            problems.append(f"{row.call}: not an HTTP, MCP, Redis or DB call")
        elif not row.modules:
            problems.append(f"{row.call}: names no module")
        elif not any(made_by(calls, m, pair) for m in row.modules for pair in pairs):
            problems.append(f"{row.call}: not made by {', '.join(row.modules)}")
    return problems


def rows_not_served(rows: Iterable[Row], routes: dict[str, set[tuple[str, str]]]) -> list[str]:
    """HTTP and MCP rows to one of our services whose route that service does not serve."""
    problems = []
    for row in rows:
        callees = list(SERVICES) if row.callee == "every service" else [row.callee]
        if not set(callees) <= set(SERVICES) or _DB_CALL.match(row.call):
            continue  # vLLM, an LLM, external MCP servers, Redis; a shared table
        if match := _HTTP_CALL.match(row.call):
            wanted = {(match.group(1), match.group(2))}
        elif (match := _MCP_CALL.match(row.call)) and match.group(1):
            wanted = {("POST", match.group(1)), ("*", match.group(1))}
        else:
            problems.append(f"{row.call}: a call to {row.callee} must name its route")
            continue
        for callee in callees:
            if not wanted & routes[callee]:
                problems.append(f"{row.call}: {callee} serves no such route")
    return problems


def proto_has(name: str) -> bool:
    """Whether ``astra_proto`` or one of its ``astra_proto.api.<service>`` modules defines
    ``name``."""
    modules = [importlib.import_module(f"astra_proto.api.{s}") for s in astra_proto.api.SERVICES]
    return any(hasattr(module, name) for module in (astra_proto, *modules))


def unknown_contracts(rows: Iterable[Row]) -> list[str]:
    """Model names in the contract column that ``astra_proto`` (with its ``api`` modules) does
    not define."""
    problems = []
    for row in rows:
        for span in _BACKTICKED.findall(row.contract):
            for name in re.findall(r"[A-Z]\w*", span):
                if not proto_has(name):
                    problems.append(f"{row.call}: astra_proto has no {name}")
    return problems


def module_file(module: str) -> Path | None:
    """The source file of a dotted module of the running packages, or None."""
    package, *rest = module.split(".")
    root = CALLER_PACKAGES.get(package)
    if root is None:
        return None
    candidates = [root.joinpath(*rest, "__init__.py")]
    if rest:
        candidates.append(root.joinpath(*rest).with_suffix(".py"))
    return next((candidate for candidate in candidates if candidate.is_file()), None)


# The table against the code.


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return table_rows(ARCHITECTURE_PAGE.read_text())


@pytest.fixture(scope="module")
def calls() -> set[Call]:
    return scan_packages()


def test_the_scan_finds_calls_of_every_kind(calls: set[Call]) -> None:
    kinds = {call.kind for call in calls}
    assert kinds == {"HTTP", "MCP", "Redis"}
    assert len({call.module for call in calls}) > 20


def test_every_call_in_the_code_has_a_row(calls: set[Call], rows: list[Row]) -> None:
    assert calls_missing_from_table(calls, rows) == []


def test_every_row_is_a_call_its_modules_make(calls: set[Call], rows: list[Row]) -> None:
    assert rows_not_in_code(calls, rows) == []


def test_every_row_to_a_service_names_a_route_it_serves(rows: list[Row], tmp_path: Path) -> None:
    assert rows_not_served(rows, routes_by_service(tmp_path)) == []


def test_every_contract_names_a_proto_model(rows: list[Row]) -> None:
    assert unknown_contracts(rows) == []


# The checks themselves: they catch what they are for.


PROBE_TABLE = f"""{SECTION}

| caller | callee | call | contract | module |
|---|---|---|---|---|
| rollout | envhost | `POST /v1/episodes` | `EpisodeRequest` → `Episode` | \
`astra_rollout.envhost_client` |
| trainer | Redis | `SET astra:policy` | `PolicyPointer` | `astra_trainer.publish` |
"""


def test_a_call_without_a_row_is_reported() -> None:
    source = (
        '"""Calls GET /v1/not-a-call in a docstring."""\n'
        "async def go(http, base, run_id):\n"
        '    await http.post(f"{base}/v1/episodes")\n'
        '    await http.get(f"{base}/v1/runs/{run_id}?limit=2")\n'
        '    raise ValueError("use POST /v1/episodes instead")\n'
    )
    calls = set(scan_module("astra_rollout.envhost_client", source))
    assert calls_missing_from_table(calls, table_rows(PROBE_TABLE)) == [
        "astra_rollout.envhost_client: HTTP /v1/runs/{}"
    ]


def test_a_redis_name_or_mcp_client_without_a_row_is_reported() -> None:
    source = (
        "from mcp import Client\n"
        "from astra_proto import TRAJECTORY_STREAM\n"
        "KEY = 'astra:policy'\n"
        "stream = TRAJECTORY_STREAM\n"
    )
    calls = set(scan_module("astra_trainer.publish", source))
    assert calls_missing_from_table(calls, table_rows(PROBE_TABLE)) == [
        "astra_trainer.publish: MCP client",
        "astra_trainer.publish: Redis astra:trajectories",
    ]


def test_a_row_that_no_code_makes_is_reported() -> None:
    rows = table_rows(PROBE_TABLE)
    made = {Call("HTTP", "/v1/episodes", "astra_rollout.envhost_client")}
    assert rows_not_in_code(made, rows) == ["SET astra:policy: not made by astra_trainer.publish"]
    renamed = PROBE_TABLE.replace("astra_trainer.publish", "astra_trainer.no_such_module")
    assert "SET astra:policy: no module astra_trainer.no_such_module" in rows_not_in_code(
        made, table_rows(renamed)
    )


def test_a_row_to_a_route_the_callee_does_not_serve_is_reported() -> None:
    routes = {name: set[tuple[str, str]]() for name in SERVICES}
    routes["envhost"] = {("POST", "/v1/episodes"), ("*", "/episodes/{episode_id}/mcp")}
    rows = table_rows(
        PROBE_TABLE
        + "| rollout | envhost | `MCP /episodes/{episode_id}/mcp` | MCP | `astra.x` |\n"
        + "| rollout | envhost | `GET /v1/episodes` | JSON (untyped) | `astra.x` |\n"
        + "| astra | every service | `GET /healthz` | JSON (untyped) | `astra.x` |\n"
    )
    assert rows_not_served(rows, routes) == [
        "GET /v1/episodes: envhost serves no such route",
        *(f"GET /healthz: {name} serves no such route" for name in SERVICES),
    ]


def test_a_contract_that_is_no_proto_model_is_reported() -> None:
    rows = table_rows(PROBE_TABLE.replace("`Episode`", "`EpisodeReply`"))
    assert unknown_contracts(rows) == ["POST /v1/episodes: astra_proto has no EpisodeReply"]


def test_a_call_through_a_typed_client_is_found_where_the_client_is_used() -> None:
    client_source = (
        "from astra_common.clients.base import ServiceClient\n"
        "class RolloutClient(ServiceClient):\n"
        "    async def start_batch(self, request):\n"
        '        return await self._post("/v1/batches", request)\n'
        "    async def _post(self, path, body):\n"
        "        return await self.post(path, None, body)\n"
        "    async def batch_status(self, batch_id):\n"
        '        return await self.get(f"/v1/batches/{batch_id}", None)\n'
    )
    clients = client_methods("astra_common.clients.rollout", client_source)
    assert clients == {
        "RolloutClient": {
            "start_batch": {("HTTP", "/v1/batches")},
            "batch_status": {("HTTP", "/v1/batches/{}")},
        }
    }
    user_source = (
        "from astra_common.clients.rollout import RolloutClient as Rollout\n"
        "async def go(rollout: Rollout, request):\n"
        "    await rollout.start_batch(request)\n"
    )
    found = set(scan_client_uses("astra.loop", user_source, clients))
    assert found == {Call("HTTP", "/v1/batches", "astra.loop")}
    assert calls_missing_from_table(found, table_rows(PROBE_TABLE)) == [
        "astra.loop: HTTP /v1/batches"
    ]
    # A module that does not import the client makes no call through it.
    assert (
        set(scan_client_uses("astra.x", "async def go(r):\n    await r.start_batch(1)\n", clients))
        == set()
    )
