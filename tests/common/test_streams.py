"""The Redis streams library against a real Redis server: publish, groups, reclaim, dead letters."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from astra_common.streams import (
    DATA_FIELD,
    REASON_FIELD,
    RECORD_ID_FIELD,
    SOURCE_GROUP_FIELD,
    SOURCE_ID_FIELD,
    Delivery,
    StreamConsumer,
    StreamPublisher,
    dead_letter_stream,
    seen_key,
)
from astra_proto import (
    FinishReason,
    Message,
    RewardBreakdown,
    StreamEnvelope,
    Timings,
    ToolSpec,
    Trajectory,
)


@pytest.fixture(params=[False, True], ids=["bytes", "text"])
async def redis(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """A client of the test server, once with raw byte replies and once decoding them."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=request.param)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def stream() -> str:
    """A stream name no other test uses."""
    return f"test:{uuid.uuid4().hex}"


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def fields_as_text(fields: dict[Any, Any]) -> dict[str, str]:
    return {text(key): text(value) for key, value in fields.items()}


def reward_envelope(record_id: str, solved: int = 1) -> StreamEnvelope[RewardBreakdown]:
    payload = RewardBreakdown.compute(3, [f"q{i}" for i in range(solved)], n_calls=4)
    return StreamEnvelope[RewardBreakdown](record_id=record_id, producer="test", payload=payload)


def trajectory_envelope(record_id: str) -> StreamEnvelope[Trajectory]:
    started = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    trajectory = Trajectory(
        id=record_id,
        env_id="env-1",
        policy_version=3,
        messages=[
            Message(role="user", content="What is 2 + 2?"),
            Message(role="assistant", content="4"),
        ],
        tools=[ToolSpec(name="add", description="Add two numbers.")],
        token_ids=[1, 2, 3],
        logprobs=[-0.1, -0.2, -0.3],
        loss_mask=[0, 1, 1],
        text_only=False,
        reward=RewardBreakdown.compute(1, ["q0"], n_calls=1),
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=1,
        timings=Timings(started_at=started, finished_at=started + timedelta(seconds=2)),
        metadata={"seed": 7},
    )
    return StreamEnvelope[Trajectory](record_id=record_id, producer="test", payload=trajectory)


