"""The envhost FastAPI app."""

from __future__ import annotations

import shutil

from fastapi import FastAPI

from astra_common.db.engine import create_engine
from astra_common.health import database_check
from astra_common.service import StartupError, closing_lifespan, create_service_app
from astra_envhost import __version__
from astra_envhost.settings import EnvhostSettings


def check_isolation(settings: EnvhostSettings) -> None:
    """Refuse to start without a sandbox for untrusted tool code, unless told otherwise."""
    if settings.sandbox == "bubblewrap" and shutil.which("bwrap") is None:
        raise StartupError(
            "sandbox=bubblewrap but the bwrap binary is not installed "
            "(apt-get install bubblewrap); refusing to run untrusted tool code without isolation"
        )
    if settings.sandbox == "none" and not settings.allow_unsandboxed:
        raise StartupError(
            "sandbox=none runs untrusted tool code without isolation; set "
            "ASTRA_ENVHOST_ALLOW_UNSANDBOXED=true to allow it for development"
        )


def create_app(settings: EnvhostSettings) -> FastAPI:
    """Build the envhost app; raises ``StartupError`` when isolation is missing."""
    check_isolation(settings)
    engine = create_engine(settings.database_url)

    return create_service_app(
        service="envhost",
        version=__version__,
        settings=settings,
        health_checks={"database": database_check(engine)},
        lifespan=closing_lifespan(engine.dispose),
    )
