"""The agent loop: one episode of a policy against an environment, as a scored Trajectory.

``run_episode`` opens an episode, offers its tools (distractors included), converses with the
policy, runs the tool calls it asks for (the calls of one turn concurrently), moves multi-turn
tasks to their next user turn, stops on a final answer, the turn limit, the token budget or the
time limit, scores the episode and closes it. Failures of the policy endpoint or of envhost
end the episode as ``finish_reason=error`` with the reason: a trajectory always comes back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from astra_proto import (
    DistractorRef,
    Episode,
    EpisodeRequest,
    FinishReason,
    Message,
    RewardBreakdown,
    Timings,
    ToolCall,
    ToolSpec,
    Trajectory,
)
from astra_proto.api.rollout import EpisodeLimits, SamplingParams
from astra_rollout.envhost_client import EpisodeBackend, ToolOutcome, ToolSession
from astra_rollout.policy import Completion, PolicyClient
from astra_rollout.tokens import TokenLedger

ORPHAN_WAIT_S = 30.0
"""How long a cancelled episode waits for its creation to answer, to close what it created."""


class AgentTask(Protocol):
    """What the agent plays: an id, the first user turn, any further user turns, and the tool
    documents offered (what a trajectory lists when its episode never opened).
    ``EnvironmentSpec`` is one; a teacher run's task on an external tool server is another."""

    @property
    def id(self) -> str: ...

    @property
    def task(self) -> str: ...

    @property
    def followup_turns(self) -> Sequence[str]: ...

    def tool_specs(self) -> list[ToolSpec]: ...


@dataclass(slots=True)
class _Run:
    """Mutable state of one episode while it runs."""

    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    ledger: TokenLedger = field(default_factory=TokenLedger)
    turns: int = 0
    user_turn: int = 0
    tool_calls: int = 0
    malformed_calls: int = 0
    parsed_from_text: int = 0
    policy_retries: int = 0
    llm_seconds: float = 0.0
    tool_seconds: float = 0.0
    final_answer: str | None = None
    finish: FinishReason | None = None


async def run_episode(
    spec: AgentTask,
    *,
    policy: PolicyClient,
    episodes: EpisodeBackend,
    sampling: SamplingParams | None = None,
    limits: EpisodeLimits | None = None,
    policy_version: int = 0,
    group_id: str | None = None,
    seed: int = 0,
    distractors: Sequence[DistractorRef] = (),
    system_prompt: str | None = None,
    trajectory_id: str | None = None,
) -> Trajectory:
    """Play one episode of ``spec`` with ``policy``; returns its scored Trajectory (no reward
    when the backend has no verifier, as for teacher runs, which the judge scores instead).

    Never raises for a failed episode: the trajectory then has ``finish_reason=error`` and
    ``failure_reason``, no reward, and whatever conversation happened. Token arrays are set
    when every turn's prompt extended the previous one (see ``tokens.TokenLedger``);
    otherwise the trajectory is text-only and ``metadata['token_recording']`` says why.
    Cancellation propagates, after the episode is closed.
    """
    sampling = sampling or SamplingParams()
    limits = limits or EpisodeLimits()
    started_at = datetime.now(UTC)
    messages = [Message(role="system", content=system_prompt)] if system_prompt else []
    run = _Run(messages=[*messages, Message(role="user", content=spec.task)])
    episode: Episode | None = None
    failure: str | None = None
    reward: RewardBreakdown | None = None
    notes: dict[str, Any] = {}
    try:
        request = EpisodeRequest(env_id=spec.id, seed=seed, distractors=list(distractors))
        episode = await _create_episode(episodes, request)
        async with episodes.tool_session(episode) as session:
            try:
                async with asyncio.timeout(limits.timeout_s):
                    await _converse(spec, episode, session, episodes, policy, sampling, limits, run)
            except TimeoutError:
                run.finish = FinishReason.TIME_LIMIT
        reward = await episodes.score(episode, run.final_answer)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure ends this episode only, and is recorded
        failure = describe_error(exc)
    finally:
        if episode is not None:
            try:
                await asyncio.shield(episodes.close_episode(episode))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                notes["close_error"] = f"{type(exc).__name__}: {exc}"
    return _trajectory(
        spec,
        episode,
        run,
        reward,
        failure,
        notes,
        started_at=started_at,
        policy=policy,
        policy_version=policy_version,
        group_id=group_id,
        trajectory_id=trajectory_id,
    )


async def _create_episode(episodes: EpisodeBackend, request: EpisodeRequest) -> Episode:
    """A new episode. Cancelled while the request is out, it waits (a bounded time) for the
    episode the backend creates anyway and closes it, so a cancelled run leaves none open."""
    creating = asyncio.ensure_future(episodes.create_episode(request))
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        try:
            async with asyncio.timeout(ORPHAN_WAIT_S):
                orphan = await creating
                await episodes.close_episode(orphan)
        except Exception:  # nothing was created, or it could not be closed: envhost reaps it
            pass
        raise


