"""Chain checks: argument dependencies, an LLM coherence vote, and back-translation
chain -> query -> chain. A chain that fails any is dropped with the reason counted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from astra_proto.api.synth import ToolServer
from astra_synth.llm import LLMError, LLMUnavailable
from astra_synth.llm_pipeline.ask import StageReply, Unparseable
from astra_synth.trajectories.asker import Asker
from astra_synth.trajectories.models import Chain, RejectionSink, ignore_rejection
from astra_synth.trajectories.walks import unbound_arguments

SYSTEM_COHERENCE = (
    "You check whether a sequence of tool calls on one server could be the solution of one "
    "realistic user request, each call using what the user said or what earlier calls "
    'returned. Reply with JSON only: {"coherent": true|false, "reason": "..."}'
)
SYSTEM_CHAIN_TO_QUERY = (
    "You write the request a real user would send that is solved by calling the given tools "
    "in the given order. Give concrete values (names, dates, amounts) the calls need; do not "
    'mention the tools. Reply with JSON only: {"query": "..."}'
)
SYSTEM_QUERY_TO_CHAIN = (
    "You plan tool use. Given a user request and the tools of one server, list the tool "
    "names to call, in order, to solve it (names from the list only). "
    'Reply with JSON only: {"chain": ["tool_a", "tool_b"]}'
)


class CoherenceReply(StageReply):
    coherent: bool
    reason: str = ""


class QueryReply(StageReply):
    query: str


class ChainReply(StageReply):
    chain: list[str]


def tool_documents(server: ToolServer, names: list[str] | None = None) -> list[dict[str, Any]]:
    """The tools (all, or those named, in that order) as the prompts show them."""
    tools = [server.tool(n) for n in names] if names is not None else server.tools
    return [
        {"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools
    ]


class ChainChecker:
    """Runs every check on a chain; returns the query of a chain that passes."""

    def __init__(
        self, asker: Asker, votes: int, on_reject: RejectionSink = ignore_rejection
    ) -> None:
        self.asker = asker
        self.votes = votes
        self.rejected: Counter[str] = Counter()
        self.on_reject = on_reject

    async def check(self, chain: Chain, server: ToolServer) -> str | None:
        """The back-translated query when ``chain`` passes every check, else None (the reason
        is counted in ``rejected`` and told to ``on_reject``). ``LLMUnavailable`` propagates."""
        item = f"{server.name}: {' -> '.join(chain.tools)}"
        unbound = unbound_arguments(chain, server)
        if unbound:
            self._drop("chain_unbound_argument", item, f"unbound arguments: {unbound}")
            return None
        try:
            reason = await self._llm_checks(chain, server)
        except LLMUnavailable:
            raise
        except Unparseable as exc:
            stage = str(exc).split(":", 1)[0]
            self._drop(f"llm_malformed:{stage}", item, str(exc), exc.reply)
            return None
        except LLMError as exc:
            self._drop("llm_error:chain_check", item, f"{type(exc).__name__}: {exc}")
            return None
        if isinstance(reason, _Dropped):
            self._drop(reason.reason, item, reason.message, reason.excerpt)
            return None
        return reason

    def _drop(self, reason: str, item: str, message: str, excerpt: str | None = None) -> None:
        self.rejected[reason] += 1
        self.on_reject("chains", reason, item=item, message=message, excerpt=excerpt)

    async def _llm_checks(self, chain: Chain, server: ToolServer) -> str | _Dropped:
        payload = {
            "server": server.name,
            "description": server.description,
            "chain": tool_documents(server, chain.tools),
        }
        yes = 0
        for sample in range(self.votes):
            vote = await self.asker.ask(
                "coherence", SYSTEM_COHERENCE, payload, CoherenceReply, judge=True, sample=sample
            )
            yes += vote.coherent
        if 2 * yes <= self.votes:
            return _Dropped("chain_incoherent", f"{yes} of {self.votes} votes said coherent")
        query = await self.asker.ask("chain_to_query", SYSTEM_CHAIN_TO_QUERY, payload, QueryReply)
        if not query.query.strip():
            return _Dropped("chain_empty_query", "the back-translated query is empty")
        back = await self.asker.ask(
            "query_to_chain",
            SYSTEM_QUERY_TO_CHAIN,
            {"query": query.query, "tools": tool_documents(server)},
            ChainReply,
            judge=True,
        )
        if back.chain != chain.tools:
            return _Dropped(
                "chain_backtranslation_mismatch",
                f"the query {query.query.strip()!r} maps back to {back.chain}",
            )
        return query.query.strip()


@dataclass(frozen=True)
class _Dropped:
    """Why a chain failed an LLM check."""

    reason: str
    message: str
    excerpt: str | None = None
