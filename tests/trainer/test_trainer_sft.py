"""SFT on an exported dataset (real SmolLM2, TRL): loader checks, 5 steps, parseable tool calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import torch
from trainer_support import (
    CITIES,
    SYSTEM_PROMPT,
    TIME_TOOL,
    WEATHER_TOOL,
    model_store,
    parse_tool_calls,
    weather_row,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from astra_trainer.run_files import read_metrics, read_status
from astra_trainer.sft import SFTRunConfig, run_sft
from astra_trainer.sft_data import DatasetFormatError, load_sft_dataset, load_sft_rows


def _export(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """The exporter's layout: data/train.parquet and jsonl/train.jsonl holding the same rows."""
    (folder / "data").mkdir(parents=True)
    (folder / "jsonl").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train.parquet")
    with (folder / "jsonl" / "train.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return folder


def test_loader_reads_parquet_and_jsonl_alike(tmp_path: Path) -> None:
    rows = [weather_row(city, i) for i, city in enumerate(CITIES[:3])]
    folder = _export(tmp_path / "ds", rows)
    from_folder = load_sft_rows(folder)
    from_jsonl = load_sft_rows(folder / "jsonl" / "train.jsonl")
    assert from_folder == from_jsonl
    assert len(from_folder) == 3  # the folder's two copies are not both read
    first = from_folder[0]
    assert json.loads(first["tools"]) == [WEATHER_TOOL, TIME_TOOL]
    call = first["messages"][2]["tool_calls"][0]["function"]
    assert call == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    dataset = load_sft_dataset(folder)
    assert dataset.column_names == ["messages", "tools"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(messages=[]), "non-empty list"),
        (lambda r: r.update(tools="{not json"), "tools is not valid JSON"),
        (
            lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments="{x"),
            "not JSON",
        ),
        (lambda r: r["messages"][1].update(role="robot"), "unknown role"),
        (lambda r: r.update(messages=r["messages"][:2]), "no assistant message"),
    ],
)
def test_loader_names_the_bad_row(tmp_path: Path, mutate: Any, message: str) -> None:
    rows = [weather_row("Paris", 0), weather_row("Lyon", 1)]
    mutate(rows[1])
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetFormatError, match=message) as caught:
        load_sft_rows(path)
    assert "row 1" in str(caught.value)


def test_loader_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no such file"):
        load_sft_rows(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetFormatError, match=r"expected a \.parquet or \.jsonl"):
        load_sft_rows(tmp_path / "x.csv")


@pytest.mark.slow
def test_five_sft_steps_teach_parseable_tool_calls(tmp_path: Path) -> None:
    rows = [weather_row(city, i) for i, city in enumerate(CITIES)]
    dataset = _export(tmp_path / "dataset", rows)
    config = SFTRunConfig(
        dataset=dataset,
        run_dir=tmp_path / "run",
        max_steps=5,
        batch_size=1,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        max_length=512,
    )
    result = run_sft(config, model_store())
    assert result.steps == 5
    status = read_status(config.run_dir)
    assert status is not None
    assert status.state == "finished"
    losses = [r["loss"] for r in read_metrics(config.run_dir) if "loss" in r]
    assert len(losses) == 5

    tokenizer: Any = AutoTokenizer.from_pretrained(result.final_model)
    model: Any = AutoModelForCausalLM.from_pretrained(result.final_model)
    # A city the dataset never showed: the call must be learned, not recalled.
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is the weather in Lisbon?"},
    ]
    inputs: Any = tokenizer.apply_chat_template(
        messages,
        tools=[WEATHER_TOOL, TIME_TOOL],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
    calls = parse_tool_calls(text)
    assert calls, f"no tool call in {text!r}"
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["arguments"]["city"] == "Lisbon"
