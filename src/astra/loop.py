"""The whole loop against a running stack, stage by stage, over the services' REST APIs.

procedural synthesis (train + held-out splits) → gold SFT dataset through envhost → SFT of the
policy → GRPO consumer started on the SFT model (it pushes those weights into the vLLM server
and publishes policy version 0) → held-out evaluation → rollouts with distractors onto the
stream until GRPO has made its steps (each step pushes new weights) → held-out evaluation →
report. ``astra demo`` runs it small; ``astra experiment`` adds the base model and BFCL.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from astra.api_client import ApiClient, ApiError
from astra.cli_eval import run_evaluation
from astra.cli_synth import follow
from astra.report import (
    RunReport,
    comparison_sentence,
    comparisons,
    format_score,
    score_rows,
)

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
    """Clients of the running stack's services."""

    synth: ApiClient
    rollout: ApiClient
    trainer: ApiClient


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
    console = console or Console()
    run_id = run_id or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    report = RunReport(title="ASTRA: synthesize, serve, train — one run", run_id=run_id)
    result = LoopResult(report=report)
    stage = _Stages(console, report)

    with stage("1. procedural environment synthesis"):
        train_job = _synthesize(services, config, "train", config.train_envs, None, console)
        result.envs_job = train_job["id"]
        heldout_jobs = [
            _synthesize(services, config, split, config.heldout_envs, domains, console)
            for split, domains in HELDOUT_SPLITS.items()
        ]
        stats = train_job["result"]
        report.fact("training environments", stats.get("registered", 0))
        report.fact(
            "held-out environments",
            sum(job["result"].get("registered", 0) for job in heldout_jobs),
        )
        report.section("Environment synthesis", _synthesis_section(train_job, heldout_jobs))

    with stage("2. gold SFT dataset, played through envhost"):
        name = f"{run_id}-gold"
        job = services.synth.post(
            "/v1/jobs/datasets", {"name": name, "job_id": train_job["id"]}
        ).json()
        job = _finished_job(follow(services.synth, job["id"]), "dataset job")
        manifest = job["result"]["dataset"]
        result.dataset = manifest["path"]
        report.fact("SFT samples (gold trajectories)", manifest["stats"]["records"])
        report.section(
            "SFT dataset",
            f"`{manifest['path']}`: {manifest['stats']['records']} trajectories, "
            f"{manifest['stats']['tool_calls_mean']:.2f} tool calls on average, "
            f"rejected: {manifest.get('rejected') or 'none'}.",
        )

    if config.evaluate_base:
        with stage("base model: held-out evaluation"):
            _evaluate_all(services, config, "base", report, console)

    with stage("3. SFT of the policy"):
        sft = _train(
            services,
            "sft",
            {
                "dataset": manifest["path"],
                "max_steps": config.sft_steps,
                "batch_size": config.sft_batch_size,
                "learning_rate": config.sft_learning_rate,
                "max_length": 2048,
                "save_steps": 10_000,
                "seed": config.seed,
            },
            config.sft_steps,
            config,
            console,
        )
        result.sft_model = str(sft["checkpoint"])
        report.curves["sft"] = _metrics(services, sft["run_id"])
        report.fact("SFT steps", sft["step"])

    with stage("4. GRPO consumer on the SFT model; its weights pushed to vLLM"):
        grpo = services.trainer.post(
            "/v1/runs/grpo",
            {
                "base_model": result.sft_model,
                "group_size": config.group_size,
                "batch_groups": config.grpo_batch_groups,
                "buffer_groups": config.grpo_batch_groups - 1,
                "max_steps": config.grpo_steps,
                "learning_rate": config.grpo_learning_rate,
                "max_tokens": 2048,
                "micro_batch_size": 2,
                "block_ms": 500,
                "served_model": "SmolLM2-135M-Instruct",
                "consumer_name": f"{run_id}-trainer",
                "group": f"trainer-{run_id}",
                "group_start": "new",
                "seed": config.seed,
            },
        ).json()
        result.grpo_run = grpo["run_id"]
        pointer = _wait_pointer(services, result.sft_model, config.stage_timeout_s)
        report.fact("policy version before RL", pointer["version"])

    with stage("5. held-out evaluation before RL"):
        _evaluate_all(services, config, "SFT", report, console)

    with stage("6. rollouts with distractors → stream → GRPO steps"):
        batches = _rollouts_until_trained(
            services, config, train_job["id"], grpo["run_id"], console
        )
        report.section("Rollouts", _rollout_section(batches))
        final = services.trainer.get(f"/v1/runs/{grpo['run_id']}")
        report.curves["grpo"] = _metrics(services, grpo["run_id"])
        report.fact("GRPO steps", f"{final['step']} of {config.grpo_steps}")
        report.fact("policy version after RL", final.get("policy_version"))

    with stage("7. held-out evaluation after RL"):
        _evaluate_all(services, config, "SFT+RL", report, console)
    return result


