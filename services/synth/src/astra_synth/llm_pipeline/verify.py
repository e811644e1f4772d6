"""Verification of tool code by running it: through the ``ToolExecutor`` (the sandbox that
serves episodes), comparing each normalised sub-answer with the tool's structured output.

A call passes when it returns without error and its output holds the answer as one of its
values (``astra_proto.answers.output_holds_answer``): printed text does not count, and a
short answer cannot match inside a longer value. A probe call with a wrong argument must NOT
return the answer: a tool that answers whatever it is asked is no tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from astra_proto import SyntheticTool
from astra_proto.answers import leaf_values, normalise, output_holds_answer, text_holds_answer
from astra_synth.llm_pipeline.ask import cut
from astra_synth.llm_pipeline.executor import ExecutorUnavailable, ToolExecutor

PROBE_VALUE = "zz-unknown-probe-value"
"""The string a probe call puts in place of a required argument."""


@dataclass(frozen=True)
class CallCheck:
    """One call to make and what its output must (``must_hold``) or must not hold."""

    tool_name: str
    arguments: dict[str, Any]
    answer: str
    must_hold: bool = True
    label: str = ""


async def run_checks(
    executor: ToolExecutor, tools: Sequence[SyntheticTool], checks: Sequence[CallCheck]
) -> list[str]:
    """Run every check's call in one fresh sandbox; the problems found ([] = all pass).

    ``ExecutorUnavailable`` passes through; any other executor error is a problem.
    """
    calls = [(c.tool_name, dict(c.arguments)) for c in checks]
    try:
        outcomes = await executor.run(tools, calls)
    except ExecutorUnavailable:
        raise
    except Exception as exc:
        return [f"the sandbox run failed: {type(exc).__name__}: {cut(str(exc), 300)}"]
    if len(outcomes) != len(checks):
        return [f"the sandbox returned {len(outcomes)} outcomes for {len(checks)} calls"]
    problems = []
    for check, outcome in zip(checks, outcomes, strict=True):
        where = check.label or f"{check.tool_name}({check.arguments})"
        if check.must_hold:
            if outcome.error is not None:
                problems.append(f"{where} raised: {cut(outcome.error, 400)}")
            elif not output_holds_answer(outcome.output, check.answer):
                problems.append(
                    f"{where} returned {cut(repr(outcome.output), 300)}, which does not hold "
                    f"{check.answer!r} as a value (return structured data; printing does not "
                    "count)"
                )
        elif outcome.error is None and output_holds_answer(outcome.output, check.answer):
            problems.append(
                f"{where} returned the answer {check.answer!r} for a wrong argument: the tool "
                "must look its data up by its arguments, not return a constant"
            )
    return problems


def probe_arguments(arguments: dict[str, Any], required: Sequence[str]) -> dict[str, Any] | None:
    """The call with its first required string argument replaced by an unknown value, or
    None when no required argument is a string."""
    for name in required:
        if isinstance(arguments.get(name), str):
            return {**arguments, name: PROBE_VALUE}
    return None


def ungrounded_arguments(
    arguments: dict[str, Any], required: Sequence[str], context: str
) -> list[str]:
    """Required arguments whose values do not appear (normalised, as whole words) in
    ``context``: the question, the sub-question and the answers it depends on."""
    missing = []
    for name in required:
        for value in leaf_values(arguments.get(name)):
            if isinstance(value, bool):
                continue
            if not text_holds_answer(context, str(value)) and normalise(value):
                missing.append(f"{name}={value!r}")
    return missing
