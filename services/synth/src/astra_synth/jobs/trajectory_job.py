"""Tasks jobs and teacher-trajectory jobs (docs/method.md part A, with an LLM).

A tasks job runs the chain/task pipeline over a registered toolset and stores the tasks with
it. A trajectory job chains tasks -> teacher -> judge -> export: it synthesizes tasks (or takes
the stored ones), has the rollout service play them with the teacher model (real tools over
MCP, the synth emulator for document-only servers), grades the trajectories that ended with a
final answer with the seven-part judge, and exports those at or above the cutoff as an SFT
dataset under the data directory.

A re-delivered job (worker lost) starts again: tasks and judge requests hit the LLM response
cache, the teacher plays again, and the dataset is rewritten whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from typing import Any

from pydantic import ValidationError

from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.rollout import RolloutClient
from astra_proto import FinishReason, JobState, StageProgress, Trajectory
from astra_proto.api.rollout import (
    EmulatorOptions,
    EpisodeLimits,
    PolicyEndpoint,
    SamplingParams,
    TeacherRunRequest,
    TeacherRunStatus,
    TeacherServer,
    TeacherTask,
)
from astra_proto.api.synth import TaskJobRequest, Toolset, TrajectoryJobRequest
from astra_synth.jobs.lifecycle import RunningJob, run_job
from astra_synth.jobs.progress import JobCancelled
from astra_synth.llm import LLMUsage
from astra_synth.llm_endpoint import chat_model
from astra_synth.settings import SynthSettings
from astra_synth.trajectories.export import export_dataset
from astra_synth.trajectories.judge import Judge, JudgeReport
from astra_synth.trajectories.models import SynthTask, TaskSynthesis
from astra_synth.trajectories.store import TrajectoryStore
from astra_synth.trajectories.user_tasks import synthesize_tasks

TASK_STAGES = ["proposals", "graph", "chains", "tasks"]
TRAJECTORY_STAGES = [*TASK_STAGES, "trajectories", "judged", "exported"]
PAGE = 200
ROLLOUT_TIMEOUT_S = 60.0
"""How long one request to the rollout service may take."""
ROLLOUT_OUTAGE_S = 60.0
"""How long a job keeps polling a rollout service that does not answer before it fails."""
TEACHER_NOTES = {
    "done",
    "failed",
    "finish_reasons",
    "tool_calls",
    "emulated_calls",
    "injected_failures",
    "recent_failures",
}
"""The fields of the teacher run's status that the job's notes show."""

log = logging.getLogger(__name__)


class RolloutError(Exception):
    """The rollout service refused or lost the teacher run."""


async def run_task_job(job_id: str, settings: SynthSettings) -> JobState:
    """Run tasks job ``job_id`` to a terminal state and return it."""
    return await run_job(job_id, settings, TASK_STAGES, _tasks_job)


async def run_trajectory_job(job_id: str, settings: SynthSettings) -> JobState:
    """Run trajectory job ``job_id`` to a terminal state and return it."""
    return await run_job(job_id, settings, TRAJECTORY_STAGES, _trajectory_job)


def _load_toolset(store: TrajectoryStore, toolset_id: str) -> Toolset:
    try:
        return store.load_toolset(toolset_id)
    except KeyError:
        hint = "register it with POST /v1/toolsets"
        raise ValueError(f"no toolset {toolset_id!r} ({hint})") from None


async def _synthesize(
    job: RunningJob, toolset: Toolset, request: TaskJobRequest | TrajectoryJobRequest
) -> TaskSynthesis:
    """The chain/task pipeline over ``toolset``, stored with it; LLM usage in the result."""
    settings = request.settings if isinstance(request, TaskJobRequest) else request.task_settings
    by_stage = LLMUsage()
    async with chat_model(job.settings, request.llm_base_url, request.llm_model) as llm:
        result = await job.watch(
            synthesize_tasks(
                toolset,
                llm=llm,
                settings=settings,
                progress=job.report,
                on_reject=job.progress.record,
                usage=by_stage,
            )
        )
        job.progress.notes["task_llm_usage"] = _usage(llm.usage, by_stage)
    TrajectoryStore(job.settings.data_dir).save_tasks(result)
    job.progress.notes["tasks"] = {
        "tasks": len(result.tasks),
        "chains_sampled": result.chains_sampled,
        "chains_kept": len(result.chains_kept),
        "rejected": result.rejected,
        "by_origin": dict(Counter(t.origin.split(":")[0] for t in result.tasks)),
    }
    return result


async def _tasks_job(job: RunningJob) -> None:
    request = TaskJobRequest.model_validate(job.job.params)
    toolset = _load_toolset(TrajectoryStore(job.settings.data_dir), request.toolset_id)
    await _synthesize(job, toolset, request)


async def _trajectory_job(job: RunningJob) -> None:
    request = TrajectoryJobRequest.model_validate(job.job.params)
    store = TrajectoryStore(job.settings.data_dir)
    toolset = _load_toolset(store, request.toolset_id)
    if request.tasks == "stored":
        try:
            tasks = store.load_tasks(request.toolset_id).tasks
        except KeyError:
            raise ValueError(
                f"toolset {request.toolset_id!r} has no stored tasks (run a tasks job first, "
                "or ask for tasks: synthesize)"
            ) from None
        job.progress.stages["tasks"] = StageProgress(
            stage="tasks", done=len(tasks), total=len(tasks)
        )
    else:
        tasks = (await _synthesize(job, toolset, request)).tasks
    tasks = tasks[: request.max_tasks]
    if not tasks:
        raise ValueError("no task to play: the task pipeline kept none")

    trajectories = await _play(job, request, toolset, tasks)

    finished: list[Trajectory] = []
    # The teacher's live "failed" count is replaced by each trajectory's own finish reason.
    job.progress.stages["trajectories"].rejected = {}
    for trajectory in trajectories:
        if trajectory.finish_reason == FinishReason.FINAL_ANSWER:
            finished.append(trajectory)
        else:
            job.progress.reject(
                "trajectories",
                f"finish:{trajectory.finish_reason.value}",
                item=_task_of(trajectory),
                message=trajectory.failure_reason
                or f"the teacher's episode ended {trajectory.finish_reason.value}, "
                "not with a final answer",
                excerpt=_last_reply(trajectory),
            )
    job.progress.stages["trajectories"].done = len(finished)
    job.progress.set_total("judged", len(finished))
    judge_usage = LLMUsage()
    async with chat_model(job.settings, request.llm_base_url, request.llm_model) as llm:
        judge = Judge(
            llm,
            cutoff=request.judge_cutoff,
            temperature=request.task_settings.judge_temperature,
            on_reject=job.progress.record,
            usage=judge_usage,
        )

        def judged(report: JudgeReport) -> None:
            stage = job.progress.stages["judged"]
            stage.done = len(report.kept)
            stage.rejected = dict(report.rejected)

        report = await job.watch(judge.judge_batch(finished, progress=judged))
        job.progress.notes["judge_llm_usage"] = _usage(llm.usage, judge_usage)
    judged(report)
    job.progress.notes["judge"] = {
        "cutoff": report.cutoff,
        "graded": len(report.samples),
        "kept": len(report.kept),
        "rejected": report.rejected,
        "dimensions": {k: v.model_dump() for k, v in report.dimensions.items()},
    }
    await job.progress.flush(force=True)

    scores = {s.trajectory_id: s for s in report.samples}
    by_id = {t.id: t for t in finished}
    kept = [
        by_id[i].model_copy(
            update={
                "metadata": by_id[i].metadata
                | {
                    "quality_score": scores[i].score,
                    "grades": scores[i].grades,
                    "domain": by_id[i].metadata.get("server", ""),
                }
            }
        )
        for i in report.kept
    ]
    if not kept:
        raise ValueError(
            f"no trajectory passed: {len(trajectories)} played, {len(finished)} finished, "
            f"judge rejections {report.rejected}"
        )
    name = request.name or job.job.id
    # Off the event loop: a large export must not hold up the job's lease renewals.
    manifest = await asyncio.to_thread(
        export_dataset,
        kept,
        store.dataset_dir(name),
        name=name,
        rejected=job.progress.rejected(),
        metadata={
            "job_id": job.job.id,
            "toolset_id": request.toolset_id,
            "teacher": request.teacher.model,
            "judge_cutoff": request.judge_cutoff,
            "judge_dimensions": job.progress.notes["judge"]["dimensions"],
        },
    )
    job.progress.advance("exported", len(kept))
    job.progress.notes["dataset"] = manifest.model_dump(mode="json")


def _usage(total: LLMUsage, by_stage: LLMUsage) -> dict[str, Any]:
    """The chat model's counts of calls and tokens, with the calls per stage."""
    return dataclasses.asdict(total) | {"by_stage": dict(by_stage.by_stage)}


