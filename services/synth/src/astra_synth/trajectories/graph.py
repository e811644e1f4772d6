"""The tool-call graph of a server: edges from LLM-proposed (task, chain) pairs and from
schema compatibility (an output field that can feed an input parameter), weighted by counts.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from astra_proto import ToolSpec
from astra_proto.api.synth import Edge, ToolGraph, ToolServer
from astra_synth.llm import LLMError, LLMUnavailable
from astra_synth.llm_pipeline.ask import StageReply, Unparseable
from astra_synth.trajectories.asker import Asker
from astra_synth.trajectories.models import ChainProposal, RejectionSink, ignore_rejection

SYSTEM_PROPOSE = (
    "You design realistic multi-step uses of one tool server. Given the server's description "
    "and its tools, propose user tasks that need several of these tools, each with the exact "
    "ordered chain of tool names that solves it (names from the list only; 2 to 5 calls). "
    'Reply with JSON only: {"proposals": [{"task": "...", "chain": ["tool_a", "tool_b"]}]}'
)


class ProposalsReply(StageReply):
    proposals: list[ChainProposal]


def output_fields(tool: ToolSpec) -> dict[str, Any]:
    """Field name -> schema of what a tool returns (top level, and items of listed objects)."""
    schema = tool.output_schema or {}
    fields: dict[str, Any] = {}
    for name, sub in (schema.get("properties") or {}).items():
        fields[name] = sub
        if isinstance(sub, dict) and sub.get("type") == "array":
            items = sub.get("items") or {}
            fields.update((items.get("properties") or {}) if isinstance(items, dict) else {})
        elif isinstance(sub, dict) and sub.get("type") == "object":
            fields.update(sub.get("properties") or {})
    return fields


def _types_agree(a: Any, b: Any) -> bool:
    left = a.get("type") if isinstance(a, dict) else None
    right = b.get("type") if isinstance(b, dict) else None
    if left is None or right is None or left == right:
        return True
    return {left, right} == {"integer", "number"}


def _entity(param: str) -> str | None:
    match = re.fullmatch(r"(?P<entity>[A-Za-z0-9]+)_?(?:id|Id|ID)", param)
    return match.group("entity").lower() if match else None


def is_identifier(param: str) -> bool:
    """Whether a parameter names an identifier (``id``, ``city_id``, ``cityId``)."""
    return param.lower() == "id" or _entity(param) is not None


def feeds(source: ToolSpec, target: ToolSpec) -> list[str]:
    """Parameters of ``target`` that an output of ``source`` can supply.

    With an output schema: a field of the same name (and agreeing type), or a field ``id``
    for a parameter ``<entity>_id`` where the entity is named in ``source``'s name. Without
    one: identifier parameters whose entity ``source``'s name or description mentions.
    """
    params: dict[str, Any] = target.parameters.get("properties") or {}
    fields = output_fields(source)
    found = []
    source_words = set(re.findall(r"[a-z0-9]+", f"{source.name} {source.description}".lower()))
    for param, schema in params.items():
        entity = _entity(param)
        if fields:
            same = param in fields and _types_agree(fields[param], schema)
            by_id = "id" in fields and entity is not None and entity in source.name.lower()
            if same or by_id:
                found.append(param)
        elif entity is not None and entity in source_words:
            found.append(param)
    return found


def schema_edges(server: ToolServer) -> list[tuple[str, str]]:
    """(source, target) pairs where ``source``'s output can feed one of ``target``'s inputs."""
    return [
        (a.name, b.name)
        for a in server.tools
        for b in server.tools
        if a.name != b.name and feeds(a, b)
    ]


def valid_proposals(
    server: ToolServer, proposals: list[ChainProposal], on_reject: RejectionSink = ignore_rejection
) -> tuple[list[ChainProposal], Counter[str]]:
    """Proposals whose chains name only the server's tools and have at least one step."""
    names = {t.name for t in server.tools}
    kept: list[ChainProposal] = []
    rejected: Counter[str] = Counter()
    for proposal in proposals:
        item = f"{server.name}: {proposal.task.strip() or '(no task)'}"
        if not proposal.chain or not proposal.task.strip():
            rejected["proposal_empty"] += 1
            on_reject("proposals", "proposal_empty", item=item, message="no task or no chain")
        elif any(name not in names for name in proposal.chain):
            unknown = [name for name in proposal.chain if name not in names]
            rejected["proposal_unknown_tool"] += 1
            on_reject(
                "proposals",
                "proposal_unknown_tool",
                item=item,
                message=f"the chain names tools the server lacks: {unknown}",
            )
        else:
            kept.append(proposal)
    return kept, rejected


async def propose_chains(
    server: ToolServer, asker: Asker, count: int, on_reject: RejectionSink = ignore_rejection
) -> tuple[list[ChainProposal], Counter[str]]:
    """Ask the LLM for ``count`` (task, chain) pairs; malformed replies and chains naming
    unknown tools are dropped, counted and told to ``on_reject``. ``LLMUnavailable``
    propagates."""
    if count == 0:
        return [], Counter()
    payload = {
        "server": server.name,
        "description": server.description,
        "tools": [{"name": t.name, "description": t.description} for t in server.tools],
        "count": count,
    }
    try:
        reply = await asker.ask("propose_chains", SYSTEM_PROPOSE, payload, ProposalsReply)
    except LLMUnavailable:
        raise
    except Unparseable as exc:
        on_reject(
            "proposals",
            "proposal_malformed",
            item=f"{server.name}: {count} proposals",
            message=str(exc),
            excerpt=exc.reply,
        )
        return [], Counter({"proposal_malformed": 1})
    except LLMError as exc:
        on_reject(
            "proposals",
            "proposal_llm_error",
            item=f"{server.name}: {count} proposals",
            message=f"{type(exc).__name__}: {exc}",
        )
        return [], Counter({"proposal_llm_error": 1})
    return valid_proposals(server, reply.proposals[:count], on_reject)


def build_graph(server: ToolServer, proposals: list[ChainProposal]) -> ToolGraph:
    """The server's graph: every consecutive pair of a proposed chain counts one transition;
    every schema-compatible pair adds one. Nodes are all of the server's tools."""
    llm: Counter[tuple[str, str]] = Counter()
    for proposal in proposals:
        for a, b in zip(proposal.chain, proposal.chain[1:], strict=False):
            if a != b:
                llm[(a, b)] += 1
    schema = set(schema_edges(server))
    edges = [
        Edge(
            source=a,
            target=b,
            weight=llm[(a, b)] + (1 if (a, b) in schema else 0),
            from_llm=llm[(a, b)],
            from_schema=1 if (a, b) in schema else 0,
        )
        for a, b in sorted(set(llm) | schema)
    ]
    return ToolGraph(server=server.name, nodes=[t.name for t in server.tools], edges=edges)
