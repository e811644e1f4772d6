"""The offline path: gold trajectories from procedural environments' reference solutions.

No LLM is involved. For each environment the sub-question DAG is laid out in rounds (a
sub-question's round is one more than its deepest tool-needing dependency); each round is one
assistant message whose tool calls (the reference calls) are independent of one another and
are issued in parallel. Every call runs for real on envhost over MCP, and the tool messages
hold the outputs envhost returned. A trajectory is kept only when every output holds its
sub-answer and, in ``episode`` mode, envhost's own scoring gives F1 = 1 with a correct final
answer; otherwise it is dropped with a reason.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx2
from mcp.types import CallToolResult

from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.envhost import EnvhostClient
from astra_common.mcp_text import tool_result_text
from astra_proto import (
    EnvironmentSpec,
    Episode,
    EpisodeRequest,
    FinishReason,
    FunctionCall,
    Message,
    RewardBreakdown,
    ScoreRequest,
    StageProgress,
    Timings,
    ToolCall,
    Trajectory,
    sha256_hex,
)
from astra_proto.answers import output_holds_answer
from astra_proto.api.synth import DatasetManifest
from astra_synth.trajectories.export import export_dataset
from astra_synth.trajectories.mcp_client import (
    MCP_TIMEOUT,
    auth_headers,
    list_all_tools,
    mcp_client,
    mcp_tool_to_raw,
    to_tool_spec,
)
from astra_synth.trajectories.models import (
    ProgressFn,
    RejectionSink,
    ignore_rejection,
    report,
)

SYSTEM_PROMPT = (
    "You are a helpful assistant that answers questions by calling the tools provided. "
    "Call independent tools in parallel, use earlier results as arguments, and give a short "
    "final answer once you have it."
)
GOLD_MODEL = "reference-solution"
Mode = Literal["episode", "env"]


class GoldError(Exception):
    """A gold trajectory could not be built; ``reason`` is counted in the manifest."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PlannedCall:
    """One tool call of a gold trajectory and the sub-answers its output must hold."""

    tool_name: str
    arguments: dict[str, Any]
    sub_question_ids: tuple[str, ...]
    expected_answers: tuple[str, ...]
    questions: tuple[str, ...]


def gold_plan(spec: EnvironmentSpec) -> list[list[PlannedCall]]:
    """The reference solution as rounds of independent calls, in dependency order.

    Identical calls (same tool and arguments) within a round are made once. Raises
    ``GoldError`` when the spec has no reference solution (a builtin environment, or a
    tool-needing sub-question without a reference call).
    """
    if spec.kind != "synthetic" or not spec.sub_questions:
        raise GoldError("no_reference_solution", f"{spec.id} has no sub-question DAG")
    calls = {
        call.sub_question_id: call
        for tool in spec.tools
        for call in tool.reference_calls
        if call.sub_question_id is not None
    }
    tool_needing = {q.id for q in spec.sub_questions if q.tool_name is not None}
    level: dict[str, int] = {}
    rounds: list[dict[str, PlannedCall]] = []
    for question in spec.topological_order():
        if question.tool_name is None:
            continue
        call = calls.get(question.id)
        if call is None:
            raise GoldError("no_reference_solution", f"sub-question {question.id} has no call")
        deps = [level[d] for d in question.depends_on if d in tool_needing]
        level[question.id] = 1 + max(deps, default=-1)
        while len(rounds) <= level[question.id]:
            rounds.append({})
        key = call.tool_name + json.dumps(call.arguments, sort_keys=True)
        planned = rounds[level[question.id]].get(key)
        answers = (call.expected_answer,) if call.expected_answer else ()
        if planned is None:
            planned = PlannedCall(call.tool_name, dict(call.arguments), (), (), ())
        rounds[level[question.id]][key] = PlannedCall(
            planned.tool_name,
            planned.arguments,
            (*planned.sub_question_ids, question.id),
            (*planned.expected_answers, *answers),
            (*planned.questions, question.question),
        )
    if not rounds:
        raise GoldError("no_reference_solution", f"{spec.id} needs no tool")
    return [list(r.values()) for r in rounds]


def final_answer_text(spec: EnvironmentSpec) -> str:
    """The assistant's closing message: the reference answer a0."""
    return f"The answer is {spec.answer}."


