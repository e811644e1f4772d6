"""Synthesis jobs: REST API, Celery tasks, the runner and its progress and statistics."""
