"""``astra-trainer init-model``: the model store prepared before any training (compose's
model-init service), from a wheel given by the ``default_model_wheel`` setting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from astra_trainer.models.source import SMOLLM2_WHEEL
from astra_trainer.models.store import DEFAULT_MODEL, verify_converted

pytestmark = pytest.mark.slow


def init_model(tmp_path: Path, wheel: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ASTRA_TRAINER_MODEL_DIR": str(tmp_path / "models"),
        "ASTRA_TRAINER_DEFAULT_MODEL_WHEEL": str(wheel),
    }
    command = [sys.executable, "-m", "astra_trainer.main", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_init_model_converts_the_default_model_from_the_given_wheel_once(
    tmp_path: Path, default_model_dir: Path
) -> None:
    cached = default_model_dir.parent / ".cache" / SMOLLM2_WHEEL
    wheel = tmp_path / "wheels" / SMOLLM2_WHEEL
    wheel.parent.mkdir()
    shutil.copy(cached, wheel)
    first = init_model(tmp_path, wheel, "init-model")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "models" / DEFAULT_MODEL
    assert first.stdout.strip() == str(folder)
    assert verify_converted(folder) is None
    # The wheel was used, not a download: nothing was cached beside the store.
    assert not (tmp_path / "models" / ".cache" / SMOLLM2_WHEEL).exists()
    stamp = (folder / "config.json").stat().st_mtime_ns
    again = init_model(tmp_path, wheel, "init-model")
    assert again.returncode == 0, again.stderr
    assert (folder / "config.json").stat().st_mtime_ns == stamp  # verified, not converted again


def test_a_missing_wheel_and_an_unknown_command_exit_2_with_a_reason(tmp_path: Path) -> None:
    missing = init_model(tmp_path, tmp_path / "nowhere.whl", "init-model")
    assert missing.returncode == 2
    assert "nowhere.whl does not exist" in missing.stderr
    unknown = init_model(tmp_path, tmp_path / "nowhere.whl", "serve-twice")
    assert unknown.returncode == 2
    assert "usage: astra-trainer [init-model]" in unknown.stderr
