"""Run reports: Markdown plus PNG plots under ``runs/<id>/``, from what a run measured."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API: no pyplot state, no display

from astra.stats import (
    RESAMPLES,
    SEED,
    Interval,
    PairedDifference,
    bootstrap_mean_ci,
    paired_difference,
    wilson_interval,
)

INTERVALS_NOTE = (
    f"n: tasks evaluated. Mean F1 with its 95% percentile-bootstrap interval ({RESAMPLES:,} "
    f"resamples of the tasks, seed {SEED}); success rate with Wilson's 95% interval. A failed "
    "episode counts as F1 0 and not successful."
)
COMPARISONS_NOTE = (
    "Evaluations of the same suite compared task by task (paired by entry id): the mean "
    f"difference (later minus earlier) with its 95% paired-bootstrap interval ({RESAMPLES:,} "
    f'resamples of the paired tasks, seed {SEED}). "Within noise" when the interval '
    "contains 0: these tasks cannot tell the two policies apart. Tasks evaluated by only one "
    "of the two are left out and counted."
)


@dataclass
class RunReport:
    """What a run produced, section by section, to be written as ``report.md`` + plots."""

    title: str
    run_id: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    """Key figures, in order (shown as a table at the top)."""
    sections: list[tuple[str, str]] = field(default_factory=list)
    """(heading, Markdown body)."""
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Evaluation statuses (rollout's EvaluationStatus as JSON) by label, in order."""
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per-step metric rows by curve name (e.g. "sft", "grpo")."""

    def fact(self, name: str, value: Any) -> None:
        """Add a key figure."""
        self.facts.append((name, str(value)))

    def section(self, heading: str, body: str) -> None:
        """Add a section."""
        self.sections.append((heading, body))


def write_report(report: RunReport, run_dir: Path) -> Path:
    """Write ``report.md``, ``report.json`` and the plots into ``run_dir``; returns the
    Markdown file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []
    for name, rows in report.curves.items():
        path = plot_curves(run_dir / f"{name}_curves.png", name, rows)
        if path is not None:
            figures.append((f"{name} training curves", path.name))
    if report.evaluations:
        for metric, label in (("mean_reward", "mean F1 reward"), ("success_rate", "success")):
            path = plot_evaluations(run_dir / f"eval_{metric}.png", report.evaluations, metric)
            figures.append((f"evaluation: {label}", path.name))
    lines = [f"# {report.title}", "", f"Run `{report.run_id}`.", ""]
    if report.facts:
        lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in report.facts), ""]
    if report.evaluations:
        lines += ["## Evaluation", "", *evaluation_table(report.evaluations), ""]
        lines += [INTERVALS_NOTE, ""]
        compared = comparisons(report.evaluations)
        if compared:
            lines += ["### Comparisons", "", *comparison_lines(compared), ""]
            lines += [COMPARISONS_NOTE, ""]
    for heading, body in report.sections:
        lines += [f"## {heading}", "", body.rstrip(), ""]
    if figures:
        lines += ["## Plots", ""]
        lines += [f"![{caption}]({file})" for caption, file in figures]
        lines.append("")
    markdown = run_dir / "report.md"
    markdown.write_text("\n".join(lines))
    (run_dir / "report.json").write_text(
        json.dumps(
            {
                "title": report.title,
                "run_id": report.run_id,
                "facts": dict(report.facts),
                "evaluations": report.evaluations,
                "intervals": {
                    label: [asdict(row) for row in score_rows(status)]
                    for label, status in report.evaluations.items()
                },
                "comparisons": [_comparison_json(c) for c in comparisons(report.evaluations)],
                "curves": report.curves,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    return markdown


@dataclass(frozen=True)
class ScoreRow:
    """One category (or ``overall``) of an evaluation; the intervals come from the per-entry
    rows and are None when the status carries none (the means are then the service's)."""

    category: str
    n: int
    failed: int
    mean_f1: float | None
    f1_interval: Interval | None
    success_rate: float | None
    success_interval: Interval | None
    mean_turns: float | None
    mean_tool_calls: float | None


def score_rows(status: Mapping[str, Any]) -> list[ScoreRow]:
    """The rows of an evaluation status (rollout's ``EvaluationStatus`` as JSON): each category
    in its order, then ``overall``; n, F1 and success computed from the per-entry rows."""
    entries: list[Mapping[str, Any]] = list(status.get("entries") or [])
    rows = []
    for score in [*status.get("categories", []), *filter(None, [status.get("overall")])]:
        name = score["category"]
        mine = entries if name == "overall" else [e for e in entries if e["category"] == name]
        f1 = bootstrap_mean_ci([float(e["reward"]) for e in mine]) if mine else None
        successes = sum(bool(e["success"]) for e in mine)
        success = wilson_interval(successes, len(mine)) if mine else None
        rows.append(
            ScoreRow(
                category=name,
                n=len(mine) if mine else int(score["entries"]),
                failed=int(score["failed"]),
                mean_f1=f1.estimate if f1 else score.get("mean_reward"),
                f1_interval=f1,
                success_rate=success.estimate if success else score.get("success_rate"),
                success_interval=success,
                mean_turns=score.get("mean_turns"),
                mean_tool_calls=score.get("mean_tool_calls"),
            )
        )
    return rows


def evaluation_table(evaluations: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown rows: one per (policy, category), with n, F1 and success (each with its 95%
    interval), turns and calls."""
    rows = [
        "| policy | suite | category | n | failed | mean F1 [95% CI] | success [95% CI] "
        "| turns | calls |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, status in evaluations.items():
        for row in score_rows(status):
            rows.append(
                f"| {label} | {status.get('suite', '')} | {row.category} | {row.n} | "
                f"{row.failed} | {format_score(row.mean_f1, row.f1_interval)} | "
                f"{format_score(row.success_rate, row.success_interval)} | "
                f"{format_number(row.mean_turns, 2)} | {format_number(row.mean_tool_calls, 2)} |"
            )
    return rows


@dataclass(frozen=True)
class Comparison:
    """Two evaluations of one suite compared task by task, in one category (or overall)."""

    suite: str
    category: str
    before: str
    after: str
    f1: PairedDifference | None
    success: PairedDifference | None
    """Both None when no task was scored by both (or a status carries no per-entry rows)."""


def comparisons(evaluations: Mapping[str, Mapping[str, Any]]) -> list[Comparison]:
    """Each evaluation against the next one of the same suite (base → SFT → SFT+RL), and the
    first against the last when there are more than two; per category and overall."""
    by_suite: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for key, status in evaluations.items():
        by_suite.setdefault(str(status.get("suite", "")), []).append((key, status))
    found = []
    for suite, runs in by_suite.items():
        for (before_key, before), (after_key, after) in _pairs(runs):
            for category in _categories(before, after):
                old, new = _entry_scores(before, category), _entry_scores(after, category)
                f1 = success = None
                if old.keys() & new.keys():
                    f1 = paired_difference(_column(old, 0), _column(new, 0))
                    success = paired_difference(_column(old, 1), _column(new, 1))
                before_name = str(before.get("label") or before_key)
                after_name = str(after.get("label") or after_key)
                found.append(Comparison(suite, category, before_name, after_name, f1, success))
    return found


def comparison_lines(found: Sequence[Comparison]) -> list[str]:
    """A Markdown table of the comparisons, then one sentence per comparison over all tasks."""
    rows = [
        "| suite | category | compared | n paired | left out | Δ mean F1 [95% CI] "
        "| Δ success [95% CI] | on F1 |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    sentences = []
    for c in found:
        compared = f"| {c.suite} | {c.category} | {c.before} → {c.after} |"
        if c.f1 is None or c.success is None:
            rows.append(f"{compared} 0 | - | - | - | no task scored by both |")
        else:
            rows.append(
                f"{compared} {c.f1.paired} | {c.f1.unpaired} | {format_difference(c.f1)} | "
                f"{format_difference(c.success)} | {c.f1.verdict(c.before, c.after)} |"
            )
        if c.category == "overall":
            sentences.append(f"- {comparison_sentence(c)}")
    return [*rows, "", *sentences] if sentences else rows


def comparison_sentence(c: Comparison) -> str:
    """One sentence: the verdict on F1 with its interval and n, success, what was left out."""
    if c.f1 is None or c.success is None:
        return f"{c.suite}, {c.before} → {c.after}: no task scored by both evaluations."
    text = (
        f"{c.suite}, {c.before} → {c.after}: **{c.f1.verdict(c.before, c.after)}** on mean F1 "
        f"({format_difference(c.f1)} over n = {c.f1.paired} tasks paired by entry); success "
        f"{format_difference(c.success)}, {c.success.verdict(c.before, c.after)}."
    )
    if c.f1.unpaired:
        text += f" {c.f1.unpaired} tasks evaluated by only one of the two are left out."
    return text


def format_score(mean: float | None, interval: Interval | None) -> str:
    """``0.213 [0.120, 0.310]``; the mean alone without an interval, ``-`` without a mean."""
    if interval is None:
        return format_number(mean)
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def format_difference(difference: PairedDifference) -> str:
    """``+0.031 [-0.012, +0.075]``."""
    d = difference.difference
    return f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def _comparison_json(c: Comparison) -> dict[str, Any]:
    verdicts = {
        f"{name}_verdict": None if d is None else d.verdict(c.before, c.after)
        for name, d in (("f1", c.f1), ("success", c.success))
    }
    return asdict(c) | verdicts


def _pairs(runs: list[tuple[str, Any]]) -> Iterator[tuple[tuple[str, Any], tuple[str, Any]]]:
    yield from itertools.pairwise(runs)
    if len(runs) > 2:
        yield runs[0], runs[-1]


def _categories(*statuses: Mapping[str, Any]) -> list[str]:
    names = [s["category"] for status in statuses for s in status.get("categories", [])]
    return [*dict.fromkeys(names), "overall"]


TaskScores = dict[tuple[str, str], tuple[float, float]]


def _entry_scores(status: Mapping[str, Any], category: str) -> TaskScores:
    """(F1, success) by (category, entry id) of the status's per-entry rows in ``category``."""
    return {
        (e["category"], e["env_id"]): (float(e["reward"]), float(bool(e["success"])))
        for e in status.get("entries") or []
        if category in ("overall", e["category"])
    }


def _column(scores: TaskScores, index: int) -> dict[tuple[str, str], float]:
    return {task: values[index] for task, values in scores.items()}


def plot_evaluations(path: Path, evaluations: Mapping[str, Mapping[str, Any]], metric: str) -> Path:
    """Grouped bars: ``metric`` (``mean_reward`` or ``success_rate``) per category, one bar per
    evaluated policy, with its 95% interval as an error bar where there is one."""
    rows = {label: score_rows(status) for label, status in evaluations.items()}
    categories = list(dict.fromkeys(row.category for found in rows.values() for row in found))
    width = 0.8 / max(1, len(rows))
    figure = Figure(figsize=(max(6.0, 1.6 * len(categories)), 4))
    axes = figure.subplots()
    for index, (label, found) in enumerate(rows.items()):
        by_category = {row.category: _metric(row, metric) for row in found}
        values, errors = [], []
        for category in categories:
            value, interval = by_category.get(category, (None, None))
            values.append(value or 0.0)
            low, high = (interval.low, interval.high) if interval else (value or 0.0,) * 2
            errors.append((max(0.0, (value or 0.0) - low), max(0.0, high - (value or 0.0))))
        xs = [c + index * width for c in range(len(categories))]
        yerr = [[e[0] for e in errors], [e[1] for e in errors]]
        axes.bar(xs, values, width, yerr=yerr, capsize=3, label=label)
    axes.set_xticks([c + width * (len(rows) - 1) / 2 for c in range(len(categories))])
    axes.set_xticklabels(categories, rotation=15)
    axes.set_ylim(0, 1)
    axes.set_ylabel(f"{metric.replace('_', ' ')} (95% CI)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _metric(row: ScoreRow, metric: str) -> tuple[float | None, Interval | None]:
    if metric == "success_rate":
        return row.success_rate, row.success_interval
    return row.mean_f1, row.f1_interval


def plot_curves(path: Path, name: str, rows: Sequence[Mapping[str, Any]]) -> Path | None:
    """One panel per numeric metric of ``rows`` (per step); None when there is nothing."""
    keys = [
        key
        for key in dict.fromkeys(k for row in rows for k in row)
        if key != "step" and any(isinstance(row.get(key), int | float) for row in rows)
    ]
    if not rows or not keys:
        return None
    keys = keys[:6]
    figure = Figure(figsize=(3.2 * len(keys), 3))
    axes = figure.subplots(1, len(keys), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        points = [
            (row.get("step", index), row[key])
            for index, row in enumerate(rows)
            if isinstance(row.get(key), int | float)
        ]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        axis.set_title(key, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
    figure.suptitle(name)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` decimals, or "-" when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"
