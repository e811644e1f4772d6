"""The shared retry policy against a real Redis server that goes away and comes back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import sqlalchemy.exc
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from astra.redis_server import RedisServer
from astra_common.retry import is_transient, retry_transient

RETRY_LOGGER = "astra.retry"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, which the test may stop and start again."""
    started = RedisServer(directory=tmp_path / "redis").start()
    try:
        yield started
    finally:
        started.stop()


def _client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url, socket_timeout=10, socket_connect_timeout=10)


def _retries(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == RETRY_LOGGER and r.levelno == logging.WARNING and what in r.getMessage()
    ]


async def test_a_call_outlives_a_redis_restart(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    client = _client(server)
    try:
        assert await client.ping()
        server.stop()
        call = asyncio.create_task(
            retry_transient(lambda: client.incr("count"), what="count calls", give_up_after_s=300)
        )
        deadline = time.monotonic() + 60
        while len(_retries(caplog, "count calls")) < 2:
            assert not call.done(), call.exception()
            assert time.monotonic() < deadline, "no retries were logged"
            await asyncio.sleep(0.05)
        server.start()  # the same port
        assert await asyncio.wait_for(call, timeout=120) == 1
    finally:
        await client.aclose()
    logged = _retries(caplog, "count calls")
    assert "ConnectionError" in logged[0]
    assert "retrying in" in logged[0]


async def test_a_fault_that_persists_fails_after_the_limit(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    client = _client(server)
    server.stop()
    try:
        with pytest.raises(RedisConnectionError):
            await retry_transient(client.ping, what="ping", give_up_after_s=1.0)
    finally:
        await client.aclose()
    assert _retries(caplog, "ping")
    assert any(
        "ping: giving up" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


async def test_an_error_that_will_not_pass_is_raised_at_once(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    client = _client(server)
    attempts = 0

    async def push_onto_a_string() -> int:
        nonlocal attempts
        attempts += 1
        result: int = await client.lpush("text", "x")
        return result

    try:
        await client.set("text", "not a list")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await retry_transient(push_onto_a_string, what="push", give_up_after_s=60)
    finally:
        await client.aclose()
    assert attempts == 1
    assert not _retries(caplog, "push")


def test_which_errors_are_transient() -> None:
    assert is_transient(RedisConnectionError("Connection refused"))
    assert is_transient(ResponseError("LOADING Redis is loading the dataset in memory"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone")))
    assert not is_transient(ResponseError("WRONGTYPE Operation against a key"))
    assert not is_transient(ValueError("bad input"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup")))
