"""The whole loop against a running stack, stage by stage, over the services' typed clients.

procedural synthesis (train + held-out splits) → gold SFT dataset through envhost → SFT of the
policy → GRPO consumer started on the SFT model (it pushes those weights into the vLLM server
and publishes policy version 0) → held-out evaluation → rollouts with distractors onto the
stream until GRPO has made its steps (each step pushes new weights) → held-out evaluation →
report. ``astra demo`` runs it small; ``astra experiment`` adds the base model and BFCL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from astra.cli_eval import follow_evaluation
from astra.cli_synth import follow_job
from astra.loop_report import (
    batch_line,
    dataset_section,
    rollout_section,
    show_comparisons,
    show_evaluation,
    synthesis_section,
)
from astra.report import RunReport
from astra_common.clients import ServiceError
from astra_common.clients.rollout import RolloutClient
from astra_common.clients.synth import SynthClient
from astra_common.clients.trainer import TrainerClient
from astra_proto import PolicyPointer, SynthesisJob
from astra_proto.api.rollout import (
    BatchRequest,
    BatchStatus,
    DistractorOptions,
    EpisodeLimits,
    EvaluationRequest,
    RegistryQuery,
    SamplingParams,
)
from astra_proto.api.synth import DatasetJobRequest, EnvironmentJobRequest
from astra_proto.api.trainer import GRPORunRequest, RunStatus, SFTRunRequest

HELDOUT_SPLITS = {
    "heldout_entities": ["travel", "finance"],
    "heldout_compositions": ["ecommerce", "healthcare"],
}
"""Held-out splits and the domains each draws from: two domains times the four scenario
types, so a small held-out set still covers every scenario type."""


class LoopError(RuntimeError):
    """A stage of the loop failed; the message says which and why."""


@dataclass
class LoopConfig:
    """Sizes of one run of the loop (the defaults fit about 15 minutes on 2 CPU cores)."""

    seed: int = 0
    train_envs: int = 24
    """Procedural training environments (gold SFT data and RL tasks)."""
    heldout_envs: int = 8
    """Environments of each held-out split (unseen entities, unseen compositions)."""
    hops: list[int] = field(default_factory=lambda: [1, 2, 3])
    sft_steps: int = 12
    sft_batch_size: int = 2
    sft_learning_rate: float = 1e-4
    rollout_envs: int = 8
    """Training environments per rollout batch (each played ``group_size`` times)."""
    group_size: int = 4
    grpo_steps: int = 2
    grpo_batch_groups: int = 2
    grpo_learning_rate: float = 1e-6
    grpo_max_staleness: int = 1
    """Policy versions a rollout group may lag behind the trainer before it is dropped."""
    grpo_max_tokens: int = 2048
    """Longest sequence GRPO trains on; a longer trajectory is trained on its first tokens."""
    grpo_gradient_checkpointing: bool = True
    """Recompute activations in the backward pass (less memory, about a quarter more compute)."""
    rollout_temperature: float = 0.7
    """Sampling temperature of the RL rollouts (held-out evaluation is always greedy). At 1.0
    a small SFT policy mostly fails and few groups vary (docs/local-runtime.md)."""
    max_rollout_batches: int = 4
    """Rollout batches at most while GRPO waits for groups whose rewards vary."""
    distractors_per_band: int = 1
    max_turns: int = 6
    max_tokens: int = 256
    eval_limit: int = 8
    """Entries per evaluation category."""
    evaluate_base: bool = False
    """Also evaluate the model before SFT (``astra experiment``)."""
    bfcl_limit: int = 0
    """BFCL multi-turn base entries to evaluate on (0: none)."""
    stage_timeout_s: float = 1800.0


@dataclass
class Services:
    """Where the running stack's services are, and the token their writes need."""

    synth: str
    rollout: str
    trainer: str
    token: str | None = None
    timeout_s: float = 120.0
    """Longest wait for one answer."""


@dataclass
class _Clients:
    """The typed clients of the services, open for one run of the loop."""

    synth: SynthClient
    rollout: RolloutClient
    trainer: TrainerClient


@dataclass
class LoopResult:
    """Where the run's pieces are, for the closing message."""

    report: RunReport
    envs_job: str = ""
    dataset: str = ""
    sft_model: str = ""
    grpo_run: str = ""


def run_loop(
    services: Services,
    config: LoopConfig,
    *,
    run_id: str | None = None,
    console: Console | None = None,
) -> LoopResult:
    """Run every stage; raises ``LoopError`` naming the stage that failed."""
    return asyncio.run(_run_loop(services, config, run_id=run_id, console=console or Console()))


