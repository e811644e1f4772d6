"""The one error the model store raises."""

from __future__ import annotations


class ModelStoreError(RuntimeError):
    """A model could not be found, fetched, converted or validated; the message says why."""