async def gold_trajectory(
    spec: EnvironmentSpec,
    *,
    envhost_url: str,
    token: str | None = None,
    mode: Mode = "episode",
    rest: EnvhostClient | None = None,
) -> Trajectory:
    """Play ``spec``'s reference solution on envhost and return the verified trajectory.

    ``mode="episode"`` opens an episode over REST, plays it over its MCP URL, and has envhost
    score it (the trajectory carries that ``RewardBreakdown``); ``mode="env"`` connects to the
    environment's own MCP URL (a fresh episode per client) and checks outputs locally.
    ``rest``: an envhost client of ``envhost_url`` to share (else one of its own).
    Raises ``GoldError`` with a reason when any step fails.
    """
    plan = gold_plan(spec)
    started = datetime.now(UTC)
    base = envhost_url.rstrip("/")
    own_rest = rest is None
    envhost = rest or EnvhostClient(base, token=token, timeout_s=60.0)
    try:
        if mode == "episode":
            episode = await _open_episode(envhost, spec.id)
            try:
                async with httpx2.AsyncClient(
                    headers=auth_headers(token), timeout=MCP_TIMEOUT
                ) as mcp_http:
                    messages, tool_seconds = await _play(spec, plan, episode.mcp_url, mcp_http)
                reward = await _score(envhost, episode.id, final_answer_text(spec))
            finally:
                await _close_episode(envhost, episode.id)
            tools, episode_id = episode.tools, episode.id
        else:
            url = f"{base}/envs/{spec.id}/mcp"
            async with mcp_client(url, token=token) as client:
                tools = [to_tool_spec(mcp_tool_to_raw(t)) for t in await list_all_tools(client)]
            messages, tool_seconds = await _play(spec, plan, url, None, token=token)
            reward, episode_id = None, None
    except ServiceError as exc:
        raise GoldError("envhost_error", str(exc)) from exc
    finally:
        if own_rest:
            await envhost.aclose()
    return Trajectory(
        id="gold_" + sha256_hex({"env": spec.id, "mode": mode})[:24],
        env_id=spec.id,
        episode_id=episode_id,
        policy_version=0,
        model=GOLD_MODEL,
        messages=messages,
        tools=tools,
        reward=reward,
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=sum(1 for m in messages if m.role == "assistant"),
        timings=Timings(
            started_at=started, finished_at=datetime.now(UTC), tool_seconds=tool_seconds
        ),
        metadata={
            "source": "gold",
            "domain": spec.domain,
            "scenario_type": str(spec.scenario_type or ""),
            "hops": spec.hops,
            "split": spec.split,
        },
    )


async def _open_episode(envhost: EnvhostClient, env_id: str) -> Episode:
    try:
        return await envhost.create_episode(EpisodeRequest(env_id=env_id))
    except ServiceError as exc:
        raise GoldError("envhost_error", f"opening an episode: {exc}") from exc


async def _close_episode(envhost: EnvhostClient, episode_id: str) -> None:
    """Close the episode; a refusal is left to envhost's idle timeout, an envhost that cannot
    be reached fails the trajectory."""
    try:
        await envhost.close_episode(episode_id)
    except ServiceUnreachable:
        raise
    except ServiceError:
        pass


async def _score(envhost: EnvhostClient, episode_id: str, answer: str) -> RewardBreakdown:
    try:
        reward = await envhost.score_episode(episode_id, ScoreRequest(final_answer=answer))
    except ServiceError as exc:
        raise GoldError("envhost_error", f"scoring: {exc}") from exc
    if reward.f1 < 1.0 - 1e-6 or reward.final_answer_correct is False:
        raise GoldError(
            "not_verified",
            f"envhost scored f1={reward.f1:.3f}, "
            f"final answer correct={reward.final_answer_correct}",
        )
    return reward


