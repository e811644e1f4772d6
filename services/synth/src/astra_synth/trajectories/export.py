"""SFT datasets on disk: JSONL and Parquet with ``messages`` and ``tools``, plus a card.

The layout is what ``datasets.load_dataset(folder)`` reads and TRL's ``SFTTrainer`` trains on
as is: one row per trajectory, ``messages`` in the OpenAI chat shape (tool-call ``arguments``
kept as JSON strings) and ``tools`` as one JSON string holding the OpenAI function specs.
Strings, not nested structs, because ``datasets`` merges the argument dicts of different tools
into one schema padded with nulls, which would change what the model is trained on; TRL parses
a string ``tools`` column itself and the chat template writes string arguments unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from astra_proto import Message, Trajectory
from astra_proto.api.synth import DatasetManifest, DatasetStats
from astra_synth.trajectories.card import dataset_card

PARQUET_FILE = "data/train.parquet"
JSONL_FILE = "jsonl/train.jsonl"
CARD_FILE = "README.md"
MANIFEST_FILE = "manifest.json"

_FUNCTION = pa.struct([("name", pa.string()), ("arguments", pa.string())])
_TOOL_CALL = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", _FUNCTION)])
MESSAGE_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("tool_calls", pa.list_(_TOOL_CALL)),
        ("tool_call_id", pa.string()),
        ("name", pa.string()),
    ]
)
ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("tools", pa.string()),
        ("env_id", pa.string()),
        ("domain", pa.string()),
        ("source", pa.string()),
        ("score", pa.float64()),
        ("metadata", pa.string()),
    ]
)


def message_row(message: Message) -> dict[str, Any]:
    """One message as a dataset row entry: every key present, arguments as JSON strings."""
    calls = None
    if message.tool_calls:
        calls = [
            {
                "id": call.id,
                "type": call.type,
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": calls,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def trajectory_row(trajectory: Trajectory) -> dict[str, Any]:
    """One trajectory as a dataset row (see the module docstring for the shape)."""
    if not trajectory.messages:
        raise ValueError(f"trajectory {trajectory.id} has no messages")
    if trajectory.messages[-1].role != "assistant" or trajectory.messages[-1].tool_calls:
        raise ValueError(f"trajectory {trajectory.id} does not end with a final answer")
    score = trajectory.metadata.get("quality_score")
    if score is None and trajectory.reward is not None:
        score = trajectory.reward.f1
    metadata = {k: v for k, v in trajectory.metadata.items() if k not in ("domain", "source")}
    return {
        "id": trajectory.id,
        "messages": [message_row(m) for m in trajectory.messages],
        "tools": json.dumps([tool.to_openai() for tool in trajectory.tools], ensure_ascii=False),
        "env_id": trajectory.env_id,
        "domain": str(trajectory.metadata.get("domain", "")),
        "source": str(trajectory.metadata.get("source", "")),
        "score": None if score is None else float(score),
        "metadata": json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str),
    }


def dataset_stats(rows: list[dict[str, Any]]) -> DatasetStats:
    """Counts and means over exported rows."""
    if not rows:
        return DatasetStats(records=0)
    calls = [
        sum(len(m["tool_calls"] or []) for m in row["messages"] if m["role"] == "assistant")
        for row in rows
    ]
    parallel = sum(1 for row in rows for m in row["messages"] if len(m["tool_calls"] or []) > 1)
    scores = [row["score"] for row in rows if row["score"] is not None]
    return DatasetStats(
        records=len(rows),
        tool_calls_mean=sum(calls) / len(rows),
        tool_calls_max=max(calls),
        parallel_call_messages=parallel,
        messages_mean=sum(len(row["messages"]) for row in rows) / len(rows),
        tools_offered_mean=sum(len(json.loads(row["tools"])) for row in rows) / len(rows),
        by_domain=dict(sorted(Counter(row["domain"] or "unknown" for row in rows).items())),
        by_source=dict(sorted(Counter(row["source"] or "unknown" for row in rows).items())),
        score_mean=sum(scores) / len(scores) if scores else None,
    )


def export_dataset(
    records: Iterable[Trajectory],
    out_dir: Path | str,
    *,
    name: str | None = None,
    rejected: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> DatasetManifest:
    """Write ``records`` as an SFT dataset into ``out_dir`` and return its manifest.

    Writes ``data/train.parquet``, ``jsonl/train.jsonl`` (the same rows), ``README.md`` (a
    dataset card with statistics, whose front matter points ``load_dataset`` at the Parquet
    file) and ``manifest.json``. Raises ``ValueError`` for a record that cannot be a training
    sample (no messages, or not ending with a final answer) and for duplicate ids.
    """
    folder = Path(out_dir).resolve()
    rows = [trajectory_row(t) for t in records]
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise ValueError(f"duplicate record id {row['id']}")
        seen.add(row["id"])
    (folder / PARQUET_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / JSONL_FILE).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), folder / PARQUET_FILE)
    with (folder / JSONL_FILE).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    stats = dataset_stats(rows)
    dataset_name = name or folder.name
    (folder / CARD_FILE).write_text(
        dataset_card(dataset_name, stats, rejected or {}, PARQUET_FILE, JSONL_FILE),
        encoding="utf-8",
    )
    manifest = DatasetManifest(
        name=dataset_name,
        path=str(folder),
        files={
            relative: _sha256(folder / relative)
            for relative in (PARQUET_FILE, JSONL_FILE, CARD_FILE)
        },
        stats=stats,
        rejected=dict(rejected or {}),
        created_at=datetime.now(UTC),
        metadata=dict(metadata or {}),
    )
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
