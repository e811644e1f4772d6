"""Test doubles of the LLM pipeline's collaborators, and one real executor.

``ScriptedLLM`` is a TEST DOUBLE of a chat model: it recognises the pipeline stage of a
request by its system prompt (the module-level templates), reads the stage's JSON input, and
answers from a script keyed by (stage, subject), where the subject is the question, text or
sub-question the request is about. The n-th request for one key gets the n-th scripted reply
(the last one repeats). Replies are well-formed, malformed (not JSON, wrong fields) or
adversarial (cyclic dependencies, code that prints instead of returning, imports os, loops
forever, returns a constant): each is marked where it is written. Its token counts are its
own approximation (whitespace-separated words), not a real tokenizer's.

``SandboxExecutor`` is NOT a double: it runs the tools' code in envhost's real bubblewrap
sandbox (``astra_envhost.sandbox.SandboxBackend``), one fresh worker per run, as envhost's
``POST /v1/executions`` does.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from astra_envhost.backends import ToolExecutionError
from astra_envhost.sandbox import SandboxBackend, SandboxLimits
from astra_proto import SyntheticTool
from astra_synth.llm import ChatModel, Completion
from astra_synth.llm_pipeline import CallOutcome, KnowledgeItem, QaItem
from astra_synth.llm_pipeline.ask import INPUT_HEADER
from astra_synth.llm_pipeline.decompose import SYSTEM_KNOWLEDGE, SYSTEM_QA
from astra_synth.llm_pipeline.judge import SYSTEM_NECESSITY, SYSTEM_QUALITY
from astra_synth.llm_pipeline.merge import SYSTEM_CLUSTER, SYSTEM_MERGE
from astra_synth.llm_pipeline.toolgen_prompts import (
    SYSTEM_CALL,
    SYSTEM_CODE,
    SYSTEM_ENRICH,
    SYSTEM_SCHEMA,
)

STAGE_OF_PROMPT = {
    SYSTEM_QA: "decompose",
    SYSTEM_KNOWLEDGE: "knowledge",
    SYSTEM_NECESSITY: "necessity",
    SYSTEM_QUALITY: "quality",
    SYSTEM_SCHEMA: "schema",
    SYSTEM_ENRICH: "enrich",
    SYSTEM_CALL: "call",
    SYSTEM_CODE: "code",
    SYSTEM_CLUSTER: "cluster",
    SYSTEM_MERGE: "merge",
}

Reply = str | Callable[[dict[str, Any]], str]
Script = dict[tuple[str, str], list[Reply]]


def subject_of(stage: str, payload: dict[str, Any]) -> str:
    """The script key's second part: what the request is about."""
    if stage == "knowledge":
        return str(payload["text"])
    if stage in ("decompose", "necessity", "quality"):
        return str(payload["question"])
    if stage == "cluster":
        return str(payload["tools"][0]["sub_question"])
    if stage == "merge":
        return str(payload["members"][0]["sub_question"])
    return str(payload["sub_question"])


@dataclass
class ScriptedLLM:
    """A ``ChatModel`` test double answering from ``script`` (see the module docstring)."""

    script: Script
    model: str = "scripted-double"
    requests: list[tuple[str, str]] = field(default_factory=list)
    unscripted: list[tuple[str, str]] = field(default_factory=list)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        stage = STAGE_OF_PROMPT.get(messages[0]["content"], "unknown")
        user = str(messages[1]["content"])
        payload = json.loads(user.removeprefix(INPUT_HEADER)) if stage != "unknown" else {}
        key = (stage, subject_of(stage, payload) if payload else "")
        self.requests.append(key)
        replies = self.script.get(key)
        if not replies:
            self.unscripted.append(key)
            text = ""
        else:
            reply = replies[min(self.seen[key], len(replies) - 1)]
            text = reply(payload) if callable(reply) else reply
        self.seen[key] += 1
        prompt_words = sum(len(str(m["content"]).split()) for m in messages)
        return Completion(
            text=text, prompt_tokens=prompt_words, completion_tokens=len(text.split())
        )

    def count(self, stage: str) -> int:
        """Requests made for ``stage`` so far."""
        return sum(1 for s, _ in self.requests if s == stage)


