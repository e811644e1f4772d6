"""Export: JSONL and Parquet rows `datasets` reads back unchanged (arguments and tool schemas
as JSON strings), the dataset card, the manifest, bad records refused; the file store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import datasets  # type: ignore[import-untyped]
import pytest
from test_traj_graph import WEATHER
from test_traj_judge import trajectory

from astra_proto import Message
from astra_proto.api.synth import Toolset
from astra_synth.trajectories import export_dataset
from astra_synth.trajectories.models import TaskSynthesis
from astra_synth.trajectories.store import TrajectoryStore


def test_export_round_trips_through_datasets(tmp_path: Path) -> None:
    records = [trajectory("one", 1), trajectory("two", 2)]
    records[0].metadata.update(domain="weather", source="synth", quality_score=0.9)
    manifest = export_dataset(records, tmp_path / "ds", rejected={"judge_error": 3})
    assert manifest.stats.records == 2
    assert manifest.stats.tool_calls_mean == 1.5
    assert manifest.stats.by_domain == {"unknown": 1, "weather": 1}
    assert manifest.rejected == {"judge_error": 3}
    for relative, digest in manifest.files.items():
        assert len(digest) == 64
        assert (tmp_path / "ds" / relative).is_file()

    parquet = datasets.load_dataset(
        str(tmp_path / "ds"), split="train", cache_dir=str(tmp_path / "hf")
    )
    jsonl = datasets.load_dataset(
        "json",
        data_files=str(tmp_path / "ds" / "jsonl" / "train.jsonl"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    for loaded in (parquet, jsonl):
        assert loaded["id"] == ["one", "two"]
        assert loaded["score"] == [0.9, None]
        tools = json.loads(loaded[1]["tools"])
        assert tools == [t.to_openai() for t in WEATHER.tools]
        messages = loaded[1]["messages"]
        for original, row in zip(records[1].messages, messages, strict=True):
            assert (
                Message.model_validate({k: v for k, v in row.items() if v is not None}) == original
            )

    card = (tmp_path / "ds" / "README.md").read_text()
    assert "path: data/train.parquet" in card
    assert "| records | 2 |" in card
    assert "| judge_error | 3 |" in card


def test_export_refuses_bad_records(tmp_path: Path) -> None:
    unfinished = trajectory("x", 1)
    unfinished.messages.pop()  # ends with a tool result
    with pytest.raises(ValueError, match="final answer"):
        export_dataset([unfinished], tmp_path / "a")
    with pytest.raises(ValueError, match="duplicate"):
        export_dataset([trajectory("x", 1), trajectory("x", 2)], tmp_path / "b")


def test_store_keeps_toolsets_graphs_tasks_and_datasets(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path)
    toolset = Toolset(id="ts", servers=[WEATHER], created_at=datetime(2026, 1, 1, tzinfo=UTC))
    store.save_toolset(toolset)
    assert store.load_toolset("ts") == toolset
    assert store.list_toolsets() == ["ts"]
    with pytest.raises(KeyError):
        store.load_toolset("nope")
    with pytest.raises(ValueError, match="not a valid name"):
        store.toolset_dir("../escape")
    store.save_tasks(TaskSynthesis(toolset_id="ts"))
    assert store.load_tasks("ts").toolset_id == "ts"
    manifest = export_dataset([trajectory("one", 1)], store.dataset_dir("first"))
    assert store.list_datasets() == [manifest]
