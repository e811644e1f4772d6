"""Exported SFT datasets: JSONL or Parquet rows with ``messages`` and ``tools``.

The exporter writes one row per trajectory: ``messages`` in the OpenAI chat shape with every
key present (``None`` where unused) and tool-call ``arguments`` as JSON strings, and ``tools``
as one JSON string holding the OpenAI function specs. This module reads that format from a
file or a dataset folder, checks every row and returns a ``datasets.Dataset`` with exactly
the two columns TRL's ``SFTTrainer`` trains on (``tools`` stays a JSON string: TRL parses it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets  # type: ignore[import-untyped]

ROLES = ("system", "user", "assistant", "tool")
_DATA_SUFFIXES = (".parquet", ".jsonl")
_PREFERRED = ("data/train.parquet", "jsonl/train.jsonl")


class DatasetFormatError(ValueError):
    """An SFT dataset that cannot be trained on; the message names the file, row and problem."""


def dataset_files(path: Path) -> list[Path]:
    """The data files of ``path``: the file itself, or a folder's Parquet (preferred) or JSONL.

    A folder written by the exporter holds the same rows twice (Parquet and JSONL): only one
    copy is returned.
    """
    if path.is_file():
        if path.suffix not in _DATA_SUFFIXES:
            raise DatasetFormatError(f"{path}: expected a .parquet or .jsonl file")
        return [path]
    if not path.is_dir():
        raise DatasetFormatError(f"{path}: no such file or folder")
    for preferred in _PREFERRED:
        if (path / preferred).is_file():
            return [path / preferred]
    for suffix in _DATA_SUFFIXES:
        found = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        if found:
            return found
    raise DatasetFormatError(f"{path}: no .parquet or .jsonl files inside")


def _read_rows(file: Path) -> list[dict[str, Any]]:
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        table = pq.read_table(file)
        missing = {"messages", "tools"} - set(table.column_names)
        if missing:
            raise DatasetFormatError(f"{file}: missing column(s) {sorted(missing)}")
        rows: list[dict[str, Any]] = table.select(["messages", "tools"]).to_pylist()
        return rows
    rows = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{file}:{number}: not JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise DatasetFormatError(f"{file}:{number}: a row must be a JSON object")
            rows.append(row)
    return rows


def _tools_json(value: Any, where: str) -> str:
    """``tools`` as one JSON string of a list of OpenAI function specs."""
    if value is None:
        return "[]"
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{where}: tools is not valid JSON: {exc.msg}") from exc
    else:
        parsed = value
    if not isinstance(parsed, list):
        raise DatasetFormatError(f"{where}: tools must be a JSON list of function specs")
    for tool in parsed:
        if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
            raise DatasetFormatError(f"{where}: every tool needs a 'function' object")
        if not tool["function"].get("name"):
            raise DatasetFormatError(f"{where}: a tool has no function name")
    return json.dumps(parsed, ensure_ascii=False)


def _message(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise DatasetFormatError(f"{where}: a message must be an object")
    role = raw.get("role")
    if role not in ROLES:
        raise DatasetFormatError(f"{where}: unknown role {role!r}")
    calls = raw.get("tool_calls") or None
    if calls is not None:
        if role != "assistant":
            raise DatasetFormatError(f"{where}: only assistant messages carry tool_calls")
        checked = []
        for call in calls:
            function = (call or {}).get("function") or {}
            arguments = function.get("arguments", "{}")
            if not isinstance(arguments, str):
                # Kept a string so that every tool's arguments fit one column type.
                arguments = json.dumps(arguments, ensure_ascii=False)
            try:
                json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(
                    f"{where}: tool call arguments are not JSON: {exc.msg}"
                ) from exc
            if not function.get("name"):
                raise DatasetFormatError(f"{where}: a tool call has no function name")
            checked.append(
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments},
                }
            )
        calls = checked
    if role == "tool" and not raw.get("tool_call_id"):
        raise DatasetFormatError(f"{where}: tool messages need tool_call_id")
    if role in ("system", "user") and raw.get("content") is None:
        raise DatasetFormatError(f"{where}: {role} messages need content")
    return {
        "role": role,
        "content": raw.get("content"),
        "tool_calls": calls,
        "tool_call_id": raw.get("tool_call_id"),
        "name": raw.get("name"),
    }


def normalise_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    """One row checked and reduced to ``{"messages": [...], "tools": "<json>"}``.

    Raises ``DatasetFormatError`` for a row that cannot be trained on: no messages, unknown
    roles, arguments that are not JSON, or no assistant message (nothing to learn).
    """
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DatasetFormatError(f"{where}: messages must be a non-empty list")
    checked = [_message(m, f"{where} message {i}") for i, m in enumerate(messages)]
    if not any(m["role"] == "assistant" for m in checked):
        raise DatasetFormatError(f"{where}: no assistant message to train on")
    return {"messages": checked, "tools": _tools_json(row.get("tools"), where)}


def load_sft_rows(path: Path | str) -> list[dict[str, Any]]:
    """Every row of the dataset at ``path`` (file or folder), checked and normalised."""
    rows: list[dict[str, Any]] = []
    for file in dataset_files(Path(path)):
        for index, row in enumerate(_read_rows(file)):
            rows.append(normalise_row(row, f"{file} row {index}"))
    if not rows:
        raise DatasetFormatError(f"{path}: the dataset has no rows")
    return rows


def load_sft_dataset(path: Path | str) -> datasets.Dataset:
    """The dataset at ``path`` as a ``datasets.Dataset`` with ``messages`` and ``tools``."""
    return datasets.Dataset.from_list(load_sft_rows(path))
