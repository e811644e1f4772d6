"""Tool-document ingestion: MCP servers, OpenAPI documents and JSON tool lists, normalised to
the OpenAI function schema, grouped by server, and filtered with every drop's reason kept.

Filters (docs/method.md A1): a tool needs a valid name, a description of at least
``min_description_words`` words, and an argument schema that converts to a JSON Schema of type
object (checked with ``jsonschema``, ``required`` naming defined properties, no remote
``$ref``); a server needs at least ``min_tools_per_server`` usable tools with distinct names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import jsonschema
from pydantic import ValidationError

from astra_proto import ToolSpec
from astra_proto.api.synth import Rejection, ToolServer, Toolset, TrajectorySettings
from astra_proto.tools import TOOL_NAME_PATTERN
from astra_synth.trajectories.mcp_client import list_all_tools, mcp_client, mcp_tool_to_raw

_NAME = re.compile(TOOL_NAME_PATTERN)
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")


class ToolConversionError(ValueError):
    """A tool document that cannot be used; ``reason`` is the filter's name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class RawServer:
    """Tool documents of one server as found, before normalisation and filtering."""

    name: str
    source: Literal["mcp", "openapi", "json"]
    tools: list[dict[str, Any]]
    description: str = ""
    url: str | None = None
    notes: list[Rejection] = field(default_factory=list)


def normalise_tool(raw: dict[str, Any], *, min_description_words: int = 3) -> ToolSpec:
    """One tool document (OpenAI ``{"type": "function", "function": ...}``, a flat
    ``{name, description, parameters}``, or MCP's ``inputSchema``) as a ``ToolSpec``.

    Raises ``ToolConversionError`` with reason ``bad_name``, ``vague_description`` or
    ``unconvertible_schema``.
    """
    if not isinstance(raw, dict):
        raise ToolConversionError("unconvertible_schema", "a tool document must be an object")
    body = raw.get("function") if raw.get("type") == "function" else raw
    if not isinstance(body, dict):
        raise ToolConversionError("unconvertible_schema", "'function' must be an object")
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolConversionError("bad_name", f"{name!r} is not a usable tool name")
    description = " ".join(str(body.get("description") or "").split())
    if len(re.findall(r"\w+", description)) < min_description_words:
        raise ToolConversionError(
            "vague_description", f"{name}: {description!r} has under {min_description_words} words"
        )
    schema = _first(body, "parameters", "inputSchema", "input_schema")
    parameters = _object_schema(name, schema)
    output = _first(body, "output_schema", "outputSchema")
    try:
        return ToolSpec(
            name=name,
            description=description,
            parameters=parameters,
            output_schema=output if isinstance(output, dict) else None,
        )
    except ValidationError as exc:
        message = "; ".join(e["msg"] for e in exc.errors(include_url=False))
        raise ToolConversionError("unconvertible_schema", f"{name}: {message}") from None


