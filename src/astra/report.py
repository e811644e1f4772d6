"""Run reports: Markdown plus PNG plots under ``runs/<id>/``, from what a run measured."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API: no pyplot state, no display


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
                "curves": report.curves,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    return markdown


def evaluation_table(evaluations: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown rows: one per (policy, category), with F1, success, turns and calls."""
    rows = [
        "| policy | suite | category | entries | failed | mean F1 | success | turns | calls |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, status in evaluations.items():
        scores = [*status.get("categories", []), *filter(None, [status.get("overall")])]
        for score in scores:
            rows.append(
                f"| {label} | {status.get('suite', '')} | {score['category']} | "
                f"{score['entries']} | {score['failed']} | {_fmt(score['mean_reward'])} | "
                f"{_fmt(score['success_rate'])} | {_fmt(score['mean_turns'], 2)} | "
                f"{_fmt(score['mean_tool_calls'], 2)} |"
            )
    return rows


def plot_evaluations(path: Path, evaluations: Mapping[str, Mapping[str, Any]], metric: str) -> Path:
    """Grouped bars: ``metric`` per category, one bar per evaluated policy."""
    categories: list[str] = []
    for status in evaluations.values():
        for score in [*status.get("categories", []), *filter(None, [status.get("overall")])]:
            if score["category"] not in categories:
                categories.append(score["category"])
    labels = list(evaluations)
    width = 0.8 / max(1, len(labels))
    figure = Figure(figsize=(max(6.0, 1.6 * len(categories)), 4))
    axes = figure.subplots()
    for index, label in enumerate(labels):
        status = evaluations[label]
        values = {
            s["category"]: s.get(metric) or 0.0
            for s in [*status.get("categories", []), *filter(None, [status.get("overall")])]
        }
        xs = [c + index * width for c in range(len(categories))]
        axes.bar(xs, [values.get(c, 0.0) for c in categories], width, label=label)
    axes.set_xticks([c + width * (len(labels) - 1) / 2 for c in range(len(categories))])
    axes.set_xticklabels(categories, rotation=15)
    axes.set_ylim(0, 1)
    axes.set_ylabel(metric.replace("_", " "))
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