async def entries_of(redis: aioredis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """Every entry of ``stream`` as (entry id, fields), decoded."""
    reply: Any = await redis.xrange(stream)
    return [(text(entry_id), fields_as_text(fields)) for entry_id, fields in reply]


async def stream_record_ids(redis: aioredis.Redis, stream: str) -> list[str]:
    return [fields[RECORD_ID_FIELD] for _, fields in await entries_of(redis, stream)]


async def dead_letters(redis: aioredis.Redis, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in await entries_of(redis, dead_letter_stream(stream))]


def record_ids(deliveries: list[Delivery[Any]]) -> list[str]:
    return [delivery.record_id for delivery in deliveries]


# Publishing


async def test_batch_is_written_when_full(redis: aioredis.Redis, stream: str) -> None:
    async with StreamPublisher(redis, stream, batch_size=3, flush_interval=60) as publisher:
        await publisher.publish(reward_envelope("a"))
        await publisher.publish(reward_envelope("b"))
        assert publisher.buffered == 2
        assert await redis.xlen(stream) == 0
        third = await publisher.publish(reward_envelope("c"))
        assert publisher.buffered == 0
        assert await redis.xlen(stream) == 3
        assert third.done()
        assert third.result().record_id == "c"
        assert not third.result().duplicate
    assert await stream_record_ids(redis, stream) == ["a", "b", "c"]


async def test_buffer_is_written_after_the_interval(redis: aioredis.Redis, stream: str) -> None:
    async with StreamPublisher(redis, stream, batch_size=100, flush_interval=0.02) as publisher:
        written = await publisher.publish(reward_envelope("a"))
        assert publisher.buffered == 1
        result = await asyncio.wait_for(written, timeout=2)
        assert publisher.buffered == 0
        [(entry_id, _)] = await entries_of(redis, stream)
        assert result.entry_id == entry_id


async def test_exit_writes_what_is_buffered(redis: aioredis.Redis, stream: str) -> None:
    async with StreamPublisher(redis, stream, batch_size=100, flush_interval=60) as publisher:
        futures = [await publisher.publish(reward_envelope(f"r{i}")) for i in range(5)]
        assert await redis.xlen(stream) == 0
    entries = await entries_of(redis, stream)
    assert [future.result().entry_id for future in futures] == [i for i, _ in entries]
    with pytest.raises(RuntimeError, match="closed"):
        await publisher.publish(reward_envelope("late"))


async def test_publish_many_writes_one_json_field_per_entry(
    redis: aioredis.Redis, stream: str
) -> None:
    envelopes = [reward_envelope(f"r{i}", solved=i) for i in range(4)]
    publisher = StreamPublisher(redis, stream, batch_size=3)
    results = await publisher.publish_many(envelopes)
    await publisher.aclose()

    entries = await entries_of(redis, stream)
    assert [r.entry_id for r in results] == [entry_id for entry_id, _ in entries]
    for envelope, (_, fields) in zip(envelopes, entries, strict=True):
        assert set(fields) == {DATA_FIELD, RECORD_ID_FIELD}
        assert fields[RECORD_ID_FIELD] == envelope.record_id
        assert json.loads(fields[DATA_FIELD]) == json.loads(envelope.model_dump_json())


async def test_a_record_is_written_once(redis: aioredis.Redis, stream: str) -> None:
    publisher = StreamPublisher(redis, stream, dedupe_ttl=timedelta(minutes=1))
    # Repeated within one pipelined batch ...
    first, again, other = await publisher.publish_many(
        [reward_envelope("a"), reward_envelope("a"), reward_envelope("b")]
    )
    # ... and in a later batch.
    [later] = await publisher.publish_many([reward_envelope("a")])
    await publisher.aclose()

    assert not first.duplicate
    assert not other.duplicate
    assert again.duplicate
    assert later.duplicate
    assert again.entry_id == later.entry_id == first.entry_id
    assert await stream_record_ids(redis, stream) == ["a", "b"]
    assert 0 < await redis.pttl(seen_key(stream, "a")) <= 60_000


async def test_buffered_publishes_deduplicate(redis: aioredis.Redis, stream: str) -> None:
    async with StreamPublisher(redis, stream, batch_size=100, flush_interval=60) as publisher:
        futures = [await publisher.publish(reward_envelope(name)) for name in "abab"]
    assert [f.result().duplicate for f in futures] == [False, False, True, True]
    assert await stream_record_ids(redis, stream) == ["a", "b"]


async def test_maxlen_trims_the_stream(redis: aioredis.Redis, stream: str) -> None:
    publisher = StreamPublisher(redis, stream, maxlen=10, batch_size=500)
    await publisher.publish_many(reward_envelope(f"r{i}") for i in range(1000))
    await publisher.aclose()
    assert 10 <= await redis.xlen(stream) < 1000


async def test_write_errors_reach_the_caller_and_nothing_is_dropped(
    redis: aioredis.Redis, stream: str
) -> None:
    await redis.set(stream, "not a stream")  # every XADD now fails with WRONGTYPE
    publisher = StreamPublisher(redis, stream, batch_size=100, flush_interval=0.01)
    publisher.start()
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await publisher.publish_many([reward_envelope("a")])

    async def publish_until_it_raises() -> None:
        async with asyncio.timeout(2):
            while True:
                await publisher.publish(reward_envelope("b"))
                await asyncio.sleep(0.01)

    # A background flush fails too; the next publish raises its error.
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await publish_until_it_raises()

    await redis.delete(stream)
    await publisher.aclose()
    assert sorted(set(await stream_record_ids(redis, stream))) == ["a", "b"]
    assert await redis.xlen(stream) == 2


async def test_close_raises_when_the_last_flush_fails(redis: aioredis.Redis, stream: str) -> None:
    await redis.set(stream, "not a stream")
    publisher = StreamPublisher(redis, stream, flush_interval=60)
    publisher.start()
    written = await publisher.publish(reward_envelope("a"))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await publisher.aclose()
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await written


# Consuming


async def test_trajectory_round_trips_as_its_model(redis: aioredis.Redis, stream: str) -> None:
    sent = trajectory_envelope("t1")
    consumer = StreamConsumer(redis, stream, "trainer", "trainer-0", Trajectory)
    assert await consumer.ensure_group() is True
    assert await consumer.ensure_group() is False  # BUSYGROUP is fine
    async with StreamPublisher(redis, stream) as publisher:
        await publisher.publish(sent)

    [delivery] = await consumer.read(count=10, block_ms=1000)
    assert isinstance(delivery.payload, Trajectory)
    assert delivery.envelope == sent
    assert delivery.delivery_count == 1
    assert await consumer.pending() == 1
    assert await consumer.lag() == 0

    assert await consumer.ack([delivery]) == 1
    assert await consumer.pending() == 0
    assert await consumer.read(count=10) == []


async def test_group_starting_at_the_end_skips_older_entries(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many([reward_envelope("old")])
    consumer = StreamConsumer(redis, stream, "g", "c", RewardBreakdown)
    await consumer.ensure_group(start_id="$")
    await publisher.publish_many([reward_envelope("new")])
    await publisher.aclose()
    assert record_ids(await consumer.read()) == ["new"]


async def test_two_consumers_split_the_work(redis: aioredis.Redis, stream: str) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many(reward_envelope(f"r{i}") for i in range(10))
    await publisher.aclose()
    first = StreamConsumer(redis, stream, "g", "first", RewardBreakdown)
    second = StreamConsumer(redis, stream, "g", "second", RewardBreakdown)
    await first.ensure_group()
    assert await first.lag() == 10

    mine = await first.read(count=4)
    theirs = await second.read(count=100)
    assert len(mine) == 4
    assert len(theirs) == 6
    assert sorted(record_ids(mine) + record_ids(theirs)) == sorted(f"r{i}" for i in range(10))
    assert await first.pending() == 10

    assert await first.ack(mine) == 4
    assert await second.ack(d.entry_id for d in theirs) == 6  # bare ids ack too
    assert await first.pending() == 0
    assert await first.lag() == 0


async def test_a_republished_record_is_processed_once_per_group(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    consumer = StreamConsumer(redis, stream, "g", "c", RewardBreakdown)
    await consumer.ensure_group()
    await publisher.publish_many([reward_envelope("a")])
    await consumer.ack(await consumer.read())

    # After the publisher's dedupe marker expires, the same record reaches the stream again.
    await redis.delete(seen_key(stream, "a"))
    again, _ = await publisher.publish_many([reward_envelope("a"), reward_envelope("b")])
    assert not again.duplicate
    await publisher.aclose()
    assert await stream_record_ids(redis, stream) == ["a", "a", "b"]

    assert record_ids(await consumer.read()) == ["b"]
    assert await consumer.pending() == 1  # the repeat of "a" was acked, "b" waits

    # Another group has its own record of what it processed.
    other = StreamConsumer(redis, stream, "other", "c", RewardBreakdown)
    await other.ensure_group()
    assert record_ids(await other.read()) == ["a", "b"]  # the repeat in the same read is skipped
    assert await other.pending() == 2


# Reclaim


async def test_reclaim_takes_over_a_dead_consumers_entries(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many(reward_envelope(f"r{i}") for i in range(3))
    await publisher.aclose()
    dead = StreamConsumer(redis, stream, "g", "dead", RewardBreakdown)
    alive = StreamConsumer(redis, stream, "g", "alive", RewardBreakdown)
    await dead.ensure_group()
    assert len(await dead.read()) == 3  # and never acked

    assert await alive.reclaim(min_idle_ms=60_000) == []
    taken = await alive.reclaim(min_idle_ms=0)
    assert record_ids(taken) == ["r0", "r1", "r2"]
    assert [d.delivery_count for d in taken] == [2, 2, 2]
    owners: list[dict[str, Any]] = await redis.xpending_range(stream, "g", "-", "+", 10)
    assert {text(row["consumer"]) for row in owners} == {"alive"}

    assert await alive.ack(taken) == 3
    assert await alive.pending() == 0


async def test_reclaim_follows_the_cursor_past_busy_entries(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many(reward_envelope(f"r{i:02}") for i in range(12))
    await publisher.aclose()
    dead = StreamConsumer(redis, stream, "g", "dead", RewardBreakdown)
    await dead.ensure_group()
    read = await dead.read(count=12)
    await asyncio.sleep(0.3)
    # The first 11 are freshly claimed by a live consumer; only the last one is idle. A single
    # XAUTOCLAIM COUNT 1 scans at most 10 entries, so finding it takes a second call.
    await redis.xclaim(stream, "g", "busy", 0, [d.entry_id for d in read[:11]])

    alive = StreamConsumer(redis, stream, "g", "alive", RewardBreakdown)
    assert record_ids(await alive.reclaim(min_idle_ms=250, count=1)) == ["r11"]


async def test_reclaim_drops_entries_deleted_from_the_stream(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many(reward_envelope(f"r{i}") for i in range(3))
    await publisher.aclose()
    dead = StreamConsumer(redis, stream, "g", "dead", RewardBreakdown)
    await dead.ensure_group()
    read = await dead.read()
    await redis.xdel(stream, read[1].entry_id)

    alive = StreamConsumer(redis, stream, "g", "alive", RewardBreakdown)
    assert record_ids(await alive.reclaim(min_idle_ms=0)) == ["r0", "r2"]
    assert await alive.pending() == 2


async def test_reclaim_dead_letters_entries_delivered_too_often(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many([reward_envelope("crashes-the-handler")])
    await publisher.aclose()
    first = StreamConsumer(redis, stream, "g", "first", RewardBreakdown)
    await first.ensure_group()
    [delivery] = await first.read()

    second = StreamConsumer(redis, stream, "g", "second", RewardBreakdown)
    assert await second.reclaim(min_idle_ms=0, max_deliveries=1) == []
    assert await second.pending() == 0
    [dead] = await dead_letters(redis, stream)
    assert "delivered 2 times" in dead[REASON_FIELD]
    assert dead[SOURCE_ID_FIELD] == delivery.entry_id


# Dead letters


async def test_unreadable_entries_go_to_the_dead_letter_stream(
    redis: aioredis.Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = StreamConsumer(redis, stream, "g", "c", RewardBreakdown)
    await consumer.ensure_group()
    wrong_payload = reward_envelope("x").model_dump(mode="json") | {"payload": {"n_solved": -1}}
    poison: list[dict[Any, Any]] = [
        {DATA_FIELD: "{not json", RECORD_ID_FIELD: "broken"},
        {"something": "else"},
        {DATA_FIELD: json.dumps(wrong_payload), RECORD_ID_FIELD: "x"},
    ]
    poison_ids = [text(await redis.xadd(stream, fields)) for fields in poison]
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many([reward_envelope("good")])
    await publisher.aclose()

    assert record_ids(await consumer.read()) == ["good"]
    assert await consumer.pending() == 1  # only the good one; the poison was acked

    dead = await dead_letters(redis, stream)
    assert [entry[SOURCE_ID_FIELD] for entry in dead] == poison_ids
    for original, entry in zip(poison, dead, strict=True):
        assert entry[SOURCE_GROUP_FIELD] == "g"
        assert entry.items() >= original.items()
    assert dead[0][REASON_FIELD].startswith("invalid envelope: envelope: Invalid JSON")
    assert dead[1][REASON_FIELD] == "no 'data' field"
    assert "payload.n_solved" in dead[2][REASON_FIELD]
    assert any("moved to" in record.getMessage() for record in caplog.records)


async def test_unsupported_schema_version_goes_to_the_dead_letter_stream(
    redis: aioredis.Redis, stream: str
) -> None:
    consumer = StreamConsumer(redis, stream, "g", "c", RewardBreakdown)
    await consumer.ensure_group()
    future = reward_envelope("from-the-future").model_dump(mode="json") | {"schema_version": 99}
    entry_id = await redis.xadd(
        stream, {DATA_FIELD: json.dumps(future), RECORD_ID_FIELD: "from-the-future"}
    )

    assert await consumer.read() == []
    assert await consumer.pending() == 0
    [dead] = await dead_letters(redis, stream)
    assert dead[SOURCE_ID_FIELD] == text(entry_id)
    assert dead[REASON_FIELD].startswith("unsupported schema_version")
    assert "99" in dead[REASON_FIELD]


# Lost replies and socket timeouts


async def test_entries_of_a_lost_read_reply_are_read_again(
    redis: aioredis.Redis, stream: str
) -> None:
    publisher = StreamPublisher(redis, stream)
    await publisher.publish_many(reward_envelope(f"r{i}") for i in range(5))
    await publisher.aclose()
    consumer = StreamConsumer(redis, stream, "g", "c", RewardBreakdown)
    other = StreamConsumer(redis, stream, "g", "other", RewardBreakdown)
    await consumer.ensure_group()
    held = await consumer.read(count=1)
    # The server delivers two entries, but their reply never reaches the consumer.
    await redis.xreadgroup("g", "c", {stream: ">"}, count=2)
    assert record_ids(await other.read(count=1)) == ["r3"]  # pending, but not this consumer's
    newer = await consumer.read(count=10)
    assert record_ids(newer) == ["r4"]  # a plain read never returns r1 and r2 again

    mine = {held[0].entry_id, newer[0].entry_id}
    again = await consumer.read_own_pending(exclude=mine, count=1)  # one entry per page
    assert record_ids(again) == ["r1", "r2"]
    assert await consumer.ack(again) == 2
    assert await consumer.read_own_pending(exclude=mine) == []


async def test_a_read_the_socket_timeout_would_cut_off_is_refused(
    redis_url: str, stream: str
) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.5)
    try:
        consumer = StreamConsumer(client, stream, "g", "c", RewardBreakdown)
        await consumer.ensure_group()
        for block_ms in (500, 2000, 0):
            with pytest.raises(ValueError, match=r"socket_timeout of 0\.5 s"):
                await consumer.read(block_ms=block_ms)
        assert await consumer.read(block_ms=50) == []  # well below the timeout: waits, returns
    finally:
        await client.aclose()


async def test_redis_py_default_socket_timeout_is_checked_too(redis_url: str, stream: str) -> None:
    client = aioredis.Redis.from_url(redis_url)  # redis-py's default socket_timeout (5 s)
    try:
        consumer = StreamConsumer(client, stream, "g", "c", RewardBreakdown)
        await consumer.ensure_group()
        with pytest.raises(ValueError, match="socket_timeout of 5 s"):
            await consumer.read(block_ms=6000)
    finally:
        await client.aclose()
