"""Stage B5: the environment spec, and its certificate from a replay of the whole package.

Every reference call is replayed in ONE fresh sandbox holding all the environment's tools,
as an episode would have them; the certificate is built by
``astra_synth.procedural.certificate.abuild_certificate`` from those outputs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from astra_proto import EnvironmentSpec, Provenance, SubQuestion, SyntheticTool
from astra_synth.llm_pipeline.ask import cut
from astra_synth.llm_pipeline.decompose import Decomposition
from astra_synth.llm_pipeline.executor import CallOutcome, ExecutorUnavailable, ToolExecutor
from astra_synth.llm_pipeline.outcomes import REGISTERED, StageFailure
from astra_synth.procedural.certificate import (
    abuild_certificate,
    attach_certificate,
    reference_calls,
)


def build_spec(
    decomposition: Decomposition,
    tools: Sequence[SyntheticTool],
    tool_names: dict[str, str],
    provenance: Provenance,
) -> EnvironmentSpec:
    """The environment of a verified item (no certificate yet); raises ``StageFailure``
    (``invalid_environment``) when the contract refuses it."""
    sub_questions = [
        SubQuestion(
            id=q.id,
            question=q.question,
            answer=q.answer,
            depends_on=q.depends_on,
            tool_name=tool_names.get(q.id),
        )
        for q in decomposition.sub_questions
    ]
    try:
        return EnvironmentSpec(
            task=decomposition.question,
            answer=decomposition.answer,
            domain=decomposition.domain,
            scenario_type=decomposition.scenario_type,
            sub_questions=sub_questions,
            tools=list(tools),
            provenance=provenance,
        )
    except ValidationError as exc:
        raise StageFailure(REGISTERED, "invalid_environment", cut(str(exc))) from None


async def certify(
    spec: EnvironmentSpec, executor: ToolExecutor, *, verified_at: datetime | None = None
) -> EnvironmentSpec:
    """The spec with a passed certificate; raises ``StageFailure`` (``certificate_failed``)
    when a replay fails or misses its answer."""
    calls = reference_calls(spec)
    try:
        outcomes: deque[CallOutcome] = deque(
            await executor.run(spec.tools, [(c.tool_name, dict(c.arguments)) for c in calls])
        )
    except ExecutorUnavailable:
        raise
    except Exception as exc:
        raise StageFailure(
            REGISTERED, "certificate_failed", f"the replay failed: {type(exc).__name__}: {exc}"
        ) from None

    async def replayed(tool_name: str, arguments: dict[str, Any]) -> Any:
        if not outcomes:
            raise RuntimeError("the sandbox returned fewer outcomes than calls")
        outcome = outcomes.popleft()
        if outcome.tool_name != tool_name:
            raise RuntimeError(f"outcome of {outcome.tool_name!r} where {tool_name!r} was called")
        if outcome.error is not None:
            raise RuntimeError(outcome.error)
        return outcome.output

    certificate = await abuild_certificate(
        spec, replayed, verified_at=verified_at or datetime.now(UTC)
    )
    if not certificate.passed:
        failed = [
            f"{r.call.tool_name}({r.call.sub_question_id}): {cut(repr(r.output), 200)}"
            for r in certificate.replays
            if not r.answer_found
        ]
        raise StageFailure(REGISTERED, "certificate_failed", "; ".join(failed) or "no calls")
    return attach_certificate(spec, certificate)
