"""The one reader of the ``astra:policy`` pointer, against a real Redis server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from astra_common.policy_pointer import PolicyPointerUnreadable, read_policy_pointer
from astra_proto import POLICY_KEY
from astra_trainer.publish import publish_policy


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
