"""Stage B1: a question (or a knowledge text) as sub-questions with a dependency DAG.

``qa`` mode decomposes a given question-answer pair; ``knowledge`` mode writes a new
multi-hop question from a text with a hop budget. Either reply is checked: ids unique,
dependencies known, no cycle, within the hop and size budgets. The scenario type is derived
from the DAG, not taken from the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from astra_proto import ScenarioType, SubQuestion
from astra_synth.llm.types import LLMRequestRejected
from astra_synth.llm_pipeline.ask import StageAsker, StageReply, Unparseable
from astra_synth.llm_pipeline.items import KnowledgeItem, QaItem
from astra_synth.llm_pipeline.outcomes import DECOMPOSED, StageFailure
from astra_synth.llm_pipeline.settings import PipelineSettings

_REPLY_SHAPE = """Reply with one JSON object and nothing else:
{"domain": "<one lowercase word or snake_case slug for the topic>",
 "sub_questions": [
   {"id": "q1", "question": "<atomic question>", "answer": "<its short answer>",
    "depends_on": ["<ids of sub-questions whose answers this one needs>"]}
 ]}
Rules: each sub-question asks for exactly one fact; "depends_on" lists exactly the
sub-questions whose answers it uses (an empty list when none); no sub-question repeats another;
the sub-questions together answer the main question, and the last one to be answered yields
the final answer."""

SYSTEM_QA = (
    "You decompose a question into the chain of atomic sub-questions a tool-using assistant "
    "would have to answer, in order, to reach the given answer. Dependencies form a chain or "
    "a DAG (independent sub-questions may run in parallel).\n" + _REPLY_SHAPE
)
"""System prompt of ``qa`` mode; the input is {"question", "answer"}."""

SYSTEM_KNOWLEDGE = (
    "You write one multi-hop question from a knowledge text, answerable only by chaining "
    "facts of the text, then decompose it into atomic sub-questions. Use exactly the "
    "requested number of hops (the longest dependency chain). Add the fields "
    '"question" and "answer" (the main question and its final answer) to the reply.\n'
    + _REPLY_SHAPE
)
"""System prompt of ``knowledge`` mode; the input is {"text", "hops"}."""


class DraftSubQuestion(StageReply):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    question: str = Field(min_length=1, max_length=2000)
    answer: str = Field(min_length=1, max_length=1000)
    depends_on: list[str] = Field(default_factory=list)


class QaDecomposition(StageReply):
    domain: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    sub_questions: list[DraftSubQuestion] = Field(min_length=1)


class KnowledgeDecomposition(QaDecomposition):
    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class Decomposition:
    """A checked decomposition: the task, its answer and the sub-question DAG (no tools yet)."""

    question: str
    answer: str
    domain: str
    sub_questions: list[SubQuestion]
    scenario_type: ScenarioType
    hops: int

    def sub_questions_in_order(self) -> list[SubQuestion]:
        """Every dependency before its dependents (by depth, then in the given order)."""
        depth = hop_depths(self.sub_questions)
        return sorted(self.sub_questions, key=lambda q: depth[q.id])


async def decompose(
    item: QaItem | KnowledgeItem, asker: StageAsker, settings: PipelineSettings
) -> Decomposition:
    """The item's checked decomposition; raises ``StageFailure`` at stage ``decomposed``."""
    try:
        if isinstance(item, QaItem):
            payload = {"question": item.question, "answer": item.answer}
            reply: QaDecomposition = await asker.ask(
                DECOMPOSED, SYSTEM_QA, payload, QaDecomposition
            )
            question, answer = item.question, item.answer
        else:
            hops = item.hops or settings.knowledge_hops
            knowledge = await asker.ask(
                DECOMPOSED,
                SYSTEM_KNOWLEDGE,
                {"text": item.text, "hops": hops},
                KnowledgeDecomposition,
            )
            reply, question, answer = knowledge, knowledge.question, knowledge.answer
    except Unparseable as exc:
        raise StageFailure(DECOMPOSED, "unparseable_decomposition", str(exc)) from None
    except LLMRequestRejected as exc:
        raise StageFailure(DECOMPOSED, "llm_request_rejected", str(exc)) from None
    sub_questions = [
        SubQuestion(id=d.id, question=d.question, answer=d.answer, depends_on=d.depends_on)
        for d in reply.sub_questions
    ]
    check_dag(sub_questions, settings)
    depth = hop_depths(sub_questions)
    return Decomposition(
        question=question,
        answer=answer,
        domain=item.domain or reply.domain,
        sub_questions=sub_questions,
        scenario_type=scenario_type(sub_questions),
        hops=max(depth.values()),
    )