async def _run_loop(
    services: Services, config: LoopConfig, *, run_id: str | None, console: Console
) -> LoopResult:
    run_id = run_id or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    report = RunReport(title="ASTRA: synthesize, serve, train — one run", run_id=run_id)
    result = LoopResult(report=report)
    stage = _Stages(console, report)
    token, timeout_s = services.token, services.timeout_s
    async with (
        SynthClient(services.synth, token=token, timeout_s=timeout_s) as synth,
        RolloutClient(services.rollout, token=token, timeout_s=timeout_s) as rollout,
        TrainerClient(services.trainer, token=token, timeout_s=timeout_s) as trainer,
    ):
        clients = _Clients(synth=synth, rollout=rollout, trainer=trainer)
        await _stages(clients, config, run_id, result, stage, console)
    return result


async def _stages(
    clients: _Clients,
    config: LoopConfig,
    run_id: str,
    result: LoopResult,
    stage: _Stages,
    console: Console,
) -> None:
    report = result.report
    with stage("1. procedural environment synthesis"):
        train_job = await _synthesize(clients, config, "train", config.train_envs, None, console)
        result.envs_job = train_job.id
        heldout_jobs = [
            await _synthesize(clients, config, split, config.heldout_envs, domains, console)
            for split, domains in HELDOUT_SPLITS.items()
        ]
        stats = train_job.result
        report.fact("training environments", stats.get("registered", 0))
        report.fact(
            "held-out environments",
            sum(job.result.get("registered", 0) for job in heldout_jobs),
        )
        report.section("Environment synthesis", synthesis_section(train_job, heldout_jobs))

    with stage("2. gold SFT dataset, played through envhost"):
        name = f"{run_id}-gold"
        job = await clients.synth.start_dataset_job(
            DatasetJobRequest(name=name, job_id=train_job.id)
        )
        job = _finished_job(await follow_job(clients.synth, job.id), "dataset job")
        manifest = job.result["dataset"]
        result.dataset = manifest["path"]
        report.fact("SFT samples (gold trajectories)", manifest["stats"]["records"])
        report.section("SFT dataset", dataset_section(manifest))

    if config.evaluate_base:
        with stage("base model: held-out evaluation"):
            await _evaluate_all(clients, config, "base", report, console)

    with stage("3. SFT of the policy"):
        started = await clients.trainer.start_sft(
            SFTRunRequest(
                dataset=Path(manifest["path"]),
                max_steps=config.sft_steps,
                batch_size=config.sft_batch_size,
                learning_rate=config.sft_learning_rate,
                max_length=2048,
                save_steps=10_000,
                seed=config.seed,
            )
        )
        sft = await _train(clients, started, config.sft_steps, config, console)
        result.sft_model = str(sft.checkpoint)
        report.curves["sft"] = await _metrics(clients, sft.run_id)
        report.fact("SFT steps", sft.step)

    with stage("4. GRPO consumer on the SFT model; its weights pushed to vLLM"):
        grpo = await clients.trainer.start_grpo(grpo_request(config, result.sft_model, run_id))
        result.grpo_run = grpo.run_id
        pointer = await _wait_pointer(clients, result.sft_model, config.stage_timeout_s)
        report.fact("policy version before RL", pointer.version)

    with stage("5. held-out evaluation before RL"):
        await _evaluate_all(clients, config, "SFT", report, console)

    with stage("6. rollouts with distractors → stream → GRPO steps"):
        batches = await _rollouts_until_trained(clients, config, train_job.id, grpo.run_id, console)
        report.section("Rollouts", rollout_section(batches))
        final = await clients.trainer.run_status(grpo.run_id)
        report.curves["grpo"] = await _metrics(clients, grpo.run_id)
        report.fact("GRPO steps", f"{final.step} of {config.grpo_steps}")
        report.fact("policy version after RL", final.policy_version)

    with stage("7. held-out evaluation after RL"):
        await _evaluate_all(clients, config, "SFT+RL", report, console)


