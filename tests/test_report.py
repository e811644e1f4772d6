"""Run reports: Markdown tables from evaluation results (n, intervals, paired comparisons), PNG
plots, a JSON copy."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rollout_contract_examples import EXAMPLES

from astra import loop_report
from astra.cli_eval import score_table
from astra.report import (
    RunReport,
    comparison_sentence,
    comparisons,
    evaluation_table,
    write_report,
)
from astra_proto import SynthesisJob
from astra_proto.api.rollout import BatchStatus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CATEGORIES = ("heldout_entities", "heldout_compositions")


def evaluation(
    rewards: dict[str, float], *, label: str, failed: int = 0, suite: str = "heldout-procedural"
) -> dict[str, Any]:
    """An evaluation status as rollout answers it: per-entry rows (env id → F1; success when F1
    is 1; ids ending in an even digit in the first category) and their aggregates."""
    entries: list[dict[str, Any]] = [
        {
            "env_id": env_id, "category": CATEGORIES[int(env_id[-1]) % 2],
            "reward": reward, "success": reward == 1.0, "turns": 3, "tool_calls": 2,
            "finish_reason": "stop", "failure_reason": "boom" if i < failed else None,
            "trajectory_id": f"traj-{label}-{i}",
        }
        for i, (env_id, reward) in enumerate(rewards.items())
    ]  # fmt: skip

    def score(category: str) -> dict[str, Any]:
        rows = [e for e in entries if category in ("overall", e["category"])]
        return {
            "category": category, "entries": len(rows),
            "failed": sum(e["failure_reason"] is not None for e in rows),
            "mean_reward": statistics.fmean(e["reward"] for e in rows),
            "success_rate": statistics.fmean(float(e["success"]) for e in rows),
            "mean_turns": 3.0, "mean_tool_calls": 2.0,
        }  # fmt: skip

    return {
        "suite": suite, "label": label, "categories": [score(c) for c in CATEGORIES],
        "overall": score("overall"), "entries": entries,
    }  # fmt: skip


def tasks(n: int, reward: float) -> dict[str, float]:
    return {f"env{i:02d}": reward for i in range(n)}


def test_report_has_tables_plots_and_json(tmp_path: Path) -> None:
    report = RunReport(title="Demo", run_id="run-7")
    report.fact("environments registered", 40)
    report.section("Synthesis", "40 environments, 0 rejected.")
    sft = {f"env{i:02d}": 0.25 if i % 2 == 0 else 1.0 for i in range(20)}
    report.evaluations = {
        "SFT": evaluation(sft, label="SFT", failed=1),
        "SFT+RL": evaluation(tasks(20, 0.5), label="SFT+RL"),
    }
    report.curves = {
        "grpo": [{"step": i, "loss": 1.0 / (i + 1), "reward_mean": 0.1 * i} for i in range(4)],
        "empty": [],
    }
    markdown = write_report(report, tmp_path / "runs" / "run-7")

    text = markdown.read_text()
    assert text.startswith("# Demo")
    assert "| environments registered | 40 |" in text
    assert (
        "| policy | suite | category | n | failed | mean F1 [95% CI] | success [95% CI] |" in text
    )
    # Every F1 of the entities split is 0.25: the interval is the point; none succeeded, and
    # Wilson's interval still bounds the rate at 0.278 for n = 10.
    assert (
        "| SFT | heldout-procedural | heldout_entities | 10 | 1 | 0.250 [0.250, 0.250] | "
        "0.000 [0.000, 0.278] | 3.00 | 2.00 |" in text
    )
    # Overall: half the tasks at 0.25, half at 1.0. A resample's mean is 0.25 + 0.75 k / 20 with
    # k ~ Binomial(20, 1/2) tasks at 1.0, whose 2.5 and 97.5 % quantiles are 5 and 15: bounds
    # near 0.44 and 0.81. Success: 10 of 20 (Wilson 0.299-0.701).
    (overall,) = [
        line for line in text.splitlines() if line.startswith("| SFT | ") and "overall" in line
    ]
    cells = [cell.strip() for cell in overall.split("|")[1:-1]]
    assert cells[3:5] == ["20", "1"]
    f1_low, f1_high = (float(x) for x in cells[5].split("[")[1].rstrip("]").split(","))
    assert cells[5].startswith("0.625 [")
    assert 0.40 < f1_low < 0.5
    assert 0.75 < f1_high < 0.85
    assert cells[6] == "0.500 [0.299, 0.701]"
    assert "n: tasks evaluated. Mean F1 with its 95% percentile-bootstrap interval" in text
    assert "## Synthesis\n\n40 environments, 0 rejected." in text
    figures = ["grpo_curves.png", "eval_mean_reward.png", "eval_success_rate.png"]
    for name in figures:
        assert f"]({name})" in text
        assert (markdown.parent / name).read_bytes().startswith(PNG_MAGIC)
    assert not (markdown.parent / "empty_curves.png").exists()  # nothing to draw, no plot
    copy = json.loads((markdown.parent / "report.json").read_text())
    assert copy["facts"] == {"environments registered": "40"}
    assert copy["evaluations"]["SFT+RL"]["overall"]["mean_reward"] == 0.5
    sft_overall = copy["intervals"]["SFT"][-1]
    assert (sft_overall["category"], sft_overall["n"]) == ("overall", 20)
    assert round(sft_overall["f1_interval"]["low"], 3) == f1_low
    assert [c["category"] for c in copy["comparisons"]] == [*CATEGORIES, "overall"]
    assert copy["comparisons"][-1]["f1"]["paired"] == 20
    # Differences +0.25 on ten tasks, -0.5 on ten: -0.125, with bounds near -0.31 and +0.06.
    assert copy["comparisons"][-1]["f1"]["difference"]["estimate"] == -0.125
    assert copy["comparisons"][-1]["f1_verdict"] == "within noise"
    # The same scores always give the same report (the bootstrap is seeded).
    again = write_report(report, tmp_path / "again" / "run-7")
    assert again.read_text() == text


def test_an_unchanged_policy_is_within_noise(tmp_path: Path) -> None:
    # The past run's case: 16 held-out tasks, the same F1 on every task before and after RL.
    scores = {f"env{i:02d}": [0.0, 0.2, 0.5, 1.0][i % 4] for i in range(16)}
    report = RunReport(title="Experiment", run_id="run-8")
    report.evaluations = {
        "SFT · held-out": evaluation(scores, label="SFT"),
        "SFT+RL · held-out": evaluation(dict(scores), label="SFT+RL"),
    }
    text = write_report(report, tmp_path).read_text()

    assert "### Comparisons" in text
    assert (
        "| heldout-procedural | overall | SFT → SFT+RL | 16 | 0 | +0.000 [+0.000, +0.000] | "
        "+0.000 [+0.000, +0.000] | within noise |" in text
    )
    assert (
        "- heldout-procedural, SFT → SFT+RL: **within noise** on mean F1 (+0.000 [+0.000, "
        "+0.000] over n = 16 tasks paired by entry); success +0.000 [+0.000, +0.000], within "
        "noise." in text
    )
    assert '"Within noise" when the interval contains 0' in text


def test_a_clear_gain_is_named_and_unpaired_tasks_are_counted() -> None:
    before = {f"env{i:02d}": 0.1 * (i % 3) for i in range(16)}
    after = {key: value + 0.4 for key, value in before.items()}
    del after["env00"]  # an entry the second evaluation did not reach
    after["env99"] = 1.0  # and one the first did not have
    found = comparisons(
        {"SFT": evaluation(before, label="SFT"), "SFT+RL": evaluation(after, label="SFT+RL")}
    )
    (overall,) = [c for c in found if c.category == "overall"]
    assert overall.f1 is not None
    assert (overall.f1.paired, overall.f1.unpaired) == (15, 2)
    assert overall.f1.difference.low > 0.3
    assert overall.f1.verdict(overall.before, overall.after) == "SFT+RL above SFT"
    sentence = comparison_sentence(overall)
    assert "**SFT+RL above SFT** on mean F1 (+0.400 [" in sentence
    assert "over n = 15 tasks paired by entry" in sentence
    assert sentence.endswith("2 tasks evaluated by only one of the two are left out.")


def test_three_policies_are_compared_in_order_and_first_to_last_per_suite() -> None:
    held = {f"env{i}": 0.5 for i in range(8)}
    bfcl = {f"bfcl{i}": 0.0 for i in range(4)}
    evaluations = {
        "base · held-out": evaluation(held, label="base"),
        "base · BFCL base": evaluation(bfcl, label="base", suite="bfcl-multi-turn"),
        "SFT · held-out": evaluation(held, label="SFT"),
        "SFT · BFCL base": evaluation(bfcl, label="SFT", suite="bfcl-multi-turn"),
        "SFT+RL · held-out": evaluation(held, label="SFT+RL"),
    }
    overall = [
        (c.suite, c.before, c.after) for c in comparisons(evaluations) if c.category == "overall"
    ]
    assert overall == [
        ("heldout-procedural", "base", "SFT"),
        ("heldout-procedural", "SFT", "SFT+RL"),
        ("heldout-procedural", "base", "SFT+RL"),
        ("bfcl-multi-turn", "base", "SFT"),
    ]


def test_statuses_without_entries_show_means_without_intervals() -> None:
    status = evaluation(tasks(6, 0.5), label="SFT")
    status["entries"] = []
    row = evaluation_table({"SFT": status})[-1]
    assert row == "| SFT | heldout-procedural | overall | 6 | 0 | 0.500 | 0.000 | 3.00 | 2.00 |"
    (overall,) = [c for c in comparisons({"a": status, "b": status}) if c.category == "overall"]
    assert overall.f1 is None


def test_the_console_shows_n_intervals_and_the_verdict() -> None:
    scores = {f"env{i:02d}": [0.0, 0.5, 1.0][i % 3] for i in range(12)}
    status = evaluation(scores, label="SFT") | {"model": "policy", "state": "succeeded"}
    console = Console(record=True, width=120)
    console.print(score_table(status))
    table = console.export_text()
    assert "mean F1 [95% CI]" in table
    overall = next(line for line in table.splitlines() if line.strip().startswith("overall"))
    assert overall.split()[:3] == ["overall", "12", "0"]
    assert "0.500 [" in overall
    assert "0.333 [0.138, 0.609]" in overall  # Wilson's interval of 4 successes in 12

    report = RunReport(title="Demo", run_id="run-9")
    report.evaluations["SFT · held-out"] = status
    report.evaluations["SFT+RL · held-out"] = evaluation(dict(scores), label="SFT+RL")
    console = Console(record=True, width=400)
    loop_report.show_evaluation(console, status)
    loop_report.show_comparisons(console, report, "SFT+RL")
    text = console.export_text()
    assert "heldout-procedural (SFT): n = 12, mean F1 0.500 [" in text
    assert "success 0.333 [0.138, 0.609] (95% intervals), 0 failed episodes" in text
    assert "SFT → SFT+RL: within noise on mean F1 (+0.000 [+0.000, +0.000] over n = 12" in text


def test_the_loop_sections_say_what_each_job_and_batch_gave() -> None:
    now = datetime.now(UTC)
    train = SynthesisJob(
        id="job-1",
        kind="environments",
        params={"split": "train"},
        result={"registered": 8, "hops": {"2": 8}, "rejected": {"certificate_failed": 1}},
        created_at=now,
        updated_at=now,
    )
    heldout = train.model_copy(update={"id": "job-2", "params": {"split": "heldout"}, "result": {}})
    assert loop_report.synthesis_section(train, [heldout]).splitlines() == [
        "- `train` (job `job-1`): 8 registered; hops {'2': 8}; scenario types None; domains None;"
        " rejected {'certificate_failed': 1}",
        "- `heldout` (job `job-2`): 0 registered; hops None; scenario types None; domains None;"
        " rejected none",
    ]
    manifest = {"path": "data/gold", "stats": {"records": 12, "tool_calls_mean": 2.5}}
    assert loop_report.dataset_section(manifest) == (
        "`data/gold`: 12 trajectories, 2.50 tool calls on average, rejected: none."
    )
    batch = EXAMPLES["BatchStatus"]
    assert isinstance(batch, BatchStatus)
    assert loop_report.rollout_section([batch]) == (
        "- batch `batch-1`: 2 trajectories on the stream, 1 failed; mean F1 0.250, success -, "
        "turns -, calls -; 0/0 groups with varying rewards"
    )
    assert loop_report.batch_line(batch) == (
        "2 trajectories published; mean F1 0.250, 0 of 0 groups with varying rewards"
    )


def test_episodes_that_ran_out_of_time_are_called_out() -> None:
    status = evaluation(tasks(5, 0.0), label="SFT")
    assert loop_report.out_of_time(status) is None
    for entry in status["entries"][:3]:
        entry["finish_reason"] = "time_limit"
    status["entries"][0]["turns"] = 0
    status["entries"][1]["turns"] = 0
    warning = loop_report.out_of_time(status)
    assert warning is not None
    assert warning.startswith("3 of 5 episodes ran out of time (2 of them before any policy turn")
    console = Console(record=True, width=400)
    loop_report.show_evaluation(console, status)
    assert "warning: 3 of 5 episodes ran out of time" in console.export_text()
