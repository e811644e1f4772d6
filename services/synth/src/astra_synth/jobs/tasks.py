"""Celery tasks of synthesis jobs: small wrappers that run the async job code."""

from __future__ import annotations

import asyncio

from celery import Celery

from astra_synth.settings import SynthSettings

ENVIRONMENT_JOB_TASK = "astra.synth.environment_job"
DATASET_JOB_TASK = "astra.synth.dataset_job"
TASK_JOB_TASK = "astra.synth.task_job"
TRAJECTORY_JOB_TASK = "astra.synth.trajectory_job"


def register_job_tasks(app: Celery, settings: SynthSettings) -> None:
    """Attach the job tasks to ``app``; they run with ``settings``."""

    @app.task(name=ENVIRONMENT_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
    def environment_job(job_id: str) -> str:
        """Run environment-synthesis job ``job_id`` to a terminal state; returns the state."""
        from astra_synth.jobs.environment_job import run_environment_job

        return asyncio.run(run_environment_job(job_id, settings)).value

    @app.task(name=DATASET_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
    def dataset_job(job_id: str) -> str:
        """Run dataset job ``job_id`` to a terminal state; returns the state."""
        from astra_synth.jobs.dataset_job import run_dataset_job

        return asyncio.run(run_dataset_job(job_id, settings)).value

    @app.task(name=TASK_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
    def task_job(job_id: str) -> str:
        """Run tasks job ``job_id`` to a terminal state; returns the state."""
        from astra_synth.jobs.trajectory_job import run_task_job

        return asyncio.run(run_task_job(job_id, settings)).value

    @app.task(name=TRAJECTORY_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
    def trajectory_job(job_id: str) -> str:
        """Run teacher-trajectory job ``job_id`` to a terminal state; returns the state."""
        from astra_synth.jobs.trajectory_job import run_trajectory_job

        return asyncio.run(run_trajectory_job(job_id, settings)).value
