"""Files under a data directory: toolsets, their graphs, task batches and datasets.

Layout: ``toolsets/<id>/toolset.json``, ``toolsets/<id>/graphs/<server>.json``,
``toolsets/<id>/tasks.json``, ``datasets/<name>/`` (an exported dataset with its
``manifest.json``). Writes go to a temporary file and are renamed, so readers never see half a
file. Names are restricted to ``[A-Za-z0-9_.-]`` so none escapes the directory.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from astra_proto.api.synth import DatasetManifest, ToolGraph, Toolset
from astra_synth.trajectories.export import MANIFEST_FILE
from astra_synth.trajectories.models import TaskSynthesis

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
"""Every stored name: one path component that does not start with a dot (so never '..')."""

_SAFE = re.compile(NAME_PATTERN)


def _safe(name: str) -> str:
    if not _SAFE.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid name (letters, digits, '_', '.', '-')")
    return name


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


class TrajectoryStore:
    """Toolsets, graphs, task batches and datasets kept as JSON files under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def toolset_dir(self, toolset_id: str) -> Path:
        return self.root / "toolsets" / _safe(toolset_id)

    def dataset_dir(self, name: str) -> Path:
        """Where ``export_dataset`` should write the dataset called ``name``."""
        return self.root / "datasets" / _safe(name)

    def save_toolset(self, toolset: Toolset) -> Path:
        path = self.toolset_dir(toolset.id) / "toolset.json"
        _write(path, toolset.model_dump_json(indent=2))
        return path

    def load_toolset(self, toolset_id: str) -> Toolset:
        """The stored toolset; ``KeyError`` when there is none."""
        path = self.toolset_dir(toolset_id) / "toolset.json"
        if not path.is_file():
            raise KeyError(f"no toolset {toolset_id!r}")
        return Toolset.model_validate_json(path.read_text(encoding="utf-8"))

    def list_toolsets(self) -> list[str]:
        folder = self.root / "toolsets"
        return (
            sorted(p.parent.name for p in folder.glob("*/toolset.json")) if folder.exists() else []
        )

    def save_graph(self, toolset_id: str, graph: ToolGraph) -> Path:
        path = self.toolset_dir(toolset_id) / "graphs" / f"{_safe(graph.server)}.json"
        _write(path, graph.model_dump_json(indent=2))
        return path

    def load_graphs(self, toolset_id: str) -> list[ToolGraph]:
        folder = self.toolset_dir(toolset_id) / "graphs"
        return [
            ToolGraph.model_validate_json(p.read_text(encoding="utf-8"))
            for p in sorted(folder.glob("*.json"))
        ]

    def save_tasks(self, result: TaskSynthesis) -> Path:
        """The task batch, and each of its graphs in its own file."""
        for graph in result.graphs:
            self.save_graph(result.toolset_id, graph)
        path = self.toolset_dir(result.toolset_id) / "tasks.json"
        _write(path, result.model_dump_json(indent=2))
        return path

    def load_tasks(self, toolset_id: str) -> TaskSynthesis:
        path = self.toolset_dir(toolset_id) / "tasks.json"
        if not path.is_file():
            raise KeyError(f"no tasks for toolset {toolset_id!r}")
        return TaskSynthesis.model_validate_json(path.read_text(encoding="utf-8"))

    def list_datasets(self) -> list[DatasetManifest]:
        folder = self.root / "datasets"
        if not folder.exists():
            return []
        return [
            DatasetManifest.model_validate_json(p.read_text(encoding="utf-8"))
            for p in sorted(folder.glob(f"*/{MANIFEST_FILE}"))
        ]