def grpo_request(config: LoopConfig, base_model: str, run_id: str) -> GRPORunRequest:
    """The loop's GRPO run: a consumer of the trajectories written after it starts, trained
    from ``base_model`` with the loop's settings, its weights pushed to the served policy."""
    return GRPORunRequest(
        base_model=base_model,
        group_size=config.group_size,
        batch_groups=config.grpo_batch_groups,
        buffer_groups=config.grpo_batch_groups - 1,
        max_steps=config.grpo_steps,
        learning_rate=config.grpo_learning_rate,
        max_tokens=config.grpo_max_tokens,
        max_staleness=config.grpo_max_staleness,
        gradient_checkpointing=config.grpo_gradient_checkpointing,
        micro_batch_size=2,
        block_ms=500,
        served_model="SmolLM2-135M-Instruct",
        consumer_name=f"{run_id}-trainer",
        group=f"trainer-{run_id}",
        group_start="new",
        seed=config.seed,
    )


class _Stages:
    """Prints each stage and its duration; turns API errors (and a request the loop's
    configuration makes invalid) into ``LoopError``."""

    def __init__(self, console: Console, report: RunReport) -> None:
        self.console = console
        self.report = report
        self.name = ""
        self.started = 0.0

    def __call__(self, name: str) -> _Stages:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.started = time.monotonic()
        self.console.rule(f"[bold]{self.name}")

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        seconds = time.monotonic() - self.started
        if exc is None:
            self.console.print(f"[green]done[/] in {seconds:.0f} s")
            self.report.fact(f"time: {self.name}", f"{seconds:.0f} s")
            return
        if isinstance(exc, ServiceError | LoopError | ValidationError):
            raise LoopError(f"{self.name}: {exc}") from exc


async def _synthesize(
    clients: _Clients,
    config: LoopConfig,
    split: str,
    count: int,
    domains: list[str] | None,
    console: Console,
) -> SynthesisJob:
    request = EnvironmentJobRequest(
        count=count, seed=config.seed, split=split, hops=config.hops, domains=domains or None
    )
    job = await clients.synth.start_environment_job(request)
    console.print(f"{split}: job {job.id}")
    return _finished_job(await follow_job(clients.synth, job.id), f"{split} synthesis job")


def _finished_job(job: SynthesisJob, what: str) -> SynthesisJob:
    if job.state != "succeeded":
        raise LoopError(f"{what} {job.id} {job.state}: {job.error}")
    return job


async def _train(
    clients: _Clients, run: RunStatus, steps: int, config: LoopConfig, console: Console
) -> RunStatus:
    """Follow a started run to its end, with a progress bar of its steps."""
    deadline = time.monotonic() + config.stage_timeout_s
    with _bar(console) as progress:
        bar = progress.add_task(f"{run.kind} {run.run_id}", total=steps)
        while True:
            run = await clients.trainer.run_status(run.run_id)
            progress.update(bar, completed=run.step)
            if run.state == "finished":
                return run
            if run.state in ("failed", "stopped"):
                raise LoopError(f"{run.kind} run {run.run_id} {run.state}: {run.error}")
            if time.monotonic() > deadline:
                raise LoopError(f"{run.kind} run {run.run_id} did not finish in time")
            await asyncio.sleep(1.0)


