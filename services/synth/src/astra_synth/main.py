"""``astra-synth``: serve the synth API under uvicorn."""

from __future__ import annotations

from astra_common.service import serve
from astra_synth.app import create_app
from astra_synth.settings import SynthSettings


def main() -> None:
    """Entry point."""
    serve(SynthSettings, create_app)


if __name__ == "__main__":
    main()
