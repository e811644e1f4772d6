"""Publishing envelopes to a stream: buffered, pipelined, deduplicated by record id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis

from astra_common.streams.layout import DATA_FIELD, RECORD_ID_FIELD, as_text, seen_key
from astra_proto.stream import StreamEnvelope

logger = logging.getLogger(__name__)

DEFAULT_DEDUPE_TTL = timedelta(days=7)

# KEYS: stream, seen key. ARGV: ttl ms, maxlen (0 = untrimmed), record id, envelope JSON.
# The script runs atomically, so check-then-add acts as SET NX. The marker is written after
# XADD so that a failed XADD (e.g. WRONGTYPE) leaves no marker that would drop the record
# on retry; its value is the entry id, so a duplicate can report where the original went.
_PUBLISH_ONCE = f"""
local prior = redis.call('GET', KEYS[2])
if prior then
  return {{0, prior}}
end
local id
if ARGV[2] ~= '0' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                  '{RECORD_ID_FIELD}', ARGV[3], '{DATA_FIELD}', ARGV[4])
else
  id = redis.call('XADD', KEYS[1], '*', '{RECORD_ID_FIELD}', ARGV[3], '{DATA_FIELD}', ARGV[4])
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {{1, id}}
"""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where one record went: its entry id, and whether it was already on the stream."""

    record_id: str
    entry_id: str
    duplicate: bool


@dataclass(slots=True)
class _Pending:
    record_id: str
    data: str
    result: asyncio.Future[PublishResult]


class StreamPublisher:
    """Writes envelopes to one stream, in pipelined batches, at most once per record id.

    ``publish`` buffers; the buffer is written when it holds ``batch_size`` envelopes, every
    ``flush_interval`` seconds by a background task (while entered as an async context
    manager), on ``flush()`` and on exit. A record id already written within ``dedupe_ttl``
    is not written again: the check and the ``XADD`` run in one Lua script on the server.
    ``maxlen`` trims the stream approximately (``MAXLEN ~``) on every add.
    """

    def __init__(
        self,
        redis: Redis,
        stream: str,
        *,
        maxlen: int | None = None,
        batch_size: int = 100,
        flush_interval: float = 0.05,
        dedupe_ttl: timedelta = DEFAULT_DEDUPE_TTL,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if maxlen is not None and maxlen < 1:
            raise ValueError("maxlen must be at least 1 (or None for no trimming)")
        ttl_ms = int(dedupe_ttl.total_seconds() * 1000)
        if ttl_ms < 1:
            raise ValueError("dedupe_ttl must be positive")
        self.stream = stream
        self._redis = redis
        self._maxlen = maxlen or 0
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._ttl_ms = ttl_ms
        self._script = redis.register_script(_PUBLISH_ONCE)
        self._buffer: list[_Pending] = []
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._background_error: Exception | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def buffered(self) -> int:
        """How many envelopes are waiting to be written."""
        return len(self._buffer)

    def start(self) -> None:
        """Start the background task that flushes the buffer every ``flush_interval``."""
        if self._closed:
            raise RuntimeError("publisher is closed")
        if self._flusher is None:
            self._flusher = asyncio.create_task(
                self._flush_periodically(), name=f"flush {self.stream}"
            )

    async def aclose(self) -> None:
        """Stop the background task and write what is buffered.

        Raises the write error if the final flush fails; the envelopes still buffered are then
        lost to this publisher (their futures carry the error).
        """
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            # Stopped, not cancelled: a cancel landing inside a pipeline write can be swallowed
            # by redis-py (leaving the loop running) and would drop the connection mid-batch.
            self._stopping.set()
            await self._flusher
            self._flusher = None
        try:
            await self.flush()
        except Exception as exc:
            for pending in self._buffer:
                _fail(pending.result, exc)
            self._buffer.clear()
            raise

    async def publish(self, envelope: StreamEnvelope[Any]) -> asyncio.Future[PublishResult]:
        """Buffer ``envelope``; returns a future of its ``PublishResult`` (awaiting it is optional).

        The envelope is always accepted. Raises when writing failed: the size-triggered flush
        this call ran, or a background flush since the last call. Nothing buffered is dropped
        by a failure; it stays buffered and is retried by the next flush, and publishing a
        record again is harmless (one entry per record id).
        """
        if self._closed:
            raise RuntimeError("publisher is closed")
        future: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()
        self._buffer.append(_Pending(envelope.record_id, envelope.model_dump_json(), future))
        if self._background_error is not None:
            error, self._background_error = self._background_error, None
            raise error
        if len(self._buffer) >= self._batch_size:
            await self.flush()
        return future

    async def publish_many(self, envelopes: Iterable[StreamEnvelope[Any]]) -> list[PublishResult]:
        """Write ``envelopes`` now (after anything buffered, in order); one result per envelope.

        A record repeated within ``envelopes`` or already written comes back with
        ``duplicate=True`` and the entry id of its first write.
        """
        if self._closed:
            raise RuntimeError("publisher is closed")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[PublishResult]] = []
        for envelope in envelopes:
            futures.append(loop.create_future())
            self._buffer.append(
                _Pending(envelope.record_id, envelope.model_dump_json(), futures[-1])
            )
        await self.flush()
        return [future.result() for future in futures]

    async def flush(self) -> list[PublishResult]:
        """Write everything buffered, ``batch_size`` entries per pipeline; returns what it wrote.

        Raises the first write error; the batch that failed and the ones after it stay
        buffered for the next flush.
        """
        written: list[PublishResult] = []
        async with self._lock:
            while self._buffer:
                batch = self._buffer[: self._batch_size]
                results = await self._write(batch)
                del self._buffer[: len(batch)]
                for pending, result in zip(batch, results, strict=True):
                    if not pending.result.done():
                        pending.result.set_result(result)
                written.extend(results)
        return written

    async def _write(self, batch: list[_Pending]) -> list[PublishResult]:
        # No MULTI: each script call is atomic by itself, and one failed entry should not
        # hold back the others (a retry of the whole batch is deduplicated).
        async with self._redis.pipeline(transaction=False) as pipe:
            for pending in batch:
                await self._script(
                    keys=[self.stream, seen_key(self.stream, pending.record_id)],
                    args=[self._ttl_ms, self._maxlen, pending.record_id, pending.data],
                    client=pipe,
                )
            replies: list[list[Any]] = await pipe.execute()
        return [
            PublishResult(pending.record_id, as_text(entry_id), duplicate=not int(added))
            for pending, (added, entry_id) in zip(batch, replies, strict=True)
        ]

    async def _flush_periodically(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._stopping.wait()
            if not self._buffer or self._stopping.is_set():
                continue
            try:
                await self.flush()
            except Exception as exc:
                # Kept for the next publish() to raise; the batch stays buffered for retry.
                logger.warning("flushing %s failed: %s", self.stream, exc)
                self._background_error = exc


def _fail(future: asyncio.Future[PublishResult], error: BaseException) -> None:
    if future.done():
        return
    future.set_exception(error)
    # The error is raised by aclose() too; callers that never await the future should not
    # get an "exception was never retrieved" report on top.
    future.exception()
