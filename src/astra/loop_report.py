"""What the loop says about its stages: the report's sections on synthesis, the SFT dataset and
the rollouts, and the console lines of a batch and of an evaluation, all from the services'
answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console

from astra.report import (
    RunReport,
    comparison_sentence,
    comparisons,
    format_number,
    format_score,
    score_rows,
)
from astra_proto import SynthesisJob
from astra_proto.api.rollout import BatchStatus


def synthesis_section(train: SynthesisJob, heldout: list[SynthesisJob]) -> str:
    """One Markdown line per synthesis job: split, registered count, and what was drawn and
    rejected."""
    lines = []
    for job in [train, *heldout]:
        stats = job.result
        lines.append(
            f"- `{job.params['split']}` (job `{job.id}`): {stats.get('registered', 0)} "
            f"registered; hops {stats.get('hops')}; scenario types {stats.get('scenario_types')};"
            f" domains {stats.get('domains')}; rejected {stats.get('rejected') or 'none'}"
        )
    return "\n".join(lines)


def dataset_section(manifest: Mapping[str, Any]) -> str:
    """The SFT dataset of a dataset job's manifest: where, how many trajectories, calls per
    trajectory, rejections."""
    stats = manifest["stats"]
    return (
        f"`{manifest['path']}`: {stats['records']} trajectories, "
        f"{stats['tool_calls_mean']:.2f} tool calls on average, "
        f"rejected: {manifest.get('rejected') or 'none'}."
    )


def rollout_section(batches: list[BatchStatus]) -> str:
    """One Markdown line per rollout batch: trajectories published and their summary."""
    lines = []
    for batch in batches:
        summary = batch.summary
        lines.append(
            f"- batch `{batch.id}`: {batch.published} trajectories on the stream, "
            f"{batch.failed} failed; mean F1 {format_number(summary.mean_reward)}, success "
            f"{format_number(summary.success_rate)}, turns {format_number(summary.mean_turns)}, "
            f"calls {format_number(summary.mean_tool_calls)}; {summary.groups_with_variance}/"
            f"{summary.groups_done} groups with varying rewards"
        )
    return "\n".join(lines)


def batch_line(batch: BatchStatus) -> str:
    """A finished batch in one console line: published, mean F1, groups GRPO can learn from."""
    summary = batch.summary
    return (
        f"{batch.published} trajectories published; mean F1 {format_number(summary.mean_reward)}, "
        f"{summary.groups_with_variance} of {summary.groups_done} groups with varying rewards"
    )


def show_evaluation(console: Console, status: dict[str, Any]) -> None:
    """Print an evaluation's overall row: n, mean F1 and success with their intervals."""
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
    warning = out_of_time(status)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")


def out_of_time(status: Mapping[str, Any]) -> str | None:
    """A warning when episodes of an evaluation ran out of wall-clock time: they score 0 like
    a wrong answer, but say nothing about the policy when the policy server was too slow to
    answer (none of their turns completed)."""
    entries: list[Mapping[str, Any]] = list(status.get("entries") or [])
    late = [e for e in entries if e.get("finish_reason") == "time_limit"]
    if not late:
        return None
    silent = sum(int(e.get("turns") or 0) == 0 for e in late)
    return (
        f"{len(late)} of {len(entries)} episodes ran out of time ({silent} of them before any "
        "policy turn completed); they score 0. If the policy server was overloaded, lower "
        "ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES or raise the episode time limit."
    )


def show_comparisons(console: Console, report: RunReport, label: str) -> None:
    """Each earlier evaluation of the same suite against ``label``'s, over all tasks."""
    for compared in comparisons(report.evaluations):
        if compared.category == "overall" and compared.after == label:
            console.print(comparison_sentence(compared).replace("**", ""), markup=False)
