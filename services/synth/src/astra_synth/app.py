"""The synth FastAPI app: the control plane's REST API."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import FastAPI
from kombu.exceptions import OperationalError as BrokerError

from astra_common.db import Database
from astra_common.health import database_check, redis_check
from astra_common.service import bearer_auth, closing_lifespan, create_service_app
from astra_synth import __version__
from astra_synth.archive import with_trajectory_archiver
from astra_synth.console import mount_console
from astra_synth.jobs.executor import EnvironmentExecutor
from astra_synth.jobs.leases import with_lease_keeper
from astra_synth.llm_endpoint import ChatModels
from astra_synth.routes.datasets import datasets_router
from astra_synth.routes.emulate import emulate_router
from astra_synth.routes.environments import environments_router
from astra_synth.routes.jobs import jobs_router
from astra_synth.routes.toolsets import toolsets_router
from astra_synth.routes.workers import workers_router
from astra_synth.settings import SynthSettings
from astra_synth.trajectories.store import TrajectoryStore
from astra_synth.worker import create_celery_app


def create_app(settings: SynthSettings) -> FastAPI:
    """Build the synth API app."""
    database = Database(settings.database_url)
    celery_app = create_celery_app(settings)
    broker = aioredis.Redis.from_url(settings.redis_url)
    chat_models = ChatModels(settings)
    app = create_service_app(
        service="synth",
        version=__version__,
        settings=settings,
        routers=[
            workers_router(celery_app),
            environments_router(
                database, bearer_auth(settings), lambda: EnvironmentExecutor.from_settings(settings)
            ),
            jobs_router(database, celery_app, settings, bearer_auth(settings)),
            datasets_router(TrajectoryStore(settings.data_dir), bearer_auth(settings)),
            toolsets_router(TrajectoryStore(settings.data_dir), bearer_auth(settings)),
            emulate_router(chat_models, bearer_auth(settings)),
        ],
        health_checks={"database": database_check(database.engine), "broker": redis_check(broker)},
        lifespan=with_trajectory_archiver(
            with_lease_keeper(
                closing_lifespan(database.dispose, broker.aclose, chat_models.aclose),
                database,
                celery_app,
                settings,
            ),
            database,
            settings,
        ),
        outage_errors=(BrokerError,),  # Celery's error around a lost Redis connection
    )
    return mount_console(app, database, settings)