class _Stages:
    """Prints each stage and its duration; turns API errors into ``LoopError``."""

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
        if isinstance(exc, ApiError | LoopError):
            raise LoopError(f"{self.name}: {exc}") from exc


def _synthesize(
    services: Services,
    config: LoopConfig,
    split: str,
    count: int,
    domains: list[str] | None,
    console: Console,
) -> dict[str, Any]:
    body: dict[str, Any] = {"count": count, "seed": config.seed, "split": split}
    body |= {"hops": config.hops} | ({"domains": domains} if domains else {})
    job = services.synth.post("/v1/jobs/environments", body).json()
    console.print(f"{split}: job {job['id']}")
    return _finished_job(follow(services.synth, job["id"]), f"{split} synthesis job")


def _finished_job(job: dict[str, Any], what: str) -> dict[str, Any]:
    if job["state"] != "succeeded":
        raise LoopError(f"{what} {job['id']} {job['state']}: {job.get('error')}")
    return job


def _train(
    services: Services,
    kind: str,
    body: dict[str, Any],
    steps: int,
    config: LoopConfig,
    console: Console,
) -> dict[str, Any]:
    run: dict[str, Any] = services.trainer.post(f"/v1/runs/{kind}", body).json()
    deadline = time.monotonic() + config.stage_timeout_s
    with _bar(console) as progress:
        bar = progress.add_task(f"{kind} {run['run_id']}", total=steps)
        while True:
            run = dict(services.trainer.get(f"/v1/runs/{run['run_id']}"))
            progress.update(bar, completed=run["step"])
            if run["state"] == "finished":
                return run
            if run["state"] in ("failed", "stopped"):
                raise LoopError(f"{kind} run {run['run_id']} {run['state']}: {run.get('error')}")
            if time.monotonic() > deadline:
                raise LoopError(f"{kind} run {run['run_id']} did not finish in time")
            time.sleep(1.0)


def _wait_pointer(services: Services, checkpoint: str, timeout_s: float) -> dict[str, Any]:
    """The policy pointer once the GRPO run has published its starting weights."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pointer: dict[str, Any] = services.trainer.get("/v1/policy")
        except ApiError:
            pointer = {}
        if pointer.get("checkpoint_uri", "").rstrip("/").endswith(checkpoint.rstrip("/")):
            return pointer
        time.sleep(1.0)
    raise LoopError("the GRPO run did not publish its starting policy in time")


def _evaluate_all(
    services: Services, config: LoopConfig, label: str, report: RunReport, console: Console
) -> None:
    limits = {"max_turns": config.max_turns}
    sampling = {"temperature": 0.0, "max_tokens": config.max_tokens}
    common = {"limit": config.eval_limit, "limits": limits, "sampling": sampling}
    status = run_evaluation(
        services.rollout, {"suite": "heldout-procedural", "label": label, **common}
    )
    report.evaluations[f"{label} · held-out"] = status
    _show(console, status)
    if config.bfcl_limit:
        body = {"suite": "bfcl-multi-turn", "categories": ["base"], "label": label, **common}
        bfcl = run_evaluation(services.rollout, body | {"limit": config.bfcl_limit})
        report.evaluations[f"{label} · BFCL base"] = bfcl
        _show(console, bfcl)
    _show_comparisons(console, report, label)


def _show(console: Console, status: dict[str, Any]) -> None:
    overall = [row for row in score_rows(status) if row.category == "overall"]
    if not overall:
        console.print(f"{status['suite']} ({status.get('label')}): no entry scored", markup=False)
        return
    row = overall[0]
    console.print(
        f"{status['suite']} ({status.get('label')}): n = {row.n}, mean F1 "
        f"{format_score(row.mean_f1, row.f1_interval)}, success "
        f"{format_score(row.success_rate, row.success_interval)} (95% intervals), "
        f"{row.failed} failed episodes",
        markup=False,
    )


def _show_comparisons(console: Console, report: RunReport, label: str) -> None:
    """Each earlier evaluation of the same suite against ``label``'s, over all tasks."""
    for compared in comparisons(report.evaluations):
        if compared.category == "overall" and compared.after == label:
            console.print(comparison_sentence(compared).replace("**", ""), markup=False)


