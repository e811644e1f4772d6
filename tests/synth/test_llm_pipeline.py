"""The LLM environment pipeline end to end: a scripted LLM double (well-formed, malformed and
adversarial replies) and envhost's REAL bubblewrap sandbox running every line of tool code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from scripted_llm import (
    FREEDONIA,
    GOOD_QUALITY,
    K_QUESTION,
    KNOWLEDGE,
    MERGE_ITEM,
    Q_CAPITAL,
    Q_POPULATION,
    SandboxExecutor,
    Script,
    ScriptedLLM,
    as_json,
    code_reply,
    freedonia_script,
    knowledge_script,
    merge_script,
    schema,
)

from astra_envhost.sandbox import SandboxBackend, find_bwrap
from astra_proto import ScenarioType
from astra_synth.llm import LLMUsage
from astra_synth.llm_pipeline import (
    Accepted,
    ExecutorUnavailable,
    KnowledgeItem,
    PipelineOutcome,
    PipelineSettings,
    QaItem,
    Rejected,
    StageCounts,
    synthesize,
)
from astra_synth.procedural import averify_certificate

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed"),
]

FAST = PipelineSettings(inner_retries=2, outer_retries=2, merge_retries=3)


async def run(
    items: list[QaItem | KnowledgeItem],
    script: Script,
    settings: PipelineSettings = FAST,
    executor: SandboxExecutor | None = None,
) -> tuple[list[PipelineOutcome], ScriptedLLM, StageCounts, LLMUsage]:
    llm = ScriptedLLM(script)
    progress = StageCounts()
    usage = LLMUsage()
    outcomes = []
    async with asyncio.timeout(100):
        async for outcome in synthesize(
            items,
            llm=llm,
            executor=executor or SandboxExecutor(),
            settings=settings,
            progress=progress,
            job_id="job-1",
            usage=usage,
        ):
            outcomes.append(outcome)
    assert llm.unscripted == []
    return outcomes, llm, progress, usage


async def run_one(item: QaItem | KnowledgeItem, script: Script, **kwargs: Any) -> PipelineOutcome:
    (outcome,), _, _, _ = await run([item], script, **kwargs)
    return outcome


async def accepted(item: QaItem | KnowledgeItem, script: Script) -> Accepted:
    outcome = await run_one(item, script)
    assert isinstance(outcome, Accepted), outcome
    return outcome


async def rejected(item: QaItem, script: Script, **kwargs: Any) -> Rejected:
    outcome = await run_one(item, script, **kwargs)
    assert isinstance(outcome, Rejected), outcome
    return outcome


async def replays_in_a_fresh_sandbox(outcome: Accepted) -> list[str]:
    backend = SandboxBackend(outcome.spec.tools, mode="bubblewrap")
    try:
        return await averify_certificate(outcome.spec, backend.call)
    finally:
        await backend.close()


# --- well-formed paths ----------------------------------------------------------------------


async def test_a_qa_item_passes_every_stage_and_its_certificate_replays() -> None:
    outcomes, llm, progress, usage = await run([FREEDONIA], freedonia_script())
    (outcome,) = outcomes
    assert isinstance(outcome, Accepted)
    spec = outcome.spec
    assert outcome.item_index == 0
    assert (spec.task, spec.answer, spec.domain) == (FREEDONIA.question, "412,500", "geography")
    assert spec.scenario_type == ScenarioType.MULTI_HOP
    assert spec.hops == 2
    assert [(q.id, q.tool_name, q.depends_on) for q in spec.sub_questions] == [
        ("q1", "get_country_info", []),
        ("q2", "get_city_population", ["q1"]),
    ]
    population = spec.tools[1]
    assert "verbose" in population.spec.parameters["properties"]  # the enrichment
    assert population.spec.parameters["required"] == ["city"]
    assert population.reference_calls[0].arguments == {"city": "Fredville"}
    assert spec.provenance is not None
    assert (spec.provenance.source, spec.provenance.job_id) == ("qa", "job-1")
    assert spec.provenance.generator == "scripted-double"
    assert spec.certificate is not None
    assert spec.certificate.passed
    assert [r.output["population"] for r in spec.certificate.replays[1:]] == [412500]
    assert await replays_in_a_fresh_sandbox(outcome) == []
    assert progress.done == dict.fromkeys(progress.done, 1)
    assert progress.totals == dict.fromkeys(progress.totals, 1)
    # 1 decomposition, 2 judgements, 4 tool steps per sub-question, 1 clustering judgement
    assert usage.by_stage == {
        "decomposed": 1,
        "passed_quality": 2,
        "tools_verified": 8,
        "merged": 1,
    }
    assert usage.calls == len(llm.requests) == 12
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0


async def test_knowledge_mode_writes_the_question_from_the_text() -> None:
    outcome = await accepted(KNOWLEDGE, knowledge_script())
    spec = outcome.spec
    assert (spec.task, spec.answer, spec.domain) == (K_QUESTION, "1874", "astronomy")
    assert spec.provenance is not None
    assert spec.provenance.source == "knowledge"
    assert spec.hops == 2
    assert await replays_in_a_fresh_sandbox(outcome) == []


async def test_same_intent_tools_are_merged_and_reverified() -> None:
    outcomes, llm, _, _ = await run([MERGE_ITEM], merge_script())
    (outcome,) = outcomes
    assert isinstance(outcome, Accepted), outcome
    spec = outcome.spec
    assert spec.scenario_type == ScenarioType.PARALLEL_SINGLE_HOP
    (tool,) = spec.tools
    assert tool.spec.name == "get_city_population"
    assert [(c.sub_question_id, c.arguments) for c in tool.reference_calls] == [
        ("m1", {"city": "Westmarch"}),
        ("m2", {"city": "Sylvan City"}),
    ]
    assert {q.tool_name for q in spec.sub_questions} == {"get_city_population"}
    # the first merge left a city out: re-verification caught it and the merge was retried
    assert llm.count("merge") == 2
    assert await replays_in_a_fresh_sandbox(outcome) == []


async def test_an_unmergeable_group_drops_the_instance() -> None:
    script = merge_script()
    script[("merge", "What is the population of Westmarch?")] = script[
        ("merge", "What is the population of Westmarch?")
    ][:1]  # ADVERSARIAL: only the incomplete merge, every time
    outcomes, llm, progress, _ = await run([MERGE_ITEM], script)
    (outcome,) = outcomes
    assert isinstance(outcome, Rejected)
    assert (outcome.stage, outcome.reason) == ("merged", "merge_failed")
    assert "the call for m2 raised: ValueError: unknown city 'Sylvan City'" in outcome.detail
    assert llm.count("merge") == FAST.merge_retries
    assert progress.rejected["merged"] == {"merge_failed": 1}


async def test_a_failed_code_attempt_is_fed_back_and_retried() -> None:
    script = freedonia_script()
    good = script[("code", Q_CAPITAL)][0]
    script[("code", Q_CAPITAL)] = [PRINTS_ANSWER, good]
    outcomes, llm, _, _ = await run([FREEDONIA], script)
    assert isinstance(outcomes[0], Accepted)
    assert llm.count("code") == 3  # two for q1, one for q2


async def test_items_run_concurrently_and_each_gets_its_outcome() -> None:
    script = {**freedonia_script(), **knowledge_script(), **merge_script()}
    items: list[QaItem | KnowledgeItem] = [FREEDONIA, KNOWLEDGE, MERGE_ITEM, NOT_JSON_ITEM]
    script[("decompose", NOT_JSON_ITEM.question)] = ["Sure! Here you go."]
    outcomes, _, progress, _ = await run(items, script)
    assert sorted(o.item_index for o in outcomes) == [0, 1, 2, 3]
    assert sorted(type(o).__name__ for o in outcomes) == ["Accepted"] * 3 + ["Rejected"]
    assert progress.done["registered"] == 3
    assert progress.rejected["decomposed"] == {"unparseable_decomposition": 1}


async def test_registered_counts_only_what_the_consumer_kept() -> None:
    progress = StageCounts()

    async def store_all() -> None:
        async for _ in synthesize(
            [FREEDONIA],
            llm=ScriptedLLM(freedonia_script()),
            executor=SandboxExecutor(),
            settings=FAST,
            progress=progress,
            job_id=None,
        ):
            raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        await store_all()
    assert progress.done["merged"] == 1
    assert progress.done["registered"] == 0


# --- rejection paths: decomposition and judges ----------------------------------------------

NOT_JSON_ITEM = QaItem(question="Which river flows through Fredville?", answer="the Fred")

DECOMPOSITION_OF_FREEDONIA = freedonia_script()[("decompose", FREEDONIA.question)][0]


def with_reply(stage: str, reply: str) -> Script:
    script = freedonia_script()
    script[(stage, FREEDONIA.question)] = [reply]
    return script


def decomposition(*sub_questions: dict[str, Any]) -> str:
    return as_json({"domain": "geography", "sub_questions": list(sub_questions)})


CYCLIC = decomposition(  # ADVERSARIAL: each needs the other
    {"id": "q1", "question": Q_CAPITAL, "answer": "Fredville", "depends_on": ["q2"]},
    {"id": "q2", "question": Q_POPULATION, "answer": "412500", "depends_on": ["q1"]},
)
UNKNOWN_DEPENDENCY = decomposition(
    {"id": "q1", "question": Q_CAPITAL, "answer": "Fredville", "depends_on": ["q9"]},
)


@pytest.mark.parametrize(
    ("stage", "reply", "where", "reason"),
    [
        # MALFORMED: prose, not JSON
        ("decompose", "Sure! First find the capital.", "decomposed", "unparseable_decomposition"),
        # MALFORMED: JSON with the wrong fields
        ("decompose", '{"subquestions": []}', "decomposed", "unparseable_decomposition"),
        # MALFORMED: a JSON array
        ("decompose", "[1, 2]", "decomposed", "unparseable_decomposition"),
        ("decompose", CYCLIC, "decomposed", "cyclic_dependencies"),
        ("decompose", UNKNOWN_DEPENDENCY, "decomposed", "invalid_decomposition"),
        # ADVERSARIAL: the inner node q1 (q2 depends on it) "needs no tool"
        (
            "necessity",
            as_json(
                {
                    "judgements": [
                        {"id": "q1", "needs_tool": False},
                        {"id": "q2", "needs_tool": True},
                    ]
                }
            ),
            "passed_quality",
            "tool_not_needed_at_inner_node",
        ),
        (
            "necessity",
            as_json(
                {
                    "judgements": [
                        {"id": "q1", "needs_tool": False},
                        {"id": "q2", "needs_tool": False},
                    ]
                }
            ),
            "passed_quality",
            "no_tool_needed",
        ),
        # MALFORMED: a judgement is missing
        (
            "necessity",
            as_json({"judgements": [{"id": "q1", "needs_tool": True}]}),
            "passed_quality",
            "judge_error",
        ),
        ("necessity", "I think both need tools.", "passed_quality", "judge_error"),
        # three of four criteria: 0.75 < 0.85
        (
            "quality",
            GOOD_QUALITY.replace('"atomic": 1', '"atomic": 0'),
            "passed_quality",
            "quality_below_threshold",
        ),
        # MALFORMED: a score outside {0, 1}, and a missing criterion
        (
            "quality",
            GOOD_QUALITY.replace('"atomic": 1', '"atomic": 0.9'),
            "passed_quality",
            "judge_error",
        ),
        ("quality", '{"atomic": 1, "reason": "fine"}', "passed_quality", "judge_error"),
        ("quality", "", "passed_quality", "judge_error"),
    ],
)
async def test_decomposition_and_judge_rejections(
    stage: str, reply: str, where: str, reason: str
) -> None:
    outcome = await rejected(FREEDONIA, with_reply(stage, reply))
    assert (outcome.stage, outcome.reason) == (where, reason)
    assert outcome.detail


async def test_budgets_reject_large_decompositions() -> None:
    hops = await rejected(FREEDONIA, freedonia_script(), settings=PipelineSettings(max_hops=1))
    assert (hops.reason, hops.detail) == ("hop_budget_exceeded", "2 hops, the budget is 1")
    size = PipelineSettings(max_sub_questions=1)
    too_many = await rejected(FREEDONIA, freedonia_script(), settings=size)
    assert too_many.reason == "too_many_sub_questions"


# --- rejection paths: tools -----------------------------------------------------------------

PRINTS_ANSWER = code_reply(  # ADVERSARIAL: prints the answer, returns nothing
    "get_country_info",
    """
    def get_country_info(country, **options):
        print("The capital of Freedonia is Fredville")
    """,
)
IMPORTS_OS = code_reply(  # ADVERSARIAL: reaches for the host
    "get_country_info",
    """
    import os

    def get_country_info(country, **options):
        return {"capital": os.environ.get("CAPITAL", "Fredville")}
    """,
)
DUNDER_ESCAPE = code_reply(  # ADVERSARIAL: the classic way out of a restricted namespace
    "get_country_info",
    """
    def get_country_info(country, **options):
        return {"capital": str(().__class__.__base__.__subclasses__())}
    """,
)
LOOPS_FOREVER = code_reply(  # ADVERSARIAL: never returns
    "get_country_info",
    """
    def get_country_info(country, **options):
        while True:
            pass
    """,
)
CONSTANT = code_reply(  # ADVERSARIAL: answers whatever it is asked
    "get_country_info",
    """
    def get_country_info(country, **options):
        return {"country": country, "capital": "Fredville"}
    """,
)
NOT_A_STRING_ANSWER = code_reply(  # ADVERSARIAL: the answer only inside a longer value
    "get_country_info",
    """
    def get_country_info(country, **options):
        if country != "Freedonia":
            raise ValueError("unknown country")
        return {"summary": "Fredville is the capital of Freedonia"}
    """,
)
WRONG_ENTRYPOINT = code_reply("get_country_info", "def something_else(country):\n    return {}")


@pytest.mark.parametrize(
    ("code", "expected", "sandbox_runs"),
    [
        (PRINTS_ANSWER, "returned None, which does not hold 'Fredville'", 4),
        (IMPORTS_OS, "import of 'os' is not allowed", 0),
        (DUNDER_ESCAPE, "dunder attribute '__class__' is not allowed", 0),
        (LOOPS_FOREVER, "timed out", 4),
        (CONSTANT, "returned the answer 'Fredville' for a wrong argument", 4),
        (NOT_A_STRING_ANSWER, "does not hold 'Fredville' as a value", 4),
        (WRONG_ENTRYPOINT, "no top-level function named 'get_country_info'", 0),
        ('{"code": "def f(): pass"}', "entrypoint: Field required", 0),  # MALFORMED
        ("def get_country_info(country): ...", "the reply is not JSON", 0),  # MALFORMED
    ],
)
async def test_tool_code_that_fails_verification_rejects_after_bounded_retries(
    code: str, expected: str, sandbox_runs: int
) -> None:
    script = freedonia_script()
    script[("code", Q_CAPITAL)] = [code]
    executor = SandboxExecutor()
    outcomes, llm, _, _ = await run([FREEDONIA], script, executor=executor)
    (outcome,) = outcomes
    assert isinstance(outcome, Rejected)
    assert (outcome.stage, outcome.reason) == ("tools_verified", "tool_verification_failed")
    assert expected in outcome.detail
    assert "after 2 attempts" in outcome.detail
    # outer x inner code attempts, one schema, enrichment and call per outer attempt
    assert llm.count("code") == FAST.outer_retries * FAST.inner_retries
    assert llm.count("schema") == llm.count("enrich") == llm.count("call") == FAST.outer_retries
    assert executor.runs == sandbox_runs


async def test_the_sandbox_contains_code_the_static_check_lets_through() -> None:
    """With ``socket`` allowed, code that phones home reaches the sandbox, which has no
    network: the call fails there and the tool is refused."""
    script = freedonia_script()
    script[("code", Q_CAPITAL)] = [
        code_reply(
            "get_country_info",
            """
            import socket

            def get_country_info(country, **options):
                socket.create_connection(("1.1.1.1", 53), timeout=1).close()
                return {"capital": "Fredville"}
            """,
        )
    ]
    lenient = FAST.model_copy(update={"allowed_imports": (*FAST.allowed_imports, "socket")})
    outcome = await rejected(FREEDONIA, script, settings=lenient)
    assert outcome.reason == "tool_verification_failed"
    assert "raised: OSError" in outcome.detail or "raised: PermissionError" in outcome.detail


@pytest.mark.parametrize(
    ("step", "reply", "expected"),
    [
        # ADVERSARIAL: the new parameter is made required
        (
            "enrich",
            schema(
                "get_country_info", "Look up.", "country", {"year": {"type": "integer"}}
            ).replace('"required": ["country"]', '"required": ["country", "year"]'),
            "required parameters changed",
        ),
        ("enrich", schema("country_lookup", "Look up.", "country"), "name changed"),
        ("schema", schema("get country", "Look up.", "country"), "String should match pattern"),
        (
            "schema",
            as_json({"name": "x", "description": "d", "parameters": {"type": "array"}}),
            "invalid tool schema",
        ),
        # ADVERSARIAL: the call smuggles in the answer instead of the question's value
        ("call", as_json({"arguments": {"country": "Fredville"}}), "found neither"),
        ("call", as_json({"arguments": {"nation": "Freedonia"}}), "does not fit the schema"),
    ],
)
async def test_schema_enrichment_and_call_failures(step: str, reply: str, expected: str) -> None:
    script = freedonia_script()
    script[(step, Q_CAPITAL)] = [reply]
    outcome = await rejected(FREEDONIA, script)
    assert outcome.reason == "tool_verification_failed"
    assert expected in outcome.detail


async def test_a_tool_that_only_works_alone_fails_the_package_certificate() -> None:
    """ADVERSARIAL: the second tool answers only when it is the first one loaded (as in its
    own verification), not in the packaged environment where both tools share a worker."""
    script = freedonia_script()
    script[("code", Q_POPULATION)] = [
        code_reply(
            "get_city_population",
            """
            def get_city_population(city, **options):
                if city != "Fredville":
                    raise ValueError("unknown city")
                if __name__ != "astra_tool_0":
                    return {"population": 0}
                return {"population": 412500}
            """,
        )
    ]
    outcome = await rejected(FREEDONIA, script)
    assert (outcome.stage, outcome.reason) == ("registered", "certificate_failed")
    assert "get_city_population(q2)" in outcome.detail


async def test_an_unusable_clustering_judgement_rejects() -> None:
    script = merge_script()
    script[("cluster", "What is the population of Westmarch?")] = [
        as_json({"clusters": [["m1", "m7"]]})  # ADVERSARIAL: an unknown member
    ]
    outcome = await rejected(MERGE_ITEM, script)
    assert (outcome.stage, outcome.reason) == ("merged", "judge_error")


class DownExecutor:
    """A test double of the executor: the sandbox service is unreachable."""

    async def run(self, tools: Any, calls: Any) -> Any:
        raise ExecutorUnavailable("envhost at http://127.0.0.1:9 refused the connection")


async def test_an_unusable_sandbox_service_fails_the_run() -> None:
    with pytest.raises(ExecutorUnavailable, match="refused the connection"):
        async for _ in synthesize(
            [FREEDONIA, KNOWLEDGE],
            llm=ScriptedLLM({**freedonia_script(), **knowledge_script()}),
            executor=DownExecutor(),
            settings=FAST,
            progress=StageCounts(),
            job_id=None,
        ):
            pass
