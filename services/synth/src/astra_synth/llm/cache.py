"""A file-backed cache of chat completions, keyed by the request's content.

The key is the SHA-256 of the canonical JSON of the request (model, messages, sampling
parameters), so a re-run of the same job makes no request and gets the same answers: runs are
reproducible and cost nothing the second time. One small JSON file per entry, written
atomically (temporary file + rename), so concurrent workers sharing a directory never read a
half-written entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from astra_proto.base import sha256_hex
from astra_synth.llm.types import Completion


def request_key(request: dict[str, Any]) -> str:
    """The cache key of a request body: SHA-256 of its canonical JSON."""
    return sha256_hex(request)


class LLMCache:
    """Completions stored under ``directory`` (created if missing), one file per request."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> Completion | None:
        """The stored completion of ``request`` (marked ``cached``), or None.

        An unreadable or corrupt entry counts as a miss (and is overwritten by the next put).
        """
        path = self._path(request_key(request))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Completion(
                text=str(data["text"]),
                prompt_tokens=int(data["prompt_tokens"]),
                completion_tokens=int(data["completion_tokens"]),
                cached=True,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, request: dict[str, Any], completion: Completion) -> None:
        """Store the completion of ``request``."""
        path = self._path(request_key(request))
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "request": request,
        }
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(entry, stream, ensure_ascii=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json"))
