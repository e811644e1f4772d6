"""A GRPO run against Redis faults (real SmolLM2, real Redis servers of the tests' own): its
reads outlast a stalled Redis, it rides out a restart and a lost read reply, and it fails with
the reason when Redis stays down."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError
from trainer_support import MODEL_CACHE, model_store, publish_trajectories, text_only_group

from astra.redis_server import RedisServer, free_port
from astra_common.streams import StreamConsumer
from astra_proto import POLICY_KEY, Trajectory
from astra_trainer.app import create_app
from astra_trainer.grpo.checkpoint import CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.runner import CHECKPOINT_DIR, GRPORunner, stream_redis_client
from astra_trainer.models import ModelStore
from astra_trainer.settings import TrainerSettings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RETRY_LOGGER = "astra.retry"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server that keeps its data across a restart (append-only file)."""
    started = RedisServer(directory=tmp_path / "redis", persist=True).start()
    try:
        yield started
    finally:
        started.stop()


def _config(run_dir: Path, redis_url: str, **overrides: Any) -> GRPOConfig:
    values: dict[str, Any] = {
        "run_dir": run_dir,
        "redis_url": redis_url,
        "stream": f"test:traj:{uuid.uuid4().hex[:8]}",
        "group_size": 2,
        "batch_groups": 1,
        "buffer_groups": 0,
        "learning_rate": 1e-5,
        "max_steps": 1,
        "block_ms": 200,
        "max_tokens": 512,
        "save_optimizer": False,
    }
    return GRPOConfig.model_validate(values | overrides)


def _trained(config: GRPOConfig) -> list[str]:
    states = CheckpointStore(config.run_dir / CHECKPOINT_DIR).states()
    return sorted(rid for state in states for rid in state.record_ids)


def _relative(path: Path) -> Path:
    return Path(os.path.relpath(path))


async def _pending(server: RedisServer, config: GRPOConfig) -> int:
    async with aioredis.Redis.from_url(server.url) as client:
        summary: dict[str, Any] = await client.xpending(config.stream, config.group)
        return int(summary["pending"])


def _retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == RETRY_LOGGER and r.levelno == logging.WARNING
    ]


async def test_a_stalled_redis_cuts_off_default_reads_but_not_the_runs(
    server: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path / "run", server.url, block_ms=1000)
    default_client = aioredis.Redis.from_url(server.url)  # redis-py's 5 s socket timeout
    run_client = stream_redis_client(config)
    assert server.process is not None
    try:
        readers = [
            StreamConsumer(client, config.stream, config.group, name, Trajectory)
            for client, name in ((default_client, "default"), (run_client, "run"))
        ]
        await readers[0].ensure_group()
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis stalls, as on a loaded machine
        try:
            reads = [asyncio.create_task(r.read(block_ms=config.block_ms)) for r in readers]
            done, _ = await asyncio.wait(reads, timeout=120, return_when=asyncio.FIRST_COMPLETED)
            assert done == {reads[0]}
            with pytest.raises(RedisTimeoutError, match="Timeout reading from"):
                reads[0].result()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert await asyncio.wait_for(reads[1], timeout=120) == []  # answered after the stall
    finally:
        await default_client.aclose()
        await run_client.aclose()


async def test_a_grpo_run_rides_out_a_redis_restart(
    server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    config = _config(tmp_path / "run", server.url, redis_give_up_s=600)
    redis = stream_redis_client(config)
    # A relative model folder, as the default settings give (.astra/models).
    model_store().ensure_default()
    relative_store = ModelStore(_relative(MODEL_CACHE))
    runner = GRPORunner(config, redis, relative_store)
    run = asyncio.create_task(runner.run())
    try:
        # Reading the stream once the starting policy is published.
        deadline = time.monotonic() + 180
        async with aioredis.Redis.from_url(server.url) as probe:
            while await probe.get(POLICY_KEY) is None:
                assert not run.done(), run.exception()
                assert time.monotonic() < deadline, "the run never published its policy"
                await asyncio.sleep(0.1)

        server.stop()
        deadline = time.monotonic() + 180
        while len(_retries(caplog)) < 4:  # the run keeps retrying while Redis is down
            assert not run.done(), run.exception()
            assert time.monotonic() < deadline, "no retries were logged"
            await asyncio.sleep(0.1)
        server.start()  # same port, same data

        group = text_only_group("after-restart", 2)
        await publish_trajectories(server.url, config.stream, group)
        status = await asyncio.wait_for(run, timeout=300)
    finally:
        if not run.done():
            run.cancel()
        await redis.aclose()
    assert status.state == "finished"
    assert status.step == 1
    assert _trained(config) == sorted(t.id for t in group)
    assert await _pending(server, config) == 0
    assert any("read the stream" in line for line in _retries(caplog))


async def test_entries_of_a_lost_read_reply_are_still_trained(
    server: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path / "run", server.url)
    group = text_only_group("lost-reply", 2)
    await publish_trajectories(server.url, config.stream, group)
    redis = stream_redis_client(config)
    runner = GRPORunner(config, redis, model_store())
    read = runner.consumer.read
    lost: list[str] = []

    async def read_losing_one_reply(count: int = 100, block_ms: int | None = None) -> Any:
        deliveries = await read(count=count, block_ms=block_ms)
        if deliveries and not lost:
            # Redis delivered these, but the reply never arrived (as with a socket timeout).
            lost.extend(d.record_id for d in deliveries)
            raise RedisTimeoutError("Timeout reading from the test's Redis")
        return deliveries

    runner.consumer.read = read_losing_one_reply  # type: ignore[method-assign]
    try:
        status = await asyncio.wait_for(runner.run(), timeout=300)
    finally:
        await redis.aclose()
    assert sorted(lost) == sorted(t.id for t in group)
    assert status.state == "finished"
    assert _trained(config) == sorted(t.id for t in group)
    assert await _pending(server, config) == 0


async def test_a_run_fails_with_the_reason_when_redis_stays_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="astra_trainer.runs")
    model_store().ensure_default()
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app(
        TrainerSettings(redis_url=nobody, checkpoint_dir=tmp_path, model_dir=MODEL_CACHE)
    )
    runs = app.state.runs
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://trainer") as client:
            started = await client.post(
                "/v1/runs/grpo", json={"redis_give_up_s": 3, "redis_timeout_s": 2}
            )
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            assert runs.wait(run_id, timeout=240) == 1
            status = (await client.get(f"/v1/runs/{run_id}")).json()
    finally:
        runs.close()
    assert status["state"] == "failed"
    assert "redis_give_up_s" in status["error"]
    assert "ConnectionError" in status["error"]
    log = (tmp_path / run_id / "train.log").read_text()
    assert "Traceback" in log
    assert "retrying in" in log  # every failed attempt was logged
    service_log = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(run_id in line and "Traceback" in line for line in service_log)
