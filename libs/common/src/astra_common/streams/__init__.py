"""Redis streams carrying ``StreamEnvelope`` JSON: batched idempotent publishing, consumer groups.

Every entry holds one envelope as JSON in its ``data`` field (never pickle). Publishing is
deduplicated by record id on the server; consuming marks records done per group on ack, so
a record is processed once per group even if it reaches the stream twice. Entries no reader
can parse go to ``{stream}:dead``.
"""

from astra_common.streams.consumer import DEFAULT_DONE_TTL, Delivery, StreamConsumer
from astra_common.streams.layout import (
    DATA_FIELD,
    REASON_FIELD,
    RECORD_ID_FIELD,
    SOURCE_GROUP_FIELD,
    SOURCE_ID_FIELD,
    dead_letter_stream,
    done_key,
    seen_key,
)
from astra_common.streams.publisher import DEFAULT_DEDUPE_TTL, PublishResult, StreamPublisher

__all__ = [
    "DATA_FIELD",
    "DEFAULT_DEDUPE_TTL",
    "DEFAULT_DONE_TTL",
    "REASON_FIELD",
    "RECORD_ID_FIELD",
    "SOURCE_GROUP_FIELD",
    "SOURCE_ID_FIELD",
    "Delivery",
    "PublishResult",
    "StreamConsumer",
    "StreamPublisher",
    "dead_letter_stream",
    "done_key",
    "seen_key",
]
