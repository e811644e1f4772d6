"""``astra datasets export`` from a Trajectory JSONL file, and its errors."""

from __future__ import annotations

from pathlib import Path

import datasets  # type: ignore[import-untyped]
from test_traj_judge import trajectory
from typer.testing import CliRunner

from astra.cli_datasets import datasets_app

runner = CliRunner()


def test_export_from_trajectory_file(tmp_path: Path) -> None:
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join(trajectory(f"t{i}", 1 + i % 2).model_dump_json() for i in range(3)))
    result = runner.invoke(
        datasets_app, ["export", str(tmp_path / "out"), "--trajectories", str(source)]
    )
    assert result.exit_code == 0, result.output
    assert "3 records (1.33 tool calls each)" in result.output
    assert datasets.load_dataset(str(tmp_path / "out"), split="train")["id"] == ["t0", "t1", "t2"]


def test_export_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    neither = runner.invoke(datasets_app, ["export", out])
    assert neither.exit_code == 1
    assert "exactly one of" in neither.output
    missing = runner.invoke(datasets_app, ["export", out, "--trajectories", str(tmp_path / "no")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    invalid = runner.invoke(datasets_app, ["export", out, "--trajectories", str(bad)])
    assert invalid.exit_code == 1
    assert "bad.jsonl:1: not a Trajectory" in invalid.output
    unfinished = trajectory("u", 1)
    unfinished.messages.pop()
    bad.write_text(unfinished.model_dump_json())
    refused = runner.invoke(datasets_app, ["export", out, "--trajectories", str(bad)])
    assert refused.exit_code == 1
    assert "final answer" in refused.output
    zero = runner.invoke(datasets_app, ["export", out, "--gold", "0"])
    assert zero.exit_code == 1
    assert "at least 1" in zero.output