def _first(body: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if body.get(key) is not None:
            return body[key]
    return None


def _object_schema(name: str, document: Any) -> dict[str, Any]:
    if document is None:
        return {"type": "object", "properties": {}}
    if not isinstance(document, dict):
        raise ToolConversionError("unconvertible_schema", f"{name}: the schema is not an object")
    schema: dict[str, Any] = {str(key): value for key, value in document.items()}
    if "type" not in schema and "properties" in schema:
        schema["type"] = "object"
    if schema.get("type") != "object":
        raise ToolConversionError(
            "unconvertible_schema",
            f"{name}: arguments must be an object, not {schema.get('type')!r}",
        )
    if _has_remote_ref(schema):
        raise ToolConversionError("unconvertible_schema", f"{name}: the schema has a remote $ref")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ToolConversionError("unconvertible_schema", f"{name}: {exc.message}") from None
    return schema


def _has_remote_ref(value: Any) -> bool:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return True
        return any(_has_remote_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_remote_ref(v) for v in value)
    return False


def filter_server(
    raw: RawServer, settings: TrajectorySettings
) -> tuple[ToolServer | None, list[Rejection]]:
    """The server with its usable tools (None when too few remain), and every drop's reason."""
    rejected = list(raw.notes)
    tools: list[ToolSpec] = []
    seen: set[str] = set()
    for document in raw.tools:
        try:
            tool = normalise_tool(document, min_description_words=settings.min_description_words)
        except ToolConversionError as exc:
            label = _document_name(document)
            rejected.append(
                Rejection(subject=f"tool:{raw.name}/{label}", reason=exc.reason, detail=exc.detail)
            )
            continue
        if tool.name in seen:
            rejected.append(
                Rejection(subject=f"tool:{raw.name}/{tool.name}", reason="duplicate_name")
            )
            continue
        seen.add(tool.name)
        tools.append(tool)
    if len(tools) < settings.min_tools_per_server:
        rejected.append(
            Rejection(
                subject=f"server:{raw.name}",
                reason="too_few_tools",
                detail=f"{len(tools)} usable, {settings.min_tools_per_server} needed",
            )
        )
        return None, rejected
    server = ToolServer(
        name=raw.name, description=raw.description, source=raw.source, url=raw.url, tools=tools
    )
    return server, rejected


def _document_name(document: Any) -> str | None:
    """The name a tool document gives itself, for rejection records."""
    if not isinstance(document, dict):
        return None
    inner = document.get("function")
    name = inner.get("name") if isinstance(inner, dict) else document.get("name")
    return str(name) if name is not None else None


def build_toolset(
    toolset_id: str, servers: list[RawServer], settings: TrajectorySettings | None = None
) -> Toolset:
    """Normalise and filter ``servers`` into a toolset. Server names must be distinct."""
    settings = settings or TrajectorySettings()
    names = [s.name for s in servers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"server names must be distinct: {duplicates}")
    kept: list[ToolServer] = []
    rejected: list[Rejection] = []
    for raw in servers:
        server, drops = filter_server(raw, settings)
        rejected.extend(drops)
        if server is not None:
            kept.append(server)
    return Toolset(id=toolset_id, servers=kept, rejected=rejected, created_at=datetime.now(UTC))


def server_from_json(name: str, document: Any, description: str = "") -> RawServer:
    """A JSON tool list (``[...]`` or ``{"tools": [...]}``; OpenAI or flat entries)."""
    tools = document.get("tools") if isinstance(document, dict) else document
    if not isinstance(tools, list):
        raise ValueError("a JSON tool list must be a list, or an object with a 'tools' list")
    if isinstance(document, dict):
        description = description or str(document.get("description") or "")
    return RawServer(name=name, source="json", tools=list(tools), description=description)


def server_from_openapi(document: dict[str, Any], name: str | None = None) -> RawServer:
    """One tool per operation of an OpenAPI 3 document: path, query and JSON-body parameters
    as the argument schema, the 2xx JSON response as the output schema (local ``$ref``s
    resolved). Raises ``ValueError`` when ``document`` is not an OpenAPI 3 object."""
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3"):
        raise ValueError("not an OpenAPI 3 document (no 'openapi: 3.x' field)")
    info = document.get("info") or {}
    server_name = name or _slug(str(info.get("title") or "openapi"))
    tools: list[dict[str, Any]] = []
    notes: list[Rejection] = []
    for path, item in sorted((document.get("paths") or {}).items()):
        for method in _HTTP_METHODS:
            operation = item.get(method) if isinstance(item, dict) else None
            if not isinstance(operation, dict):
                continue
            op_name = operation.get("operationId") or _slug(f"{method}_{path}")
            try:
                tools.append(_operation_tool(document, op_name, operation, item))
            except _RefError as exc:
                notes.append(
                    Rejection(
                        subject=f"tool:{server_name}/{op_name}",
                        reason="unconvertible_schema",
                        detail=str(exc),
                    )
                )
    return RawServer(
        name=server_name,
        source="openapi",
        tools=tools,
        description=str(info.get("description") or info.get("title") or ""),
        notes=notes,
    )


class _RefError(ValueError):
    pass


def _resolve(document: dict[str, Any], value: Any, depth: int = 0) -> Any:
    if depth > 20:
        raise _RefError("$ref nesting too deep (recursive schema)")
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/"):
                raise _RefError(f"remote $ref {ref!r}")
            target: Any = document
            for part in ref[2:].split("/"):
                if not isinstance(target, dict) or part not in target:
                    raise _RefError(f"unresolvable $ref {ref!r}")
                target = target[part]
            return _resolve(document, target, depth + 1)
        return {k: _resolve(document, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(document, v, depth + 1) for v in value]
    return value


def _operation_tool(
    document: dict[str, Any], name: str, operation: dict[str, Any], item: dict[str, Any]
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in [*(item.get("parameters") or []), *(operation.get("parameters") or [])]:
        parameter = _resolve(document, parameter)
        if parameter.get("in") not in ("path", "query"):
            continue
        schema = dict(parameter.get("schema") or {"type": "string"})
        if parameter.get("description"):
            schema.setdefault("description", parameter["description"])
        properties[parameter["name"]] = schema
        if parameter.get("required") or parameter.get("in") == "path":
            required.append(parameter["name"])
    body = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json")
    if body and body.get("schema"):
        schema = _resolve(document, body["schema"])
        properties.update(schema.get("properties") or {})
        required.extend(r for r in schema.get("required") or [] if r not in required)
    output = None
    for status, response in sorted((operation.get("responses") or {}).items()):
        content = (_resolve(document, response).get("content") or {}).get("application/json")
        if str(status).startswith("2") and content and content.get("schema"):
            output = _resolve(document, content["schema"])
            break
    description = operation.get("description") or operation.get("summary") or ""
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
        "output_schema": output
        if isinstance(output, dict) and output.get("type") == "object"
        else None,
    }


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    return (slug or "tool")[:64]


async def server_from_mcp(
    url: str, *, name: str | None = None, token: str | None = None
) -> RawServer:
    """The tools an MCP server lists (any streamable-HTTP server; envhost's environments
    included). The server name is ``name``, else the server's own, else taken from the URL.
    Connection failures raise (``httpx2``/``mcp`` errors) for the caller to report."""
    async with mcp_client(url, token=token) as client:
        tools = await list_all_tools(client)
        info = client.server_info
        instructions = client.instructions or ""
    default = urlsplit(url).path.strip("/").replace("/", "_") or urlsplit(url).netloc
    server_name = name or (info.name if info and info.name else _slug(default))
    return RawServer(
        name=_slug(server_name),
        source="mcp",
        tools=[mcp_tool_to_raw(t) for t in tools],
        description=instructions,
        url=url,
    )
