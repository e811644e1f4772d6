"""Stage B4: same-intent tools clustered, then merged into one and re-verified.

A judge groups sub-questions whose tools share logic, operator, argument structure and
return shape. For each group, the first member's tool is the base: the LLM edits its code's
embedded data so that it answers every member, and writes each member's call again; all of
them are re-run in the sandbox. A group that cannot be merged within ``merge_retries``
attempts drops the instance.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import Field

from astra_proto import ReferenceCall, SubQuestion, SyntheticTool
from astra_synth.llm.types import LLMRequestRejected
from astra_synth.llm_pipeline.ask import StageAsker, StageReply, Unparseable, cut
from astra_synth.llm_pipeline.codecheck import code_problems
from astra_synth.llm_pipeline.executor import ToolExecutor
from astra_synth.llm_pipeline.outcomes import MERGED, StageFailure
from astra_synth.llm_pipeline.settings import PipelineSettings
from astra_synth.llm_pipeline.tool_stage import ToolBuilder
from astra_synth.llm_pipeline.verify import run_checks, ungrounded_arguments

SYSTEM_CLUSTER = """You find tools that have the same intent: the same logic and operation, \
the same argument structure and the same shape of result, differing only in the data they \
hold (e.g. two lookups of a city's population). Tools that merely share a topic are different.
Reply with one JSON object and nothing else:
{"clusters": [["<sub_question_id>", "<sub_question_id>"]]}
listing only groups of two or more; {"clusters": []} when no two tools share an intent."""
"""System prompt of the clustering judgement; the input lists each sub-question's tool."""

SYSTEM_MERGE = """You merge same-intent tools into one. Start from the base tool's code and \
edit its embedded data (keep its function name and signature) so that it answers every \
member sub-question; then write each member's call of the merged tool, with argument values \
taken only from that member's sub-question and the answers it depends on. The same rules \
as for any tool apply (built-ins only, embedded data, return a JSON-serialisable dict that \
holds the answer as a value).
Reply with one JSON object and nothing else:
{"code": "<the Python source>",
 "calls": [{"sub_question_id": "<id>", "arguments": {"<arg>": <value>}}]}"""
"""System prompt of the merge step; the input is the base tool and the members."""


class ClusterReply(StageReply):
    clusters: list[list[str]]


class MemberCall(StageReply):
    sub_question_id: str
    arguments: dict[str, Any]


class MergeReply(StageReply):
    code: str = Field(min_length=1)
    calls: list[MemberCall] = Field(min_length=1)


async def cluster(
    tools: dict[str, SyntheticTool], asker: StageAsker, questions: dict[str, SubQuestion]
) -> list[list[str]]:
    """Groups (two or more sub-question ids) whose tools share an intent; raises
    ``StageFailure(merged, judge_error)`` when the judgement is unusable."""
    if len(tools) < 2:
        return []
    payload = {
        "tools": [
            {
                "sub_question_id": qid,
                "sub_question": questions[qid].question,
                **tool.spec.model_dump(include={"name", "description", "parameters"}),
            }
            for qid, tool in tools.items()
        ]
    }
    try:
        reply = await asker.ask(MERGED, SYSTEM_CLUSTER, payload, ClusterReply, judge=True)
    except (Unparseable, LLMRequestRejected) as exc:
        raise StageFailure(MERGED, "judge_error", f"clustering: {exc}") from None
    seen: set[str] = set()
    for group in reply.clusters:
        unknown = [q for q in group if q not in tools]
        if len(group) < 2 or unknown or seen & set(group) or len(set(group)) != len(group):
            raise StageFailure(
                MERGED,
                "judge_error",
                f"clustering: invalid group {group} (known: {sorted(tools)})",
            )
        seen |= set(group)
    return reply.clusters


class Merger:
    """Merges clusters of one item's tools."""

    def __init__(
        self,
        builder: ToolBuilder,
        asker: StageAsker,
        executor: ToolExecutor,
        settings: PipelineSettings,
    ) -> None:
        self.builder = builder
        self.asker = asker
        self.executor = executor
        self.settings = settings

    async def merge(self, group: list[str], tools: dict[str, SyntheticTool]) -> SyntheticTool:
        """One tool answering every member of ``group``, verified in the sandbox; raises
        ``StageFailure(merged, merge_failed)`` after ``merge_retries`` attempts."""
        base = tools[group[0]]
        members = [self.builder.by_id[q] for q in group]
        payload = {
            "base_tool": {
                **base.spec.model_dump(mode="json", exclude_none=True),
                "entrypoint": base.entrypoint,
                "code": base.code,
            },
            "members": [
                {
                    **self.builder.subject(q),
                    "sub_question_id": q.id,
                    "original_call": tools[q.id].reference_calls[0].arguments,
                }
                for q in members
            ],
        }
        history: list[tuple[str, str]] = []
        for _ in range(self.settings.merge_retries):
            try:
                reply, text = await self.asker.ask_text(
                    MERGED, SYSTEM_MERGE, payload, MergeReply, history=history
                )
            except Unparseable as exc:
                history.append((exc.reply, str(exc)))
                continue
            except LLMRequestRejected as exc:
                raise StageFailure(MERGED, "llm_request_rejected", str(exc)) from None
            merged, problems = self._candidate(base, members, reply)
            if not problems:
                checks = [
                    check
                    for q in members
                    for check in self.builder.checks(_single(merged, q.id), q)
                ]
                problems = await run_checks(self.executor, [merged], checks)
            if not problems:
                return merged
            history.append((text, "; ".join(problems)))
        raise StageFailure(
            MERGED,
            "merge_failed",
            f"group {group}: not merged after {len(history)} attempts; "
            f"last: {cut(history[-1][1], 800) if history else 'none'}",
        )

    def _candidate(
        self, base: SyntheticTool, members: list[SubQuestion], reply: MergeReply
    ) -> tuple[SyntheticTool, list[str]]:
        """The merged tool the reply describes, and what is wrong with it before running."""
        calls = {c.sub_question_id: c.arguments for c in reply.calls}
        wanted = [q.id for q in members]
        problems = []
        if sorted(calls) != sorted(wanted) or len(reply.calls) != len(wanted):
            problems.append(f"the calls must cover each of {wanted} once")
        problems += code_problems(
            reply.code, base.entrypoint, self.settings.allowed_imports, self.settings.max_code_chars
        )
        required = base.spec.parameters.get("required", [])
        references = []
        for q in members:
            arguments = calls.get(q.id, {})
            try:
                jsonschema.validate(arguments, base.spec.parameters)
            except jsonschema.ValidationError as exc:
                problems.append(f"the call for {q.id} does not fit the schema: {exc.message}")
            if self.settings.grounded_arguments:
                missing = ungrounded_arguments(arguments, required, self.builder.grounding_text(q))
                if missing:
                    problems.append(f"the call for {q.id} uses ungrounded values {missing}")
            references.append(
                ReferenceCall(
                    tool_name=base.spec.name,
                    arguments=arguments,
                    sub_question_id=q.id,
                    expected_answer=q.answer,
                )
            )
        merged = SyntheticTool(
            spec=base.spec, code=reply.code, entrypoint=base.entrypoint, reference_calls=references
        )
        return merged, problems


def _single(tool: SyntheticTool, question_id: str) -> SyntheticTool:
    """``tool`` with only the reference call of one sub-question (for its checks)."""
    calls = [c for c in tool.reference_calls if c.sub_question_id == question_id]
    return tool.model_copy(update={"reference_calls": calls})


async def merge_tools(
    tools: dict[str, SyntheticTool],
    builder: ToolBuilder,
    asker: StageAsker,
    executor: ToolExecutor,
    settings: PipelineSettings,
) -> tuple[list[SyntheticTool], dict[str, str]]:
    """The item's final tools (merged groups and the rest, names made unique) and the tool
    name of each tool-needing sub-question."""
    groups = await cluster(tools, asker, builder.by_id)
    merger = Merger(builder, asker, executor, settings)
    final: list[tuple[list[str], SyntheticTool]] = []
    grouped = {q for group in groups for q in group}
    for group in groups:
        final.append((group, await merger.merge(group, tools)))
    final += [([qid], tool) for qid, tool in tools.items() if qid not in grouped]
    names: dict[str, str] = {}
    used: set[str] = set()
    result = []
    for members, tool in final:
        name = unique_name(tool.spec.name, used)
        used.add(name)
        if name != tool.spec.name:
            tool = rename(tool, name)
        result.append(tool)
        names.update(dict.fromkeys(members, name))
    return result, names


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when taken (within the 64-character limit)."""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        suffix = f"_{n}"
        candidate = name[: 64 - len(suffix)] + suffix
    return candidate


def rename(tool: SyntheticTool, name: str) -> SyntheticTool:
    """The tool offered under another name (its code and entrypoint unchanged)."""
    spec = tool.spec.model_copy(update={"name": name})
    calls = [c.model_copy(update={"tool_name": name}) for c in tool.reference_calls]
    return tool.model_copy(update={"spec": spec, "reference_calls": calls})