async def _converse(
    spec: AgentTask,
    episode: Episode,
    session: ToolSession,
    episodes: EpisodeBackend,
    policy: PolicyClient,
    sampling: SamplingParams,
    limits: EpisodeLimits,
    run: _Run,
) -> None:
    run.tools = await session.list_tools()
    while True:
        completion = await policy.complete(run.messages, run.tools, sampling, turn=run.turns)
        run.turns += 1
        run.llm_seconds += completion.seconds
        run.policy_retries += completion.attempts - 1
        run.parsed_from_text += completion.parsed_from_text
        run.ledger.add_turn(
            completion.prompt_token_ids, completion.completion_token_ids, completion.logprobs
        )
        run.messages.append(completion.message)
        calls = completion.message.tool_calls or []
        if calls:
            await _run_calls(session, calls, completion, run)
        else:
            run.final_answer = completion.message.content
            if run.user_turn >= len(spec.followup_turns):
                run.finish = FinishReason.FINAL_ANSWER
                return
            run.user_turn = await episodes.advance_turn(episode)
            run.messages.append(
                Message(role="user", content=spec.followup_turns[run.user_turn - 1])
            )
            run.tools = await session.list_tools()
        if _tokens_used(completion) >= limits.token_budget:
            run.finish = FinishReason.TOKEN_BUDGET
            return
        if run.turns >= limits.max_turns:
            run.finish = FinishReason.TURN_LIMIT
            return


def _tokens_used(completion: Completion) -> int:
    if completion.prompt_tokens is not None and completion.completion_tokens is not None:
        return completion.prompt_tokens + completion.completion_tokens
    if completion.prompt_token_ids is not None and completion.completion_token_ids is not None:
        return len(completion.prompt_token_ids) + len(completion.completion_token_ids)
    return 0  # the server reports no usage: the budget cannot be enforced


async def _run_calls(
    session: ToolSession, calls: list[ToolCall], completion: Completion, run: _Run
) -> None:
    """Run one turn's tool calls concurrently; answer each with a tool message, in order."""
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(_run_call(session, c, completion) for c in calls))
    run.tool_seconds += time.perf_counter() - started
    for call, outcome in zip(calls, outcomes, strict=True):
        if outcome is None:
            run.malformed_calls += 1
            text = f"Error: {completion.call_errors.get(call.id) or 'malformed tool call'}"
        else:
            run.tool_calls += 1
            text = outcome.text
        run.messages.append(
            Message(role="tool", tool_call_id=call.id, name=call.function.name, content=text)
        )


async def _run_call(
    session: ToolSession, call: ToolCall, completion: Completion
) -> ToolOutcome | None:
    """The call's outcome, or None when it could not be read (the reason goes back instead)."""
    if call.id in completion.call_errors:
        return None
    try:
        arguments = call.function.parsed_arguments()
    except ValueError as exc:
        completion.call_errors[call.id] = str(exc)
        return None
    return await session.call_tool(call.function.name, arguments)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of the error, unwrapped from the task groups it crossed."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _trajectory(
    spec: AgentTask,
    episode: Episode | None,
    run: _Run,
    reward: RewardBreakdown | None,
    failure: str | None,
    notes: dict[str, Any],
    *,
    started_at: datetime,
    policy: PolicyClient,
    policy_version: int,
    group_id: str | None,
    trajectory_id: str | None,
) -> Trajectory:
    ledger = run.ledger
    tokens = ledger.usable and failure is None
    metadata: dict[str, Any] = {
        "tool_calls": run.tool_calls,
        "malformed_calls": run.malformed_calls,
        "calls_parsed_from_text": run.parsed_from_text,
        "policy_retries": run.policy_retries,
        "user_turn": run.user_turn,
        "policy_url": policy.base_url,
        **notes,
    }
    if not tokens:
        metadata["token_recording"] = ledger.failure or (
            "no policy turn completed" if failure is None else "episode failed"
        )
    return Trajectory(
        id=trajectory_id or f"traj_{uuid.uuid4().hex}",
        env_id=spec.id,
        episode_id=episode.id if episode else None,
        group_id=group_id,
        policy_version=policy_version,
        model=policy.model,
        messages=run.messages,
        tools=run.tools or (episode.tools if episode else []),
        distractor_tools=episode.distractor_tools if episode else [],
        token_ids=ledger.token_ids if tokens else None,
        logprobs=ledger.logprobs if tokens else None,
        loss_mask=ledger.loss_mask if tokens else None,
        text_only=not tokens,
        reward=reward if failure is None else None,
        finish_reason=FinishReason.ERROR if failure else run.finish or FinishReason.ERROR,
        failure_reason=failure or (None if run.finish else "the agent loop ended without a reason"),
        turns=run.turns,
        timings=Timings(
            started_at=started_at,
            finished_at=datetime.now(UTC),
            llm_seconds=run.llm_seconds,
            tool_seconds=run.tool_seconds,
        ),
        metadata=metadata,
    )


def failed_trajectory(
    spec: AgentTask,
    reason: str,
    *,
    policy_version: int = 0,
    group_id: str | None = None,
    model: str | None = None,
    trajectory_id: str | None = None,
    started_at: datetime | None = None,
) -> Trajectory:
    """A trajectory for an episode that failed outside the agent loop (it never ran, or its
    hard deadline passed): ``finish_reason=error`` with ``reason``."""
    now = datetime.now(UTC)
    return Trajectory(
        id=trajectory_id or f"traj_{uuid.uuid4().hex}",
        env_id=spec.id,
        group_id=group_id,
        policy_version=policy_version,
        model=model,
        messages=[Message(role="user", content=spec.task)],
        tools=spec.tool_specs(),
        finish_reason=FinishReason.ERROR,
        failure_reason=reason,
        turns=0,
        timings=Timings(started_at=started_at or now, finished_at=now),
        metadata={"token_recording": "episode failed"},
    )
