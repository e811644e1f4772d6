"""Consuming a stream with a consumer group: typed deliveries, acks, reclaim, dead letters."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from astra_common.streams.layout import (
    DATA_FIELD,
    REASON_FIELD,
    SOURCE_GROUP_FIELD,
    SOURCE_ID_FIELD,
    as_text,
    dead_letter_stream,
    done_key,
)
from astra_proto.stream import PayloadT, StreamEnvelope

logger = logging.getLogger(__name__)

DEFAULT_DONE_TTL = timedelta(days=7)

_Fields = Mapping[bytes | str, bytes | str]
_Entry = tuple[bytes | str, _Fields | None]


@dataclass(frozen=True, slots=True)
class Delivery(Generic[PayloadT]):
    """One entry handed to this consumer; ack it once it is processed."""

    entry_id: str
    envelope: StreamEnvelope[PayloadT]
    delivery_count: int
    """How many times the group has delivered the entry, this time included."""

    @property
    def record_id(self) -> str:
        """The envelope's idempotency key."""
        return self.envelope.record_id

    @property
    def payload(self) -> PayloadT:
        """The typed payload."""
        return self.envelope.payload


class _Unreadable(Exception):
    """An entry that can never become a delivery; the message is the dead-letter reason."""


class StreamConsumer(Generic[PayloadT]):
    """One consumer of one group on one stream, yielding ``payload_type`` envelopes.

    Entries that cannot be parsed (bad JSON, wrong shape, unsupported schema version) go to
    ``{stream}:dead`` with a ``reason`` and are acked, so they neither stop the consumer nor
    vanish. ``ack`` marks records done for the group; entries of records already done are
    acked and skipped, so a record published twice is processed once per group.
    """

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer_name: str,
        payload_type: type[PayloadT],
        *,
        done_ttl: timedelta = DEFAULT_DONE_TTL,
    ) -> None:
        done_ttl_ms = int(done_ttl.total_seconds() * 1000)
        if done_ttl_ms < 1:
            raise ValueError("done_ttl must be positive")
        self.stream = stream
        self.group = group
        self.consumer_name = consumer_name
        self.dead_letter_stream = dead_letter_stream(stream)
        self._redis = redis
        self._done_ttl_ms = done_ttl_ms
        # Parametrised at runtime so pydantic validates the payload as ``payload_type``;
        # mypy cannot follow a type held in a variable.
        self._envelope_type: type[StreamEnvelope[PayloadT]] = StreamEnvelope[payload_type]  # type: ignore[valid-type]

    async def ensure_group(self, start_id: str = "0") -> bool:
        """Create the group (and the stream) if missing; True if this call created it.

        ``start_id`` is where a new group starts reading: ``"0"`` for the whole stream,
        ``"$"`` for entries added from now on.
        """
        try:
            await self._redis.xgroup_create(self.stream, self.group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        return True

    async def read(self, count: int = 100, block_ms: int | None = None) -> list[Delivery[PayloadT]]:
        """Up to ``count`` entries never delivered to this group, waiting up to ``block_ms``.

        ``block_ms=None`` returns at once; ``0`` waits indefinitely. May return fewer entries
        than were read, even none: unreadable ones went to the dead-letter stream and repeats
        of records already done were acked and skipped.
        """
        self._check_block(block_ms)
        reply = await self._redis.xreadgroup(
            self.group, self.consumer_name, {self.stream: ">"}, count=count, block=block_ms
        )
        entries = _entries_of_read(reply)
        return await self._accept(entries, dict.fromkeys((as_text(i) for i, _ in entries), 1))

    async def read_own_pending(
        self, exclude: Collection[str] = (), count: int = 1000
    ) -> list[Delivery[PayloadT]]:
        """Entries already delivered to this consumer and not acked, except ``exclude``.

        A read whose reply was lost (a timeout or a dropped connection after the server
        answered) leaves its entries pending for this consumer, where no later ``read`` sees
        them; this reads them again from the consumer's pending list (``XREADGROUP`` from
        id 0, following it to the end). ``exclude`` holds entry ids the caller already has.
        """
        entries: list[_Entry] = []
        after = "0"
        while True:
            reply = await self._redis.xreadgroup(
                self.group, self.consumer_name, {self.stream: after}, count=count
            )
            page = _entries_of_read(reply)
            if not page:
                break
            entries.extend(entry for entry in page if as_text(entry[0]) not in exclude)
            after = as_text(page[-1][0])
            if len(page) < count:
                break
        counts = await self._delivery_counts([as_text(entry_id) for entry_id, _ in entries])
        return await self._accept(entries, counts)

    async def reclaim(
        self, min_idle_ms: int, count: int = 100, *, max_deliveries: int | None = None
    ) -> list[Delivery[PayloadT]]:
        """Take over up to ``count`` entries pending in the group for ``min_idle_ms`` or more.

        Entries of a consumer that died unacked are handed to this one (``XAUTOCLAIM``);
        entries deleted from the stream meanwhile are dropped from the pending list. With
        ``max_deliveries``, an entry delivered more often than that goes to the dead-letter
        stream instead: a record that keeps failing its handler must not loop forever.
        """
        claimed: list[_Entry] = []
        cursor: bytes | str = "0-0"
        while len(claimed) < count:
            reply = await self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer_name,
                min_idle_time=min_idle_ms,
                start_id=cursor,
                count=count - len(claimed),
            )
            cursor, entries = reply[0], reply[1]
            if len(reply) > 2 and reply[2]:
                logger.info(
                    "%s/%s: %d pending entries were deleted from the stream",
                    self.stream,
                    self.group,
                    len(reply[2]),
                )
            claimed.extend(entries)
            if as_text(cursor) == "0-0":
                break
        counts = await self._delivery_counts([as_text(entry_id) for entry_id, _ in claimed])
        return await self._accept(claimed, counts, max_deliveries=max_deliveries)

    async def ack(self, items: Iterable[Delivery[Any] | str]) -> int:
        """Acknowledge deliveries (or bare entry ids); returns how many were still pending.

        For deliveries, the record is marked done for this group in the same transaction, so
        later entries of the same record are skipped by ``read`` and ``reclaim``.
        """
        entry_ids: list[str] = []
        record_ids: list[str] = []
        for item in items:
            if isinstance(item, Delivery):
                entry_ids.append(item.entry_id)
                record_ids.append(item.record_id)
            else:
                entry_ids.append(item)
        if not entry_ids:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            for record_id in record_ids:
                pipe.set(done_key(self.stream, self.group, record_id), 1, px=self._done_ttl_ms)
            pipe.xack(self.stream, self.group, *entry_ids)
            replies: list[Any] = await pipe.execute()
        return int(replies[-1])

    async def pending(self) -> int:
        """How many entries the group has delivered and not yet had acked."""
        summary: Mapping[str, Any] = await self._redis.xpending(self.stream, self.group)
        return int(summary["pending"])

    async def lag(self) -> int | None:
        """How many entries the group has not yet been delivered; None when Redis cannot tell.

        Redis cannot tell after entries were deleted from the middle of the stream.
        """
        groups: Sequence[Mapping[str, Any]] = await self._redis.xinfo_groups(self.stream)
        for info in groups:
            if as_text(info["name"]) == self.group:
                lag = info.get("lag")
                return None if lag is None else int(lag)
        raise LookupError(f"no group {self.group!r} on stream {self.stream!r}")

    def _check_block(self, block_ms: int | None) -> None:
        """Refuse a blocking read that the client's own socket timeout would always cut off."""
        if block_ms is None:
            return
        socket_timeout = _socket_timeout(self._redis)
        if socket_timeout is None:
            return
        if block_ms == 0 or block_ms >= socket_timeout * 1000:
            waits = "indefinitely" if block_ms == 0 else f"up to {block_ms} ms"
            raise ValueError(
                f"a read on {self.stream} would wait {waits}, but the Redis client gives up "
                f"reading after its socket_timeout of {socket_timeout} s ('Timeout reading "
                "from'): use a client whose socket_timeout exceeds the block time with a "
                "margin for a loaded machine"
            )

    async def _delivery_counts(self, entry_ids: Sequence[str]) -> dict[str, int]:
        if not entry_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(
                    self.stream,
                    self.group,
                    min=entry_id,
                    max=entry_id,
                    count=1,
                    consumername=self.consumer_name,
                )
            replies: list[list[Mapping[str, Any]]] = await pipe.execute()
        return {
            as_text(row["message_id"]): int(row["times_delivered"])
            for rows in replies
            for row in rows
        }

    async def _accept(
        self,
        entries: Sequence[_Entry],
        counts: Mapping[str, int],
        *,
        max_deliveries: int | None = None,
    ) -> list[Delivery[PayloadT]]:
        parsed: list[tuple[str, StreamEnvelope[PayloadT]]] = []
        unreadable: list[tuple[str, _Fields, str]] = []
        skipped: list[str] = []
        for raw_id, fields in entries:
            entry_id = as_text(raw_id)
            if not fields:
                # Deleted from the stream while pending (Redis < 7 reports these as empty).
                skipped.append(entry_id)
                continue
            try:
                delivered = counts.get(entry_id, 1)
                if max_deliveries is not None and delivered > max_deliveries:
                    raise _Unreadable(f"delivered {delivered} times, more than {max_deliveries}")
                parsed.append((entry_id, self._decode(fields)))
            except _Unreadable as exc:
                unreadable.append((entry_id, fields, str(exc)))

        deliveries: list[Delivery[PayloadT]] = []
        if parsed:
            keys = [done_key(self.stream, self.group, env.record_id) for _, env in parsed]
            done_flags: list[Any] = await self._redis.mget(keys)
            taken: set[str] = set()
            for (entry_id, envelope), done in zip(parsed, done_flags, strict=True):
                if done is not None or envelope.record_id in taken:
                    skipped.append(entry_id)
                    continue
                taken.add(envelope.record_id)
                deliveries.append(Delivery(entry_id, envelope, counts.get(entry_id, 1)))

        if unreadable:
            await self._dead_letter(unreadable)
        if skipped:
            await self._redis.xack(self.stream, self.group, *skipped)
        return deliveries

    def _decode(self, fields: _Fields) -> StreamEnvelope[PayloadT]:
        data = fields.get(DATA_FIELD, fields.get(DATA_FIELD.encode()))
        if data is None:
            raise _Unreadable(f"no {DATA_FIELD!r} field")
        try:
            return self._envelope_type.model_validate_json(data)
        except ValidationError as exc:
            raise _Unreadable(_describe(exc)) from exc

    async def _dead_letter(self, unreadable: Sequence[tuple[str, _Fields, str]]) -> None:
        # One transaction: an entry is either both dead-lettered and acked, or neither.
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry_id, fields, reason in unreadable:
                logger.warning(
                    "%s/%s: entry %s moved to %s: %s",
                    self.stream,
                    self.group,
                    entry_id,
                    self.dead_letter_stream,
                    reason,
                )
                dead: dict[Any, Any] = dict(fields)
                dead[REASON_FIELD] = reason
                dead[SOURCE_ID_FIELD] = entry_id
                dead[SOURCE_GROUP_FIELD] = self.group
                pipe.xadd(self.dead_letter_stream, dead)
            pipe.xack(self.stream, self.group, *(entry_id for entry_id, _, _ in unreadable))
            await pipe.execute()


def _socket_timeout(redis: Redis) -> float | None:
    """The read timeout of the client's connections (None: they wait as long as it takes)."""
    pool = redis.connection_pool
    if "socket_timeout" in pool.connection_kwargs:
        timeout: float | None = pool.connection_kwargs["socket_timeout"]
        return timeout
    # Not given (e.g. ``from_url`` without it): the connection class's own default applies.
    for cls in pool.connection_class.__mro__:
        parameter = inspect.signature(vars(cls).get("__init__", object.__init__)).parameters.get(
            "socket_timeout"
        )
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            default: float | None = parameter.default
            return default
    return None


def _entries_of_read(reply: Any) -> list[_Entry]:
    """The entries of an XREADGROUP reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        return [entry for per_stream in reply.values() for entry in per_stream[0]]
    return [entry for _, entries in reply for entry in entries]


def _describe(error: ValidationError) -> str:
    problems = error.errors(include_url=False)
    text = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'envelope'}: {problem['msg']}"
        for problem in problems[:5]
    )
    if any(problem["loc"] == ("schema_version",) for problem in problems):
        return f"unsupported schema_version: {text}"
    return f"invalid envelope: {text}"
