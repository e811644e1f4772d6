"""The kinds of environment envhost serves: how their episodes run and how they are scored."""

from __future__ import annotations

from collections.abc import Callable, Collection

from astra_envhost.backends import EpisodeBackend, EpisodeRuntime
from astra_envhost.bfcl import BACKEND_NAME as BFCL
from astra_envhost.bfcl import BfclBackend, bfcl_config
from astra_envhost.episodes import EnvironmentKind
from astra_envhost.scoring import score_synthetic
from astra_proto import EnvironmentSpec, RewardBreakdown, SyntheticTool, ToolCallRecord

SandboxFactory = Callable[[list[SyntheticTool]], EpisodeBackend]
"""Builds the sandboxed backend of one episode from the synthetic tools it offers."""


def score_subquestions(
    spec: EnvironmentSpec,
    calls: list[ToolCallRecord],
    final_answer: str | None,
    _: EpisodeRuntime,
) -> RewardBreakdown:
    """The sub-question F1 verifier, as an ``EnvironmentKind.score``."""
    return score_synthetic(spec, calls, final_answer)


def synthetic_kind(sandbox: SandboxFactory) -> EnvironmentKind:
    """Synthesized environments: every tool runs in the episode's own sandbox worker."""

    def create_runtime(spec: EnvironmentSpec, distractors: list[SyntheticTool]) -> EpisodeRuntime:
        tools = [*spec.tools, *distractors]
        backend = sandbox(tools)
        return EpisodeRuntime({tool.spec.name: backend for tool in tools})

    return EnvironmentKind(create_runtime=create_runtime, score=score_subquestions)


class BfclRuntime(EpisodeRuntime):
    """A BFCL episode: the entry's classes, turn-dependent tools, and the executed calls."""

    def __init__(
        self, backend: BfclBackend, by_tool: dict[str, EpisodeBackend], extra: set[str]
    ) -> None:
        super().__init__(by_tool)
        self.backend = backend
        self.extra = extra

    def available(self, turn: int) -> Collection[str]:
        return {*self.backend.tool_names(), *self.extra}

    def begin_turn(self, turn: int) -> None:
        self.backend.begin_turn(turn)


def bfcl_kind(sandbox: SandboxFactory) -> EnvironmentKind:
    """BFCL multi-turn: the benchmark's own classes in process (trusted), its own checker."""

    def create_runtime(spec: EnvironmentSpec, distractors: list[SyntheticTool]) -> EpisodeRuntime:
        config = bfcl_config(spec)
        backend = BfclBackend(config)
        by_tool: dict[str, EpisodeBackend] = {tool.name: backend for tool in spec.builtin_tools}
        if distractors:
            distractor_backend = sandbox(distractors)
            by_tool |= {tool.spec.name: distractor_backend for tool in distractors}
        return BfclRuntime(backend, by_tool, {tool.spec.name for tool in distractors})

    return EnvironmentKind(create_runtime=create_runtime, score=score_bfcl_episode)


def score_bfcl_episode(
    spec: EnvironmentSpec,
    calls: list[ToolCallRecord],
    final_answer: str | None,
    runtime: EpisodeRuntime,
) -> RewardBreakdown:
    """BFCL's pass/fail on the calls the episode's BFCL classes executed, turn by turn.

    Calls refused before execution (schema violations, tools not offered yet) and distractor
    calls are not replayed, exactly as they never ran; every call still counts in ``n_calls``.
    F1 is 1 for a pass and 0 for a fail; an episode that did not reach its last turn fails.
    """
    if not isinstance(runtime, BfclRuntime):
        raise TypeError("a BFCL episode must run on a BfclRuntime")
    verdict = runtime.backend.score()
    passed = 1.0 if verdict.valid else 0.0
    return RewardBreakdown(
        n_subquestions=1,
        n_solved=int(verdict.valid),
        n_calls=len(calls),
        precision=passed,
        recall=passed,
        f1=passed,
        solved_ids=[str(bfcl_config(spec)["entry_id"])] if verdict.valid else [],
        final_answer_correct=verdict.valid,
        verifier="bfcl_multi_turn",
        details={}
        if verdict.valid
        else {
            "error_type": verdict.error_type,
            "error_message": verdict.error_message,
            **verdict.details,
        },
    )


def builtin_kinds(sandbox: SandboxFactory) -> dict[str, EnvironmentKind]:
    """Every kind this envhost serves, by ``kind_key``."""
    return {"synthetic": synthetic_kind(sandbox), BFCL: bfcl_kind(sandbox)}
