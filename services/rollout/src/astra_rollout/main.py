"""``astra-rollout``: serve the rollout service under uvicorn."""

from __future__ import annotations

from astra_common.service import serve
from astra_rollout.app import create_app
from astra_rollout.settings import RolloutSettings


def main() -> None:
    """Entry point."""
    serve(RolloutSettings, create_app)


if __name__ == "__main__":
    main()
