"""``astra-envhost``: serve the environment host under uvicorn."""

from __future__ import annotations

from astra_common.service import serve
from astra_envhost.app import create_app
from astra_envhost.settings import EnvhostSettings


def main() -> None:
    """Entry point."""
    serve(EnvhostSettings, create_app)


if __name__ == "__main__":
    main()
