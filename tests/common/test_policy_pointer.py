"""The one reader of the ``astra:policy`` pointer, against a real Redis server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from astra_common.policy_pointer import PolicyPointerUnreadable, read_policy_pointer
from astra_proto import POLICY_KEY
from astra_trainer.app import create_app as create_trainer
from astra_trainer.publish import publish_policy
from astra_trainer.settings import TrainerSettings


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the run's Redis with ``astra:policy`` unset before and after the test."""
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(POLICY_KEY)
    try:
        yield client
    finally:
        await client.delete(POLICY_KEY)
        await client.aclose()


async def test_no_pointer_before_a_policy_is_published(redis: aioredis.Redis) -> None:
    assert await read_policy_pointer(redis) is None


async def test_reads_what_the_trainer_publishes(redis: aioredis.Redis, tmp_path: Path) -> None:
    published = await publish_policy(
        redis,
        version=5,
        checkpoint=tmp_path / "step-5",
        base_model="smol",
        served_model="policy",
        push=None,
    )
    assert await read_policy_pointer(redis) == published


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (b"", "Invalid JSON"),
        (b"not json", "Invalid JSON"),
        (b'{"version": -1, "checkpoint_uri": "file:///c", "base_model": "m"}', "version"),
        (b'{"version": 1}', "checkpoint_uri: Field required"),
    ],
)
async def test_a_damaged_pointer_is_an_error_that_names_the_key(
    redis: aioredis.Redis, stored: bytes, problem: str
) -> None:
    await redis.set(POLICY_KEY, stored)
    with pytest.raises(PolicyPointerUnreadable, match=POLICY_KEY) as raised:
        await read_policy_pointer(redis)
    assert problem in str(raised.value)


async def test_the_trainer_api_answers_a_damaged_pointer_with_what_is_wrong(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    app = create_trainer(
        TrainerSettings(
            redis_url=redis_url,
            checkpoint_dir=tmp_path / "checkpoints",
            model_dir=tmp_path / "models",
        )
    )
    await redis.set(POLICY_KEY, b'{"version": "three"}')
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        answer = await client.get("/v1/policy")
    assert answer.status_code == 500
    assert answer.json()["detail"].startswith(f"{POLICY_KEY} does not hold a policy pointer")