@dataclass
class SandboxExecutor:
    """A ``ToolExecutor`` over envhost's real sandbox: one fresh worker per ``run``."""

    limits: SandboxLimits = field(
        default_factory=lambda: SandboxLimits(call_timeout_s=3, start_timeout_s=10, cpu_seconds=3)
    )
    runs: int = 0

    async def run(
        self, tools: Sequence[SyntheticTool], calls: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[CallOutcome]:
        self.runs += 1
        backend = SandboxBackend(tools, mode="bubblewrap", limits=self.limits)
        outcomes = []
        try:
            for name, arguments in calls:
                started = time.perf_counter()
                try:
                    output, error = await backend.call(name, arguments), None
                except ToolExecutionError as exc:
                    output, error = None, str(exc)
                latency = (time.perf_counter() - started) * 1000
                outcomes.append(
                    CallOutcome(tool_name=name, output=output, error=error, latency_ms=latency)
                )
        finally:
            await backend.close()
        return outcomes


def fake_openai(double: ChatModel, requests: list[dict[str, Any]]) -> FastAPI:
    """An OpenAI-compatible ``/v1/chat/completions`` answering from a chat-model double
    (``ScriptedLLM``, or ``scripted_chat.ScriptedChat``)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        requests.append(body)
        completion = await double.complete(
            body["messages"], temperature=body["temperature"], max_tokens=body["max_tokens"]
        )
        return {
            "id": f"chatcmpl-{len(requests)}",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": completion.text},
                }
            ],
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
        }

    return app


# --- script builders ------------------------------------------------------------------------


def as_json(value: Any) -> str:
    return json.dumps(value)


def code_reply(entrypoint: str, source: str) -> str:
    """A well-formed code reply."""
    return as_json({"entrypoint": entrypoint, "code": textwrap.dedent(source).strip() + "\n"})


def lookup_code(entrypoint: str, argument: str, table: dict[str, dict[str, Any]]) -> str:
    """Well-formed tool code: a table lookup by one argument, with a clear error for unknown
    keys, and any number of optional keyword arguments accepted."""
    return f"""
        TABLE = {table!r}

        def {entrypoint}({argument}, **options):
            key = str({argument}).strip().casefold()
            if key not in TABLE:
                known = ", ".join(sorted(TABLE))
                raise ValueError(f"unknown {argument} {{{argument}!r}}; known: {{known}}")
            return dict(TABLE[key])
        """


def schema(name: str, description: str, argument: str, extra: dict[str, Any] | None = None) -> str:
    """A well-formed schema reply with one required string argument (plus optional extras)."""
    properties: dict[str, Any] = {argument: {"type": "string", "description": f"the {argument}"}}
    properties.update(extra or {})
    return as_json(
        {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": [argument]},
        }
    )


@dataclass
class ToolScript:
    """The four tool-stage replies for one sub-question."""

    name: str
    argument: str
    value: str
    table: dict[str, dict[str, Any]]
    code: list[Reply] | None = None
    enrich: list[Reply] | None = None
    call: list[Reply] | None = None

    def replies(self, sub_question: str) -> Script:
        optional = {"verbose": {"type": "boolean", "description": "include every field"}}
        return {
            ("schema", sub_question): [
                schema(self.name, f"Look up by {self.argument}.", self.argument)
            ],
            ("enrich", sub_question): self.enrich
            or [schema(self.name, f"Look up by {self.argument}.", self.argument, optional)],
            ("call", sub_question): self.call
            or [as_json({"arguments": {self.argument: self.value}})],
            ("code", sub_question): self.code
            or [code_reply(self.name, lookup_code(self.name, self.argument, self.table))],
        }


def decomposition(
    domain: str, *sub_questions: tuple[str, str, str, list[str]], **extra: str
) -> str:
    """A well-formed decomposition reply from (id, question, answer, depends_on) tuples."""
    return as_json(
        {
            "domain": domain,
            "sub_questions": [
                {"id": i, "question": q, "answer": a, "depends_on": d}
                for i, q, a, d in sub_questions
            ],
            **extra,
        }
    )


def necessity(**needs: bool) -> str:
    return as_json(
        {"judgements": [{"id": i, "needs_tool": n, "reason": "judged"} for i, n in needs.items()]}
    )


GOOD_QUALITY = as_json(
    {
        "dependencies_correct": 1,
        "atomic": 1,
        "order_rational": 1,
        "covers_question": 1,
        "reason": "clean",
    }
)


NO_CLUSTERS = as_json({"clusters": []})


def qa_script(
    item: QaItem,
    decomposition_reply: str,
    needs: dict[str, bool],
    tools: dict[str, ToolScript],
    *,
    quality: str = GOOD_QUALITY,
) -> Script:
    """Script of one QA item; ``tools`` maps sub-question text to its tool replies."""
    script: Script = {
        ("decompose", item.question): [decomposition_reply],
        ("necessity", item.question): [necessity(**needs)],
        ("quality", item.question): [quality],
    }
    for sub_question, tool in tools.items():
        script.update(tool.replies(sub_question))
    if len(tools) > 1:
        script[("cluster", next(iter(tools)))] = [NO_CLUSTERS]
    return script


# --- scenarios ------------------------------------------------------------------------------

COUNTRIES = {
    "freedonia": {"country": "Freedonia", "capital": "Fredville", "currency": "FRD"},
    "sylvania": {"country": "Sylvania", "capital": "Sylvan City", "currency": "SYL"},
    "grand fenwick": {"country": "Grand Fenwick", "capital": "Fenwick", "currency": "GFP"},
}
CITIES = {
    "fredville": {"city": "Fredville", "population": 412500, "country": "Freedonia"},
    "sylvan city": {"city": "Sylvan City", "population": 97000, "country": "Sylvania"},
    "westmarch": {"city": "Westmarch", "population": 233100, "country": "Sylvania"},
}

FREEDONIA = QaItem(question="What is the population of the capital of Freedonia?", answer="412,500")
Q_CAPITAL = "What is the capital of Freedonia?"
Q_POPULATION = "What is the population of Fredville?"


def freedonia_script() -> Script:
    """Well-formed throughout: a two-hop chain that passes every stage."""
    return qa_script(
        FREEDONIA,
        decomposition(
            "geography",
            ("q1", Q_CAPITAL, "Fredville", []),
            ("q2", Q_POPULATION, "412500", ["q1"]),
        ),
        {"q1": True, "q2": True},
        {
            Q_CAPITAL: ToolScript("get_country_info", "country", "Freedonia", COUNTRIES),
            Q_POPULATION: ToolScript("get_city_population", "city", "Fredville", CITIES),
        },
    )


KNOWLEDGE = KnowledgeItem(
    text=(
        "The Orbis Observatory on Mount Kell was founded in 1911 by the astronomer Mira "
        "Kowalski. Kowalski, born in 1874 in the harbour town of Lindqvist, later directed "
        "the observatory for thirty years."
    ),
    hops=2,
)
K_QUESTION = "In which year was the founder of the Orbis Observatory born?"
K_FOUNDER = "Who founded the Orbis Observatory?"
K_BORN = "In which year was Mira Kowalski born?"


def knowledge_script() -> Script:
    """Well-formed knowledge mode: a generated two-hop question."""
    script: Script = {
        ("knowledge", KNOWLEDGE.text): [
            decomposition(
                "astronomy",
                ("k1", K_FOUNDER, "Mira Kowalski", []),
                ("k2", K_BORN, "1874", ["k1"]),
                question=K_QUESTION,
                answer="1874",
            )
        ],
        ("necessity", K_QUESTION): [necessity(k1=True, k2=True)],
        ("quality", K_QUESTION): [GOOD_QUALITY],
    }
    observatories = {
        "orbis observatory": {"name": "Orbis Observatory", "founder": "Mira Kowalski"},
        "vale observatory": {"name": "Vale Observatory", "founder": "Tomas Berg"},
    }
    people = {
        "mira kowalski": {"name": "Mira Kowalski", "born": 1874, "birthplace": "Lindqvist"},
        "tomas berg": {"name": "Tomas Berg", "born": 1881, "birthplace": "Odde"},
    }
    script.update(
        ToolScript("get_observatory", "name", "Orbis Observatory", observatories).replies(K_FOUNDER)
    )
    script.update(ToolScript("get_person", "name", "Mira Kowalski", people).replies(K_BORN))
    script[("cluster", K_FOUNDER)] = [NO_CLUSTERS]
    return script


MERGE_ITEM = QaItem(
    question="What are the populations of Westmarch and of Sylvan City?",
    answer="233100 and 97000",
)
M_WEST = "What is the population of Westmarch?"
M_SYLVAN = "What is the population of Sylvan City?"


def merge_script(*, merge_replies: list[Reply] | None = None) -> Script:
    """Two same-intent lookups, each first written with only its own city; the clustering
    judge groups them; the first merge attempt is ADVERSARIAL (its data still lacks one city,
    so re-verification fails), the second is well-formed. ``merge_replies`` replaces both."""
    west = {"westmarch": CITIES["westmarch"], "fredville": CITIES["fredville"]}
    sylvan = {"sylvan city": CITIES["sylvan city"], "fredville": CITIES["fredville"]}
    script = qa_script(
        MERGE_ITEM,
        decomposition("geography", ("m1", M_WEST, "233100", []), ("m2", M_SYLVAN, "97000", [])),
        {"m1": True, "m2": True},
        {
            M_WEST: ToolScript("get_city_population", "city", "Westmarch", west),
            M_SYLVAN: ToolScript("city_population_lookup", "name", "Sylvan City", sylvan),
        },
    )
    script[("cluster", M_WEST)] = [as_json({"clusters": [["m1", "m2"]]})]
    calls = [
        {"sub_question_id": "m1", "arguments": {"city": "Westmarch"}},
        {"sub_question_id": "m2", "arguments": {"city": "Sylvan City"}},
    ]
    incomplete = as_json(
        {"code": textwrap.dedent(lookup_code("get_city_population", "city", west)), "calls": calls}
    )
    merged = as_json(
        {
            "code": textwrap.dedent(lookup_code("get_city_population", "city", CITIES)),
            "calls": calls,
        }
    )
    script[("merge", M_WEST)] = merge_replies or [incomplete, merged]
    return script