def check_dag(sub_questions: list[SubQuestion], settings: PipelineSettings) -> None:
    """Raise ``StageFailure`` unless the sub-questions form a DAG within the budgets."""
    if len(sub_questions) > settings.max_sub_questions:
        raise StageFailure(
            DECOMPOSED,
            "too_many_sub_questions",
            f"{len(sub_questions)} sub-questions, the limit is {settings.max_sub_questions}",
        )
    ids = [q.id for q in sub_questions]
    if len(set(ids)) != len(ids):
        raise StageFailure(DECOMPOSED, "invalid_decomposition", f"duplicate ids in {ids}")
    known = set(ids)
    for q in sub_questions:
        unknown = [d for d in q.depends_on if d not in known]
        if unknown:
            raise StageFailure(
                DECOMPOSED, "invalid_decomposition", f"{q.id} depends on unknown {unknown}"
            )
        if q.id in q.depends_on or len(set(q.depends_on)) != len(q.depends_on):
            raise StageFailure(
                DECOMPOSED, "invalid_decomposition", f"{q.id} repeats or depends on itself"
            )
    cycle = find_cycle(sub_questions)
    if cycle:
        raise StageFailure(DECOMPOSED, "cyclic_dependencies", " -> ".join(cycle))
    hops = max(hop_depths(sub_questions).values())
    if hops > settings.max_hops:
        raise StageFailure(
            DECOMPOSED, "hop_budget_exceeded", f"{hops} hops, the budget is {settings.max_hops}"
        )


def find_cycle(sub_questions: list[SubQuestion]) -> list[str]:
    """A dependency cycle as a closed path of ids, or [] (iterative colouring DFS)."""
    deps = {q.id: q.depends_on for q in sub_questions}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in deps:
        if root in state:
            continue
        path = [root]
        stack = [iter(deps[root])]
        state[root] = 1
        while stack:
            for dep in stack[-1]:
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if dep not in state:
                    state[dep] = 1
                    path.append(dep)
                    stack.append(iter(deps[dep]))
                    break
            else:
                state[path.pop()] = 2
                stack.pop()
    return []


def hop_depths(sub_questions: list[SubQuestion]) -> dict[str, int]:
    """Length of the longest dependency chain ending at each sub-question (acyclic input)."""
    deps = {q.id: q.depends_on for q in sub_questions}
    depth: dict[str, int] = {}
    remaining = list(deps)
    while remaining:
        ready = [i for i in remaining if all(d in depth for d in deps[i])]
        for i in ready:
            depth[i] = 1 + max((depth[d] for d in deps[i]), default=0)
        remaining = [i for i in remaining if i not in depth]
    return depth


def scenario_type(sub_questions: list[SubQuestion]) -> ScenarioType:
    """The topology (docs/method.md B1): one node; independent nodes; one chain; anything else."""
    if len(sub_questions) == 1:
        return ScenarioType.SINGLE_HOP
    if all(not q.depends_on for q in sub_questions):
        return ScenarioType.PARALLEL_SINGLE_HOP
    if max(hop_depths(sub_questions).values()) == len(sub_questions):
        return ScenarioType.MULTI_HOP
    return ScenarioType.PARALLEL_MULTI_HOP
