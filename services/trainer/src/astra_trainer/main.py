"""``astra-trainer``: serve the trainer service under uvicorn.

``astra-trainer init-model`` instead prepares the model store (``ASTRA_TRAINER_MODEL_DIR``):
it converts the default model once (checksum verified) and prints its folder, so a policy
server can start from it before any training (the compose file runs it as a one-shot service).
"""

from __future__ import annotations

import sys

from astra_common.service import load_settings, serve
from astra_trainer.settings import TrainerSettings

USAGE = "usage: astra-trainer [init-model]"


def init_model(settings: TrainerSettings) -> int:
    """Convert the default model into the store unless it is there and intact; 2 on failure."""
    from astra_trainer.models import ModelStore, ModelStoreError  # torch: imported late

    try:
        folder = ModelStore(settings.model_dir, wheel=settings.default_model_wheel).ensure_default()
    except ModelStoreError as exc:
        print(f"astra-trainer init-model: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: serve, or ``init-model``."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        from astra_trainer.app import create_app

        serve(TrainerSettings, create_app)
        return 0
    if args == ["init-model"]:
        return init_model(load_settings(TrainerSettings))
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