def _rollouts_until_trained(
    services: Services, config: LoopConfig, train_job: str, grpo_run: str, console: Console
) -> list[dict[str, Any]]:
    """Rollout batches until the GRPO run has made its steps (or the batch budget is spent)."""
    batches: list[dict[str, Any]] = []
    for index in range(config.max_rollout_batches):
        body = {
            "query": {"job_id": train_job, "limit": config.rollout_envs},
            "group_size": config.group_size,
            "sampling": {"temperature": 1.0, "max_tokens": config.max_tokens},
            "limits": {"max_turns": config.max_turns},
            "distractors": {
                "enabled": config.distractors_per_band > 0,
                "per_band": config.distractors_per_band,
                "seed": config.seed + index,
            },
            "seed": config.seed + 1000 * index,
        }
        batch = services.rollout.post("/v1/batches", body).json()
        batch = _follow_batch(services, batch, console, f"rollouts, batch {index + 1}")
        batches.append(batch)
        run = _wait_steps(services, grpo_run, config, idle_s=20.0)
        if run["state"] == "finished" or run["step"] >= config.grpo_steps:
            return batches
        console.print(
            f"GRPO at step {run['step']} of {config.grpo_steps}: groups without reward "
            "variance are skipped; playing another batch"
        )
    run = _wait_steps(services, grpo_run, config, idle_s=60.0)
    if run["step"] < config.grpo_steps:
        # Said in the report, not fatal: the evaluation after RL then measures these steps.
        services.trainer.post(f"/v1/runs/{grpo_run}/stop", {})
        console.print(
            f"[yellow]GRPO made {run['step']} of {config.grpo_steps} steps after "
            f"{config.max_rollout_batches} rollout batches: too few groups whose rewards vary "
            "(a policy that always fails or always succeeds gives GRPO nothing to learn from)"
        )
    return batches


def _follow_batch(
    services: Services, batch: dict[str, Any], console: Console, title: str
) -> dict[str, Any]:
    with _bar(console) as progress:
        bar = progress.add_task(title, total=batch["total"])
        while batch["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(1.0)
            batch = services.rollout.get(f"/v1/batches/{batch['id']}")
            progress.update(bar, completed=batch["done"])
    if batch["state"] != "succeeded":
        raise LoopError(f"rollout batch {batch['id']} {batch['state']}: {batch.get('error')}")
    summary = batch["summary"]
    console.print(
        f"{batch['published']} trajectories published; mean F1 {_num(summary['mean_reward'])}, "
        f"{summary['groups_with_variance']} of {summary['groups_done']} groups with varying rewards"
    )
    return batch


def _wait_steps(
    services: Services, grpo_run: str, config: LoopConfig, idle_s: float
) -> dict[str, Any]:
    """The GRPO run once it reached its steps, ended, or made no progress for ``idle_s``."""
    run: dict[str, Any] = services.trainer.get(f"/v1/runs/{grpo_run}")
    last_step, last_change = run["step"], time.monotonic()
    while run["state"] in ("pending", "running") and run["step"] < config.grpo_steps:
        if time.monotonic() - last_change > idle_s and not _step_in_progress(services, grpo_run):
            break
        if time.monotonic() - last_change > config.stage_timeout_s:
            raise LoopError(f"GRPO run {grpo_run} made no progress in {config.stage_timeout_s} s")
        time.sleep(1.0)
        run = services.trainer.get(f"/v1/runs/{grpo_run}")
        if run["step"] != last_step:
            last_step, last_change = run["step"], time.monotonic()
    if run["state"] == "failed":
        raise LoopError(f"GRPO run {grpo_run} failed: {run.get('error')}")
    return run


def _step_in_progress(services: Services, run_id: str) -> bool:
    """Whether the run has started an optimizer step it has not finished (the newest of its
    step events is a start)."""
    for tail in (16, None):  # the recent records nearly always hold one; else all of them
        params = {"tail": tail} if tail else None
        rows = services.trainer.get(f"/v1/runs/{run_id}/metrics", params=params)
        events = [row.get("event") for row in rows if row.get("event") in ("step_started", "step")]
        if events or tail is None:
            return bool(events) and events[-1] == "step_started"
    return False


def _metrics(services: Services, run_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = services.trainer.get(f"/v1/runs/{run_id}/metrics")
    return [row for row in rows if row.get("event", "step") == "step"]


def _synthesis_section(train: dict[str, Any], heldout: list[dict[str, Any]]) -> str:
    lines = []
    for job in [train, *heldout]:
        stats = job["result"]
        lines.append(
            f"- `{job['params']['split']}` (job `{job['id']}`): {stats.get('registered', 0)} "
            f"registered; hops {stats.get('hops')}; scenario types {stats.get('scenario_types')};"
            f" domains {stats.get('domains')}; rejected {stats.get('rejected') or 'none'}"
        )
    return "\n".join(lines)


def _rollout_section(batches: list[dict[str, Any]]) -> str:
    lines = []
    for batch in batches:
        summary = batch["summary"]
        lines.append(
            f"- batch `{batch['id']}`: {batch['published']} trajectories on the stream, "
            f"{batch['failed']} failed; mean F1 {_num(summary['mean_reward'])}, success "
            f"{_num(summary['success_rate'])}, turns {_num(summary['mean_turns'])}, calls "
            f"{_num(summary['mean_tool_calls'])}; {summary['groups_with_variance']}/"
            f"{summary['groups_done']} groups with varying rewards"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
