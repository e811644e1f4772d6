"""What a training run leaves in its run directory: status, a metrics log, checkpoints.

``status.json`` is rewritten atomically (temporary file + rename) so readers never see half a
document; ``metrics.jsonl`` gets one JSON object per logged step, appended and flushed.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astra_proto.api.trainer import RunStatus

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


def _now() -> datetime:
    return datetime.now(UTC)


def write_json_atomic(path: Path, document: Any) -> None:
    """Write ``document`` as JSON to ``path`` so that readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(document, handle, indent=2, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def write_status(run_dir: Path, status: RunStatus) -> None:
    """Replace the run's ``status.json``."""
    status.updated_at = _now()
    write_json_atomic(run_dir / STATUS_FILE, status.model_dump(mode="json"))


def read_status(run_dir: Path) -> RunStatus | None:
    """The run's status, or None when it has none yet."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    return RunStatus.model_validate_json(path.read_text(encoding="utf-8"))


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one metrics record (a flat JSON object with a ``time`` field) to the log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": _now().isoformat(), **record}, sort_keys=True, default=float)
    with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete record of the run's metrics log (a torn last line is skipped)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
