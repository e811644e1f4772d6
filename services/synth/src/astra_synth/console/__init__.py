"""The web console: a static single-page app served by the synth API, and the read-only JSON
routes it needs beyond the jobs and environment APIs (episodes, trajectories, training)."""

from __future__ import annotations

from fastapi import FastAPI

from astra_common.db import Database
from astra_synth.console.data import console_data_router
from astra_synth.console.routes import console_router
from astra_synth.console.training import training_router
from astra_synth.settings import SynthSettings

__all__ = ["console_data_router", "console_router", "mount_console", "training_router"]


def mount_console(app: FastAPI, database: Database, settings: SynthSettings) -> FastAPI:
    """Add the console page (``/``, ``/console/...``) and its JSON routes (``/v1/episodes``,
    ``/v1/trajectories``, ``/v1/training/...``) to the synth app; returns ``app``."""
    app.include_router(console_data_router(database), prefix="/v1")
    app.include_router(training_router(settings.trainer_url), prefix="/v1")
    app.include_router(console_router())
    return app
