"""Run reports: Markdown tables from evaluation results, PNG plots, a JSON copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astra.report import RunReport, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def evaluation(mean: float, failed: int = 0) -> dict[str, Any]:
    def score(category: str) -> dict[str, Any]:
        return {
            "category": category, "entries": 10, "failed": failed, "mean_reward": mean,
            "success_rate": mean / 2, "mean_turns": 3.5, "mean_tool_calls": 2.25,
        }  # fmt: skip

    return {
        "suite": "heldout-procedural",
        "categories": [score("heldout_entities"), score("heldout_compositions")],
        "overall": score("overall"),
    }


def test_report_has_tables_plots_and_json(tmp_path: Path) -> None:
    report = RunReport(title="Demo", run_id="run-7")
    report.fact("environments registered", 40)
    report.section("Synthesis", "40 environments, 0 rejected.")
    report.evaluations = {"SFT": evaluation(0.25, failed=1), "SFT+RL": evaluation(0.5)}
    report.curves = {
        "grpo": [{"step": i, "loss": 1.0 / (i + 1), "reward_mean": 0.1 * i} for i in range(4)],
        "empty": [],
    }
    markdown = write_report(report, tmp_path / "runs" / "run-7")

    text = markdown.read_text()
    assert text.startswith("# Demo")
    assert "| environments registered | 40 |" in text
    assert (
        "| SFT | heldout-procedural | heldout_entities | 10 | 1 | 0.250 | 0.125 | 3.50 | 2.25 |"
        in text
    )
    assert (
        "| SFT+RL | heldout-procedural | overall | 10 | 0 | 0.500 | 0.250 | 3.50 | 2.25 |" in text
    )
    assert "## Synthesis\n\n40 environments, 0 rejected." in text
    figures = ["grpo_curves.png", "eval_mean_reward.png", "eval_success_rate.png"]
    for name in figures:
        assert f"]({name})" in text
        assert (markdown.parent / name).read_bytes().startswith(PNG_MAGIC)
    assert not (markdown.parent / "empty_curves.png").exists()  # nothing to draw, no plot
    copy = json.loads((markdown.parent / "report.json").read_text())
    assert copy["facts"] == {"environments registered": "40"}
    assert copy["evaluations"]["SFT+RL"]["overall"]["mean_reward"] == 0.5
