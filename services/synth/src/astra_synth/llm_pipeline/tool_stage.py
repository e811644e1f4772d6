"""Stage B3: one verified tool per tool-needing sub-question.

Per sub-question (dependency answers given as context), an outer attempt writes a schema,
enriches it with backward-compatible optional parameters, writes a concrete call from values
of the question only, then up to ``inner_retries`` versions of the code, each run in the
sandbox with the call; each failure is fed back into the next request. After
``outer_retries`` failed outer attempts the item is rejected.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import ValidationError

from astra_proto import ReferenceCall, SubQuestion, SyntheticTool, ToolSpec
from astra_synth.llm.types import LLMRequestRejected
from astra_synth.llm_pipeline.ask import StageAsker, Unparseable, cut
from astra_synth.llm_pipeline.codecheck import code_problems
from astra_synth.llm_pipeline.decompose import Decomposition
from astra_synth.llm_pipeline.executor import ToolExecutor
from astra_synth.llm_pipeline.outcomes import TOOLS_VERIFIED, StageFailure
from astra_synth.llm_pipeline.settings import PipelineSettings
from astra_synth.llm_pipeline.toolgen_prompts import (
    SYSTEM_CALL,
    SYSTEM_CODE,
    SYSTEM_ENRICH,
    SYSTEM_SCHEMA,
    CallReply,
    CodeReply,
    SchemaReply,
)
from astra_synth.llm_pipeline.verify import (
    CallCheck,
    probe_arguments,
    run_checks,
    ungrounded_arguments,
)

_FAILURES_SHOWN = 3


class AttemptFailed(Exception):
    """One outer attempt failed (the message says at which step and why)."""


class ToolBuilder:
    """Builds the tools of one decomposition, sub-question by sub-question."""

    def __init__(
        self,
        decomposition: Decomposition,
        asker: StageAsker,
        executor: ToolExecutor,
        settings: PipelineSettings,
    ) -> None:
        self.decomposition = decomposition
        self.asker = asker
        self.executor = executor
        self.settings = settings
        self.by_id = {q.id: q for q in decomposition.sub_questions}

    async def build(self, question: SubQuestion) -> SyntheticTool:
        """A verified tool for ``question``; raises ``StageFailure`` after the retries."""
        failures: list[str] = []
        for outer in range(self.settings.outer_retries):
            try:
                return await self._attempt(question, failures)
            except AttemptFailed as exc:
                failures.append(f"attempt {outer + 1}: {exc}")
            except LLMRequestRejected as exc:
                raise StageFailure(TOOLS_VERIFIED, "llm_request_rejected", str(exc)) from None
        raise StageFailure(
            TOOLS_VERIFIED,
            "tool_verification_failed",
            f"sub-question {question.id}: no verified tool after {len(failures)} attempts; "
            f"last: {cut(failures[-1], 800)}",
        )

    def subject(self, question: SubQuestion) -> dict[str, Any]:
        """What every step is told about the sub-question."""
        return {
            "question": self.decomposition.question,
            "sub_question": question.question,
            "sub_answer": question.answer,
            "context": [
                {"question": self.by_id[d].question, "answer": self.by_id[d].answer}
                for d in question.depends_on
            ],
        }

    def grounding_text(self, question: SubQuestion) -> str:
        """Where a call's argument values may come from."""
        parts = [self.decomposition.question, question.question]
        parts += [self.by_id[d].answer for d in question.depends_on]
        return "\n".join(parts)

    async def _attempt(self, question: SubQuestion, failures: list[str]) -> SyntheticTool:
        subject = self.subject(question)
        if failures:
            subject["previous_failures"] = failures[-_FAILURES_SHOWN:]
        spec = await self._schema(subject)
        spec = await self._enrich(spec, subject)
        arguments = await self._call(spec, question, subject)
        return await self._code(spec, arguments, question, subject)

    async def _schema(self, subject: dict[str, Any]) -> ToolSpec:
        try:
            reply = await self.asker.ask(TOOLS_VERIFIED, SYSTEM_SCHEMA, subject, SchemaReply)
        except Unparseable as exc:
            raise AttemptFailed(f"schema: {exc}") from None
        return self._tool_spec(reply, "schema")

    async def _enrich(self, base: ToolSpec, subject: dict[str, Any]) -> ToolSpec:
        payload = {**subject, "tool": base.model_dump(mode="json", exclude_none=True)}
        try:
            reply = await self.asker.ask(TOOLS_VERIFIED, SYSTEM_ENRICH, payload, SchemaReply)
        except Unparseable as exc:
            raise AttemptFailed(f"enrichment: {exc}") from None
        enriched = self._tool_spec(reply, "enrichment")
        problems = compatibility_problems(base, enriched)
        if problems:
            raise AttemptFailed(f"enrichment is not backward compatible: {'; '.join(problems)}")
        return enriched

    def _tool_spec(self, reply: SchemaReply, step: str) -> ToolSpec:
        try:
            spec = ToolSpec(
                name=reply.name,
                description=reply.description,
                parameters=reply.parameters,
                domain=self.decomposition.domain,
            )
            jsonschema.Draft202012Validator.check_schema(spec.parameters)
        except (ValidationError, jsonschema.SchemaError) as exc:
            raise AttemptFailed(f"{step}: invalid tool schema: {cut(str(exc), 300)}") from None
        return spec

    async def _call(
        self, spec: ToolSpec, question: SubQuestion, subject: dict[str, Any]
    ) -> dict[str, Any]:
        payload = {**subject, "tool": spec.model_dump(mode="json", exclude_none=True)}
        try:
            reply = await self.asker.ask(TOOLS_VERIFIED, SYSTEM_CALL, payload, CallReply)
        except Unparseable as exc:
            raise AttemptFailed(f"call: {exc}") from None
        try:
            jsonschema.validate(reply.arguments, spec.parameters)
        except jsonschema.ValidationError as exc:
            raise AttemptFailed(f"call does not fit the schema: {cut(exc.message, 300)}") from None
        if self.settings.grounded_arguments:
            required = spec.parameters.get("required", [])
            missing = ungrounded_arguments(reply.arguments, required, self.grounding_text(question))
            if missing:
                raise AttemptFailed(
                    f"call uses values found neither in the question nor in earlier answers: "
                    f"{missing}"
                )
        return reply.arguments

    async def _code(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        question: SubQuestion,
        subject: dict[str, Any],
    ) -> SyntheticTool:
        payload = {
            **subject,
            "tool": spec.model_dump(mode="json", exclude_none=True),
            "call": {"arguments": arguments},
        }
        history: list[tuple[str, str]] = []
        for _ in range(self.settings.inner_retries):
            try:
                reply, text = await self.asker.ask_text(
                    TOOLS_VERIFIED, SYSTEM_CODE, payload, CodeReply, history=history
                )
            except Unparseable as exc:
                history.append((exc.reply, str(exc)))
                continue
            problems = code_problems(
                reply.code,
                reply.entrypoint,
                self.settings.allowed_imports,
                self.settings.max_code_chars,
            )
            tool = SyntheticTool(
                spec=spec,
                code=reply.code,
                entrypoint=reply.entrypoint,
                reference_calls=[
                    ReferenceCall(
                        tool_name=spec.name,
                        arguments=arguments,
                        sub_question_id=question.id,
                        expected_answer=question.answer,
                    )
                ],
            )
            if not problems:
                problems = await run_checks(self.executor, [tool], self.checks(tool, question))
            if not problems:
                return tool
            history.append((text, "; ".join(problems)))
        raise AttemptFailed(f"code: {history[-1][1] if history else 'no attempt'}")

    def checks(self, tool: SyntheticTool, question: SubQuestion) -> list[CallCheck]:
        """The reference call, and a probe call with a wrong argument where there is one."""
        (call,) = tool.reference_calls
        checks = [
            CallCheck(
                tool.spec.name, call.arguments, question.answer, label=f"the call for {question.id}"
            )
        ]
        probe = probe_arguments(call.arguments, tool.spec.parameters.get("required", []))
        if probe is not None:
            checks.append(
                CallCheck(
                    tool.spec.name,
                    probe,
                    question.answer,
                    must_hold=False,
                    label=f"a probe for {question.id}",
                )
            )
        return checks


def compatibility_problems(base: ToolSpec, enriched: ToolSpec) -> list[str]:
    """Why ``enriched`` would break a caller of ``base`` ([] when it would not)."""
    problems = []
    if enriched.name != base.name:
        problems.append(f"the name changed from {base.name!r} to {enriched.name!r}")
    old = base.parameters.get("properties", {})
    new = enriched.parameters.get("properties", {})
    for name, schema in old.items():
        if name not in new:
            problems.append(f"parameter {name!r} was removed")
        elif new[name].get("type") != schema.get("type"):
            problems.append(f"parameter {name!r} changed type")
    if set(enriched.parameters.get("required", [])) != set(base.parameters.get("required", [])):
        problems.append("the required parameters changed (new parameters must be optional)")
    return problems
