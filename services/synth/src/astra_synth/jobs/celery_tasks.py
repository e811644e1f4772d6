"""Celery tasks of synthesis jobs: small wrappers that run the async job code."""

from __future__ import annotations

import asyncio
import importlib

from celery import Celery

from astra_synth.settings import SynthSettings

ENVIRONMENT_JOB_TASK = "astra.synth.environment_job"
DATASET_JOB_TASK = "astra.synth.dataset_job"
TASK_JOB_TASK = "astra.synth.task_job"
TRAJECTORY_JOB_TASK = "astra.synth.trajectory_job"

JOB_RUNNERS = {
    ENVIRONMENT_JOB_TASK: ("astra_synth.jobs.environment_job", "run_environment_job"),
    DATASET_JOB_TASK: ("astra_synth.jobs.dataset_job", "run_dataset_job"),
    TASK_JOB_TASK: ("astra_synth.jobs.trajectory_job", "run_task_job"),
    TRAJECTORY_JOB_TASK: ("astra_synth.jobs.trajectory_job", "run_trajectory_job"),
}
"""Task name -> (module, coroutine function) running one job to a terminal state. The module
is imported when a job runs, so a worker starts without the heavier job code."""


def register_job_tasks(app: Celery, settings: SynthSettings) -> None:
    """Attach the job tasks to ``app``; they run with ``settings``."""
    for name, (module, function) in JOB_RUNNERS.items():

        def run(job_id: str, module: str = module, function: str = function) -> str:
            """Run job ``job_id`` to a terminal state; returns the state."""
            runner = getattr(importlib.import_module(module), function)
            return str(asyncio.run(runner(job_id, settings)).value)

        app.task(name=name, acks_late=True, reject_on_worker_lost=True)(run)
