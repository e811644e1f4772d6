"""The synth Celery app (built by a factory, no import-time side effects) and its worker."""

from __future__ import annotations

from typing import Any

from celery import Celery

from astra_common.service import configure_logging, load_settings
from astra_synth.jobs.celery_tasks import register_job_tasks
from astra_synth.settings import SynthSettings

PING_TASK = "astra.synth.ping"


def create_celery_app(settings: SynthSettings) -> Celery:
    """A Celery app on the configured Redis: JSON only, late acks, progress tracking."""
    app = Celery("astra_synth", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,  # a task is acked after it ran: a worker crash re-queues it
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout_s},
    )
    register_tasks(app, settings)
    return app


def register_tasks(app: Celery, settings: SynthSettings) -> None:
    """Attach every synth task to ``app``."""
    register_job_tasks(app, settings)

    @app.task(name=PING_TASK)
    def ping() -> dict[str, Any]:
        """Round trip through the broker and a worker; used by health reporting."""
        return {"pong": True}


def main() -> None:
    """``astra-synth-worker``: run a Celery worker for synthesis jobs."""
    settings = load_settings(SynthSettings)
    configure_logging(settings)
    app = create_celery_app(settings)
    app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level.upper()}",
            f"--concurrency={settings.worker_concurrency}",
            f"--pool={settings.worker_pool}",
            "--hostname=synth@%h",
        ]
    )


if __name__ == "__main__":
    main()
