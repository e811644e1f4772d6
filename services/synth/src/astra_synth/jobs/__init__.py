"""Synthesis jobs: Celery tasks, the job runners and their progress and statistics."""