async def _wait_pointer(clients: _Clients, checkpoint: str, timeout_s: float) -> PolicyPointer:
    """The policy pointer once the GRPO run has published its starting weights."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pointer = await clients.trainer.current_policy()
        except ServiceError:
            pointer = None
        if pointer is not None and pointer.checkpoint_uri.rstrip("/").endswith(
            checkpoint.rstrip("/")
        ):
            return pointer
        await asyncio.sleep(1.0)
    raise LoopError("the GRPO run did not publish its starting policy in time")


async def _evaluate_all(
    clients: _Clients, config: LoopConfig, label: str, report: RunReport, console: Console
) -> None:
    limits = EpisodeLimits(max_turns=config.max_turns)
    sampling = SamplingParams(temperature=0.0, max_tokens=config.max_tokens)
    heldout = EvaluationRequest(
        suite="heldout-procedural",
        label=label,
        limit=config.eval_limit,
        limits=limits,
        sampling=sampling,
    )
    status = (await follow_evaluation(clients.rollout, heldout)).model_dump(mode="json")
    report.evaluations[f"{label} · held-out"] = status
    show_evaluation(console, status)
    if config.bfcl_limit:
        request = EvaluationRequest(
            suite="bfcl-multi-turn",
            categories=["base"],
            label=label,
            limit=config.bfcl_limit,
            limits=limits,
            sampling=sampling,
        )
        bfcl = (await follow_evaluation(clients.rollout, request)).model_dump(mode="json")
        report.evaluations[f"{label} · BFCL base"] = bfcl
        show_evaluation(console, bfcl)
    show_comparisons(console, report, label)


async def _rollouts_until_trained(
    clients: _Clients, config: LoopConfig, train_job: str, grpo_run: str, console: Console
) -> list[BatchStatus]:
    """Rollout batches until the GRPO run has made its steps (or the batch budget is spent)."""
    batches: list[BatchStatus] = []
    for index in range(config.max_rollout_batches):
        request = BatchRequest(
            query=RegistryQuery(
                job_id=train_job,
                limit=config.rollout_envs,
                offset=rollout_offset(index, config.rollout_envs, config.train_envs),
            ),
            group_size=config.group_size,
            sampling=SamplingParams(
                temperature=config.rollout_temperature, max_tokens=config.max_tokens
            ),
            limits=EpisodeLimits(max_turns=config.max_turns),
            distractors=DistractorOptions(
                enabled=config.distractors_per_band > 0,
                per_band=config.distractors_per_band,
                seed=config.seed + index,
            ),
            seed=config.seed + 1000 * index,
        )
        batch = await clients.rollout.start_batch(request)
        batch = await _follow_batch(clients, batch, console, f"rollouts, batch {index + 1}")
        batches.append(batch)
        run = await _wait_steps(clients, grpo_run, config, idle_s=20.0)
        if run.state == "finished" or run.step >= config.grpo_steps:
            return batches
        console.print(
            f"GRPO at step {run.step} of {config.grpo_steps}: groups without reward "
            "variance are skipped; playing another batch"
        )
    run = await _wait_steps(clients, grpo_run, config, idle_s=60.0)
    if run.step < config.grpo_steps:
        # Said in the report, not fatal: the evaluation after RL then measures these steps.
        await clients.trainer.stop_run(grpo_run)
        console.print(
            f"[yellow]GRPO made {run.step} of {config.grpo_steps} steps after "
            f"{config.max_rollout_batches} rollout batches: too few groups whose rewards vary "
            "(a policy that always fails or always succeeds gives GRPO nothing to learn from)"
        )
    return batches


def rollout_offset(index: int, per_batch: int, train_envs: int) -> int:
    """Where rollout batch ``index`` starts in the training split: consecutive batches take
    consecutive slices, the last one aligned to the split's end, then start over, so RL sees
    every training task, not the first few."""
    if per_batch >= train_envs:
        return 0
    slices = -(-train_envs // per_batch)
    return min((index % slices) * per_batch, train_envs - per_batch)


async def _follow_batch(
    clients: _Clients, batch: BatchStatus, console: Console, title: str
) -> BatchStatus:
    with _bar(console) as progress:
        bar = progress.add_task(title, total=batch.total)
        while not batch.state.terminal:
            await asyncio.sleep(1.0)
            batch = await clients.rollout.batch_status(batch.id)
            progress.update(bar, completed=batch.done)
    if batch.state != "succeeded":
        raise LoopError(f"rollout batch {batch.id} {batch.state}: {batch.error}")
    console.print(batch_line(batch))
    return batch


async def _wait_steps(
    clients: _Clients, grpo_run: str, config: LoopConfig, idle_s: float
) -> RunStatus:
    """The GRPO run once it reached its steps, ended, or made no progress for ``idle_s``."""
    run = await clients.trainer.run_status(grpo_run)
    last_step, last_change = run.step, time.monotonic()
    while run.state in ("pending", "running") and run.step < config.grpo_steps:
        if time.monotonic() - last_change > idle_s and not await _step_in_progress(
            clients, grpo_run
        ):
            break
        if time.monotonic() - last_change > config.stage_timeout_s:
            raise LoopError(f"GRPO run {grpo_run} made no progress in {config.stage_timeout_s} s")
        await asyncio.sleep(1.0)
        run = await clients.trainer.run_status(grpo_run)
        if run.step != last_step:
            last_step, last_change = run.step, time.monotonic()
    if run.state == "failed":
        raise LoopError(f"GRPO run {grpo_run} failed: {run.error}")
    return run


async def _step_in_progress(clients: _Clients, run_id: str) -> bool:
    """Whether the run has started an optimizer step it has not finished (the newest of its
    step events is a start)."""
    for tail in (16, None):  # the recent records nearly always hold one; else all of them
        rows = await clients.trainer.run_metrics(run_id, tail=tail)
        events = [row.get("event") for row in rows if row.get("event") in ("step_started", "step")]
        if events or tail is None:
            return bool(events) and events[-1] == "step_started"
    return False


async def _metrics(clients: _Clients, run_id: str) -> list[dict[str, Any]]:
    rows = await clients.trainer.run_metrics(run_id)
    return [row for row in rows if row.get("event", "step") == "step"]


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