async def _play(
    spec: EnvironmentSpec,
    plan: list[list[PlannedCall]],
    url: str,
    http: httpx2.AsyncClient | None,
    *,
    token: str | None = None,
) -> tuple[list[Message], float]:
    """Run the plan's rounds over MCP; returns the messages and the seconds spent in tools."""
    messages = [
        Message(role="system", content=SYSTEM_PROMPT),
        Message(role="user", content=spec.task),
    ]
    tool_seconds = 0.0
    counter = 0
    failure: GoldError | None = None
    # The SDK's client wraps exceptions raised inside it in exception groups: remember the
    # failure, leave the client, then raise it.
    async with mcp_client(url, token=token, http=http) as client:
        for round_calls in plan:
            ids = [f"call_{counter + i}" for i in range(len(round_calls))]
            counter += len(round_calls)
            messages.append(_call_message(ids, round_calls))
            begun = asyncio.get_running_loop().time()
            results = await asyncio.gather(
                *(client.call_tool(c.tool_name, dict(c.arguments)) for c in round_calls)
            )
            tool_seconds += asyncio.get_running_loop().time() - begun
            for call_id, planned, result in zip(ids, round_calls, results, strict=True):
                text = tool_result_text(result)
                failure = failure or _check_result(planned, result, text)
                messages.append(
                    Message(role="tool", tool_call_id=call_id, name=planned.tool_name, content=text)
                )
            if failure is not None:
                break
    if failure is not None:
        raise failure
    messages.append(Message(role="assistant", content=final_answer_text(spec)))
    return messages, tool_seconds


def _call_message(ids: list[str], calls: list[PlannedCall]) -> Message:
    """One assistant message issuing a round's calls together."""
    return Message(
        role="assistant",
        content=_round_note(calls),
        tool_calls=[
            ToolCall(
                id=call_id,
                function=FunctionCall(
                    name=c.tool_name, arguments=json.dumps(c.arguments, ensure_ascii=False)
                ),
            )
            for call_id, c in zip(ids, calls, strict=True)
        ],
    )


def _check_result(planned: PlannedCall, result: CallToolResult, text: str) -> GoldError | None:
    """Why a reference call's result is not good enough for a gold trajectory, if it is not."""
    if result.is_error:
        return GoldError("tool_error", f"{planned.tool_name}: {text}")
    for answer in planned.expected_answers:
        if not output_holds_answer(result.structured_content, answer):
            return GoldError(
                "answer_missing", f"{planned.tool_name} returned {text[:200]!r} without {answer!r}"
            )
    return None


def _round_note(calls: list[PlannedCall]) -> str:
    """The assistant's plan for a round: the sub-questions its calls answer."""
    questions = [q for call in calls for q in call.questions]
    return "I need to find out: " + " ".join(questions)


async def gold_dataset(
    envs: list[EnvironmentSpec],
    *,
    envhost_url: str,
    out_dir: Path | str,
    token: str | None = None,
    progress: ProgressFn | None = None,
    mode: Mode = "episode",
    concurrency: int = 4,
    name: str | None = None,
    on_reject: RejectionSink = ignore_rejection,
) -> DatasetManifest:
    """Gold trajectories for ``envs`` (registered with the envhost at ``envhost_url``),
    exported as an SFT dataset into ``out_dir``.

    Environments whose trajectory fails are dropped and counted by reason in the manifest
    (``rejected``) and in the ``gold_trajectories`` progress stage (whose ``done`` counts the
    kept ones), and told to ``on_reject``. Raises ``ValueError`` when ``envs`` is empty or
    ``concurrency`` < 1.
    """
    if not envs:
        raise ValueError("no environments given")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    stage = StageProgress(stage="gold_trajectories", total=len(envs))
    report(progress, stage)
    slots = asyncio.Semaphore(concurrency)
    kept: dict[int, Trajectory] = {}
    async with EnvhostClient(envhost_url, token=token, timeout_s=60.0) as rest:

        async def one(index: int, spec: EnvironmentSpec) -> None:
            async with slots:
                try:
                    kept[index] = await gold_trajectory(
                        spec, envhost_url=envhost_url, token=token, mode=mode, rest=rest
                    )
                except GoldError as exc:
                    stage.rejected[exc.reason] = stage.rejected.get(exc.reason, 0) + 1
                    on_reject(
                        stage.stage, exc.reason, item=f"{spec.id}: {spec.task}", message=exc.detail
                    )
                else:
                    stage.done += 1
                report(progress, stage)

        await asyncio.gather(*(one(i, spec) for i, spec in enumerate(envs)))
    return await asyncio.to_thread(  # off the event loop (a job renews its lease there)
        export_dataset,
        [kept[i] for i in sorted(kept)],
        out_dir,
        name=name,
        rejected=dict(stage.rejected),
        metadata={"source": "gold", "mode": mode, "environments": len(envs)},
    )