def _task_of(trajectory: Trajectory) -> str:
    """Which task a trajectory played: its id and the user's question."""
    question = next((m.content for m in trajectory.messages if m.role == "user"), None)
    return f"{trajectory.id}: {question}" if isinstance(question, str) else trajectory.id


def _last_reply(trajectory: Trajectory) -> str | None:
    """What the model said last (its text, or the tool calls it made)."""
    for message in reversed(trajectory.messages):
        if message.role != "assistant":
            continue
        if isinstance(message.content, str) and message.content.strip():
            return message.content
        if message.tool_calls:
            return "; ".join(
                f"{call.function.name}({call.function.arguments})" for call in message.tool_calls
            )
    return None


def teacher_run_request(
    request: TrajectoryJobRequest, toolset: Toolset, tasks: list[SynthTask], label: str
) -> TeacherRunRequest:
    """The rollout service's teacher-run request for ``tasks`` on ``toolset``'s servers;
    ``RolloutError`` when they do not fit one (a name or text over its limit)."""
    used = {task.server for task in tasks}
    try:
        return TeacherRunRequest(
            tasks=[TeacherTask(id=t.id, question=t.question, server=t.server) for t in tasks],
            servers=[
                TeacherServer(
                    name=server.name,
                    description=server.description,
                    url=server.url,
                    tools=list(server.tools),
                )
                for server in toolset.servers
                if server.name in used
            ],
            policy=PolicyEndpoint(base_url=request.teacher.base_url, model=request.teacher.model),
            sampling=SamplingParams(
                temperature=request.teacher.temperature, max_tokens=request.teacher.max_tokens
            ),
            limits=EpisodeLimits(
                max_turns=request.max_llm_calls,
                timeout_s=request.time_limit_s,
                token_budget=request.token_budget,
            ),
            emulator=EmulatorOptions(
                failure_rate=request.emulator_failure_rate,
                seed=request.seed,
                llm_base_url=request.llm_base_url,
                llm_model=request.llm_model,
            ),
            system_prompt=request.system_prompt,
            token_ids=request.teacher.token_ids,
            concurrency=request.concurrency,
            label=label,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RolloutError(
            f"the tasks do not make a valid teacher run: {where}: {first['msg']}"
            if where
            else f"the tasks do not make a valid teacher run: {first['msg']}"
        ) from None


async def _play(
    job: RunningJob, request: TrajectoryJobRequest, toolset: Toolset, tasks: list[SynthTask]
) -> list[Trajectory]:
    """Have the rollout service play ``tasks`` with the teacher; the finished trajectories."""
    settings = job.settings
    token = settings.rollout_token.get_secret_value() if settings.rollout_token else None
    job.progress.stages["trajectories"].total = len(tasks)
    run_request = teacher_run_request(request, toolset, tasks, label=job.job.id)
    async with RolloutClient(
        settings.rollout_url, token=token, timeout_s=ROLLOUT_TIMEOUT_S
    ) as rollout:
        try:
            run_id = (await rollout.start_teacher_run(run_request)).id
        except ServiceError as exc:
            raise RolloutError(_refusal("starting the teacher run", exc)) from None
        job.progress.notes["teacher_run"] = run_id
        try:
            status = await _follow(job, rollout, run_id)
        except (JobCancelled, asyncio.CancelledError):
            with contextlib.suppress(ServiceError):
                await rollout.cancel_teacher_run(run_id)
            raise
        if status.state != JobState.SUCCEEDED:
            raise RolloutError(f"teacher run {run_id} ended {status.state}: {status.error}")
        trajectories: list[Trajectory] = []
        offset: int | None = 0
        while offset is not None:
            try:
                page = await rollout.teacher_run_trajectories(run_id, offset=offset, limit=PAGE)
            except ServiceError as exc:
                raise RolloutError(_refusal(f"reading teacher run {run_id}", exc)) from None
            trajectories += page.items
            offset = page.next_offset
        return trajectories


async def _follow(job: RunningJob, rollout: RolloutClient, run_id: str) -> TeacherRunStatus:
    """Poll the teacher run into the job's progress until it ends; its last status."""
    stage = job.progress.stages["trajectories"]
    unreachable_since: float | None = None
    while True:
        try:
            status = await rollout.teacher_run_status(run_id)
        except ServiceUnreachable as exc:  # restarting, or a network fault: wait, bounded
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > ROLLOUT_OUTAGE_S:
                raise RolloutError(
                    f"{exc} (for over {ROLLOUT_OUTAGE_S:.0f} s, while waiting for "
                    f"teacher run {run_id})"
                ) from None
            log.warning("job %s: %s; polling again", job.job.id, exc)
            await job.progress.flush()
            await asyncio.sleep(job.progress.interval_s)
            continue
        except ServiceError as exc:
            if exc.status == 404:
                raise RolloutError(
                    f"the rollout service at {rollout.base_url} no longer knows teacher run "
                    f"{run_id}: it was restarted, and a restarted rollout service forgets its "
                    "runs (they live in its memory); start the job again"
                ) from None
            raise RolloutError(_refusal(f"reading teacher run {run_id}", exc)) from None
        unreachable_since = None
        stage.done = status.done - status.failed
        stage.rejected = {"failed": status.failed} if status.failed else {}
        job.progress.notes["teacher"] = status.model_dump(mode="json", include=TEACHER_NOTES)
        await job.progress.flush()
        if status.state.terminal:
            return status
        await asyncio.sleep(job.progress.interval_s)


def _refusal(action: str, error: ServiceError) -> str:
    """One line on a failed request: the service's answer, or why there was none."""
    if error.status == 0 or not error.detail:
        return str(error)
    return f"rollout refused {action} (HTTP {error.status}): {error.detail}"
