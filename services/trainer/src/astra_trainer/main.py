"""``astra-trainer``: serve the trainer service under uvicorn."""

from __future__ import annotations

from astra_common.service import serve
from astra_trainer.app import create_app
from astra_trainer.settings import TrainerSettings


def main() -> None:
    """Entry point."""
    serve(TrainerSettings, create_app)


if __name__ == "__main__":
    main()
