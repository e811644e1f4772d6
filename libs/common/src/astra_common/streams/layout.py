"""How stream entries and their bookkeeping keys are laid out on Redis.

An entry holds the envelope JSON in ``data`` and, for people reading the stream with
``XRANGE``, the record id in ``record_id``. Bookkeeping keys hang off the stream name.
"""

from __future__ import annotations

DATA_FIELD = "data"
"""Entry field holding the envelope JSON."""

RECORD_ID_FIELD = "record_id"
"""Entry field repeating the envelope's record id."""

REASON_FIELD = "reason"
"""Dead-letter field: why the entry could not be consumed."""

SOURCE_ID_FIELD = "source_id"
"""Dead-letter field: the entry id in the source stream."""

SOURCE_GROUP_FIELD = "source_group"
"""Dead-letter field: the consumer group that gave up on the entry."""


def seen_key(stream: str, record_id: str) -> str:
    """Publisher-side dedupe key of one record; its value is the entry id it was written as."""
    return f"{stream}:seen:{record_id}"


def done_key(stream: str, group: str, record_id: str) -> str:
    """Consumer-side key marking one record as processed (acked) by one group."""
    return f"{stream}:{group}:done:{record_id}"


def dead_letter_stream(stream: str) -> str:
    """The stream that entries of ``stream`` go to when no consumer can read them."""
    return f"{stream}:dead"


def as_text(value: bytes | str) -> str:
    """A Redis reply as text, whether or not the client decodes responses."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
