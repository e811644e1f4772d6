"""The four service apps, built from settings but never started, and the routes they serve.

Doc checks (the method page, the inter-service call table) compare what a page names with
what the apps really serve: their OpenAPI paths plus the MCP routes OpenAPI does not list.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from astra_envhost.app import create_app as create_envhost
from astra_envhost.settings import EnvhostSettings
from astra_rollout.app import create_app as create_rollout
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings
from astra_trainer.app import create_app as create_trainer
from astra_trainer.settings import TrainerSettings

NO_REDIS = "redis://127.0.0.1:1/0"  # the apps are only built, never started


def build_service_apps(tmp_path: Path) -> dict[str, FastAPI]:
    """The apps of synth, envhost, rollout and trainer, by service name (not started)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'astra.db'}"
    return {
        "synth": create_synth(
            SynthSettings(
                database_url=database_url, redis_url=NO_REDIS, data_dir=str(tmp_path / "synth")
            )
        ),
        "envhost": create_envhost(
            EnvhostSettings(database_url=database_url, sandbox="none", allow_unsandboxed=True)
        ),
        "rollout": create_rollout(RolloutSettings(redis_url=NO_REDIS)),
        "trainer": create_trainer(
            TrainerSettings(
                redis_url=NO_REDIS,
                checkpoint_dir=tmp_path / "checkpoints",
                model_dir=tmp_path / "models",
            )
        ),
    }


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route of ``app``; ``*`` stands for any method."""
    routes: set[tuple[str, str]] = set()
    for path, operations in app.openapi()["paths"].items():
        routes.update((method.upper(), path) for method in operations)
    for route in app.routes:  # the MCP routes, which OpenAPI does not list
        path = getattr(route, "path", None)
        if isinstance(path, str):
            for method in getattr(route, "methods", None) or {"*"}:
                routes.add((method, path))
    return routes


def routes_by_service(tmp_path: Path) -> dict[str, set[tuple[str, str]]]:
    """(method, path template) of every route, per service name."""
    return {name: app_routes(app) for name, app in build_service_apps(tmp_path).items()}
