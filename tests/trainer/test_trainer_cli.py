"""``astra train`` (the sub-app the CLI mounts): input errors reach the user with exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from trainer_support import MODEL_CACHE, weather_row
from typer.testing import CliRunner

from astra.cli_train import train_app


def test_missing_dataset_is_refused_before_anything_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        train_app, ["sft", "--dataset", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "no dataset" in result.output


def test_a_bad_row_stops_the_trainer_with_exit_2(tmp_path: Path) -> None:
    row = weather_row("Paris", 0)
    row["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{broken"
    dataset = tmp_path / "train.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    result = CliRunner().invoke(
        train_app,
        [
            "sft",
            "--dataset",
            str(dataset),
            "--run-dir",
            str(tmp_path / "run"),
            "--model-dir",
            str(MODEL_CACHE),
        ],
    )
    assert result.exit_code == 2
    assert "exit 2" in result.output
