"""The shared HTTP retry policy against a real local HTTP server that fails, then answers,
on its own and through the clients that use it."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from astra_common.retry import (
    HttpRetriesExhausted,
    HttpRetryPolicy,
    RetryableReply,
    is_retryable_status,
    retry_http,
)
from astra_proto import Message
from astra_proto.api.rollout import SamplingParams
from astra_rollout.policy import PolicyClient
from astra_synth.llm.openai_chat import OpenAIChatModel

FAST = HttpRetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)


@dataclass
class ScriptedServer:
    """Answers the n-th request with the n-th reply of ``replies`` (the last one repeats)."""

    replies: list[tuple[int, dict[str, str], bytes]]
    url: str = ""
    requests: int = 0
    paths: list[str] = field(default_factory=list)


@asynccontextmanager
async def scripted(*replies: tuple[int, dict[str, str], bytes]) -> AsyncIterator[ScriptedServer]:
    """A real HTTP/1.1 server on a loopback port, one request per connection."""
    state = ScriptedServer(list(replies))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            state.paths.append(head[0].split(" ")[1])
            status, headers, body = state.replies[min(state.requests, len(state.replies) - 1)]
            state.requests += 1
            extra = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
            writer.write(
                f"HTTP/1.1 {status} X\r\nconnection: close\r\n{extra}"
                f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/thing"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


class Refused(Exception):
    """A caller's own error for a final reply."""


def poster(http: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[httpx.Response]]:
    """A request function that classifies replies as callers do."""

    async def post() -> httpx.Response:
        reply = await http.post(url, json={"q": 1})
        if reply.status_code == 200:
            return reply
        problem = f"HTTP {reply.status_code}: {reply.text}"
        if is_retryable_status(reply.status_code):
            raise RetryableReply(problem, reply)
        raise Refused(problem)

    return post


async def test_failures_are_retried_until_the_server_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="astra.retry")
    busy = (503, {"retry-after": "0"}, b"busy")
    async with (
        scripted(busy, (502, {}, b"gateway"), (200, {}, b"done")) as server,
        httpx.AsyncClient(timeout=30) as http,
    ):
        sent = await retry_http(poster(http, server.url), policy=FAST, what="the thing")
    assert (sent.value.status_code, sent.value.text, sent.attempts) == (200, "done", 3)
    assert server.requests == 3
    retries = [r.getMessage() for r in caplog.records if "the thing failed" in r.getMessage()]
    assert len(retries) == 2
    assert "HTTP 503: busy" in retries[0]


async def test_retries_run_out_with_the_last_failure_and_attempt_count() -> None:
    async with (
        scripted((503, {}, b"busy"), (502, {}, b"bad gateway")) as server,
        httpx.AsyncClient(timeout=30) as http,
    ):
        with pytest.raises(HttpRetriesExhausted) as raised:
            await retry_http(poster(http, server.url), policy=FAST, what="the thing")
    assert str(raised.value) == "the thing failed after 4 attempts: HTTP 502: bad gateway"
    assert raised.value.attempts == 4
    assert isinstance(raised.value.last_error, RetryableReply)
    assert server.requests == 4


async def test_a_final_reply_is_not_retried() -> None:
    async with (
        scripted((400, {}, b"bad request"), (200, {}, b"done")) as server,
        httpx.AsyncClient(timeout=30) as http,
    ):
        with pytest.raises(Refused, match="HTTP 400: bad request"):
            await retry_http(poster(http, server.url), policy=FAST, what="the thing")
    assert server.requests == 1


async def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(timeout=30) as http:
        with pytest.raises(HttpRetriesExhausted, match="after 3 attempts: ConnectError"):
            await retry_http(
                poster(http, f"http://127.0.0.1:{port}/v1"),
                policy=HttpRetryPolicy(retries=2, backoff_s=0.01),
                what="nothing",
            )


async def test_an_unsupported_url_scheme_is_not_retried() -> None:
    calls = 0
    async with httpx.AsyncClient(timeout=30) as http:

        async def post() -> httpx.Response:
            nonlocal calls
            calls += 1
            return await http.get("gopher://127.0.0.1/")

        with pytest.raises(httpx.UnsupportedProtocol):
            await retry_http(post, policy=FAST, what="gopher")
    assert calls == 1


def test_retry_after_is_honoured_up_to_the_cap_and_backoff_doubles_with_jitter() -> None:
    policy = HttpRetryPolicy(retries=5, backoff_s=1.0, max_backoff_s=8.0)
    hinted = RetryableReply("busy", httpx.Response(503, headers={"retry-after": "3"}))
    too_long = RetryableReply("busy", httpx.Response(503, headers={"retry-after": "3600"}))
    dated = RetryableReply("busy", httpx.Response(503, headers={"retry-after": "Wed, 1 Jan"}))
    assert policy.wait_s(1, hinted) == 3.0
    assert policy.wait_s(1, too_long) == 8.0
    for retry, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        for error in (None, dated, httpx.ConnectError("refused")):
            assert full / 2 <= policy.wait_s(retry, error) <= full


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (409, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
        (400, False),
        (401, False),
        (404, False),
        (422, False),
        (501, False),
        (505, False),
    ],
)
def test_which_statuses_are_worth_retrying(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_a_negative_retry_count_is_refused() -> None:
    with pytest.raises(ValueError, match="retries must be >= 0"):
        HttpRetryPolicy(retries=-1)


COMPLETION = json.dumps(
    {
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
).encode()
BUSY_NOW_FREE: tuple[tuple[int, dict[str, str], bytes], ...] = (
    (503, {"retry-after": "0"}, b"busy"),
    (200, {}, COMPLETION),
)


def _retry_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "astra.retry" and what in r.getMessage()
    ]


async def test_the_rollout_policy_client_retries_by_the_shared_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="astra.retry")
    async with scripted(*BUSY_NOW_FREE) as server, httpx.AsyncClient(timeout=30) as http:
        base = server.url.removesuffix("/thing")
        client = PolicyClient(http=http, base_url=base, model="m", backoff_s=30.0)
        try:
            completion = await client.complete(
                [Message(role="user", content="hi")], [], SamplingParams(max_tokens=4)
            )
        finally:
            await client.aclose()
    assert (completion.message.content, completion.attempts) == ("hi", 2)
    (line,) = _retry_lines(caplog, "policy endpoint")
    assert "HTTP 503: busy" in line
    assert line.endswith("retrying in 0.0 s")  # the server's Retry-After, not the 30 s backoff


async def test_the_synth_llm_client_retries_by_the_shared_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="astra.retry")
    async with scripted(*BUSY_NOW_FREE) as server:
        base = server.url.removesuffix("/thing")
        async with OpenAIChatModel(base, "m", backoff_s=30.0, max_backoff_s=60.0) as llm:
            completion = await llm.complete(
                [{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=4
            )
    assert (completion.text, llm.http_requests) == ("hi", 2)
    (line,) = _retry_lines(caplog, "LLM endpoint")
    assert "HTTP 503: busy" in line
    assert line.endswith("retrying in 0.0 s")
