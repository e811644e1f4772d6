"""Throughput of the trajectory stream library against raw redis-py on the same Redis.

    .venv/bin/python bench/streams.py [--records 20000] [--batch 100]

Starts a private redis-server, then measures in one run:
- publish: raw pipelined XADD of the same JSON (baseline) vs ``StreamPublisher``
  (Lua de-duplication per entry, pipelined batches);
- consume: raw XREADGROUP + XACK (baseline), the same plus parsing each entry into the
  typed envelope (what any typed consumer must do), and ``StreamConsumer.read`` (typed parsing,
  done-mark check) + ``ack`` (MULTI with done-marks).
Prints records/s and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from astra.redis_server import RedisServer
from astra_common.streams import StreamConsumer, StreamPublisher
from astra_proto import FinishReason, Message, StreamEnvelope, Timings, ToolSpec, Trajectory


def trajectory(index: int) -> Trajectory:
    now = datetime.now(UTC)
    return Trajectory(
        id=f"traj-{index}-{uuid.uuid4().hex[:8]}",
        env_id="env_" + "0" * 32,
        group_id=f"g{index // 8}",
        policy_version=1,
        messages=[
            Message(role="user", content="What is the forecast for Paris tomorrow?"),
            Message(role="assistant", content="Sunny, 21 degrees."),
        ],
        tools=[ToolSpec(name="get_forecast", description="Forecast for a city.")],
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=1,
        timings=Timings(started_at=now, finished_at=now),
    )


async def bench(url: str, records: int, batch: int) -> None:
    client = aioredis.Redis.from_url(url)
    envelopes = [
        StreamEnvelope[Trajectory](record_id=t.id, payload=t)
        for t in (trajectory(i) for i in range(records))
    ]
    payloads = [e.model_dump_json() for e in envelopes]

    raw_stream, lib_stream = f"bench:raw:{uuid.uuid4().hex}", f"bench:lib:{uuid.uuid4().hex}"
    started = time.perf_counter()
    for offset in range(0, records, batch):
        pipe = client.pipeline(transaction=False)
        for data in payloads[offset : offset + batch]:
            pipe.xadd(raw_stream, {"data": data})
        await pipe.execute()
    raw_publish = records / (time.perf_counter() - started)

    started = time.perf_counter()
    async with StreamPublisher(client, lib_stream, batch_size=batch) as publisher:
        for offset in range(0, records, batch):
            await publisher.publish_many(envelopes[offset : offset + batch])
    lib_publish = records / (time.perf_counter() - started)

    await client.xgroup_create(raw_stream, "g", id="0")
    started = time.perf_counter()
    consumed = 0
    while consumed < records:
        reply: Any = await client.xreadgroup("g", "c", {raw_stream: ">"}, count=batch)
        ids = [entry_id for _, entries in reply for entry_id, _ in entries]
        if ids:
            await client.xack(raw_stream, "g", *ids)
        consumed += len(ids)
    raw_consume = records / (time.perf_counter() - started)

    parse_stream = f"bench:parse:{uuid.uuid4().hex}"
    for offset in range(0, records, batch):
        pipe = client.pipeline(transaction=False)
        for data in payloads[offset : offset + batch]:
            pipe.xadd(parse_stream, {"data": data})
        await pipe.execute()
    await client.xgroup_create(parse_stream, "g", id="0")
    envelope_type = StreamEnvelope[Trajectory]
    started = time.perf_counter()
    consumed = 0
    while consumed < records:
        reply = await client.xreadgroup("g", "c", {parse_stream: ">"}, count=batch)
        entries = [entry for _, batch_entries in reply for entry in batch_entries]
        for _, fields in entries:
            envelope_type.model_validate_json(fields[b"data"])
        if entries:
            await client.xack(parse_stream, "g", *(entry_id for entry_id, _ in entries))
        consumed += len(entries)
    parse_consume = records / (time.perf_counter() - started)

    consumer = StreamConsumer(client, lib_stream, "g", "c", Trajectory)
    await consumer.ensure_group()
    started = time.perf_counter()
    consumed = 0
    while consumed < records:
        deliveries = await consumer.read(count=batch)
        await consumer.ack(deliveries)
        consumed += len(deliveries)
    lib_consume = records / (time.perf_counter() - started)
    await client.aclose()

    print(f"records: {records}, batch: {batch}")
    print(f"{'':28}{'records/s':>12}{'vs raw':>10}")
    print(f"{'publish, raw XADD':28}{raw_publish:12.0f}{1.0:10.2f}")
    print(f"{'publish, StreamPublisher':28}{lib_publish:12.0f}{lib_publish / raw_publish:10.2f}")
    print(f"{'consume, raw XREADGROUP':28}{raw_consume:12.0f}{1.0:10.2f}")
    print(
        f"{'consume, raw + model parse':28}{parse_consume:12.0f}{parse_consume / raw_consume:10.2f}"
    )
    print(f"{'consume, StreamConsumer':28}{lib_consume:12.0f}{lib_consume / raw_consume:10.2f}")
    print(f"StreamConsumer vs raw + model parse: {lib_consume / parse_consume:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory=Path(directory)).start()
        try:
            asyncio.run(bench(server.url, args.records, args.batch))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
