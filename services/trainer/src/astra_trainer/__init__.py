"""astra-trainer service."""
