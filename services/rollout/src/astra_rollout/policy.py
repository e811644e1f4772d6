"""The policy: an OpenAI-compatible chat-completions endpoint (vLLM), with tools and retries.

One shared ``httpx.AsyncClient`` serves every episode (building a client costs ~20 ms). Where
the server returns token ids and logprobs (vLLM with ``return_token_ids`` and ``logprobs``),
they come back on the ``Completion``; tool calls come from the server's parser, or from
``<tool_call>`` blocks in the text when the server returned raw text.

Plain ``http://`` endpoints are posted to over a lean keep-alive HTTP/1.1 connection pool of
the client's own (``policy_http.ConnectionPool``) instead of through ``httpx``: at 256 episodes in
flight, httpcore's pool spends most of the rollout's CPU scanning its connections on every
request. The requests are the same bytes ``httpx`` sends (its default headers, the same JSON
encoding); failures are raised as the same ``httpx`` exception types, so retries, timeouts
and errors do not change. ``https://`` URLs, and a shared client with a transport, proxy,
auth, params or event hooks of its own, keep going through ``httpx``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from astra_common.retry import (
    HttpRetriesExhausted,
    HttpRetryPolicy,
    RetryableReply,
    is_retryable_status,
    retry_http,
)
from astra_proto import FunctionCall, Message, ToolCall, ToolSpec
from astra_proto.api.rollout import SamplingParams
from astra_rollout.policy_http import ConnectionPool, RawResponse, bypasses_nothing, encode_json
from astra_rollout.tool_call_text import has_tool_call_text, parse_tool_call_text

INVALID_CALL_NAME = "invalid_tool_call"
"""Name given to a ``<tool_call>`` block whose name could not be read."""

NONFINITE_LOGPROB = -9999.0
"""Stands in for a logprob the server reported as -inf or NaN (JSON cannot carry them)."""


class PolicyError(Exception):
    """The policy endpoint failed (after retries, where retrying made sense)."""


@dataclass(slots=True)
class Completion:
    """One assistant turn as the policy produced it.

    ``call_errors`` maps the id of each tool call that could not be read to why; such calls
    are answered with that error instead of being run. Token arrays are None when the server
    returned none; ``logprobs`` is aligned with ``completion_token_ids``.
    """

    message: Message
    finish_reason: str | None
    call_errors: dict[str, str] = field(default_factory=dict)
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    parsed_from_text: bool = False
    seconds: float = 0.0
    attempts: int = 1


@dataclass(slots=True)
class PolicyClient:
    """Chat completions against ``base_url`` (``.../v1``) for ``model``, over a shared client.

    ``direct_http`` posts plain ``http://`` URLs over the lean connection pool (see the
    module docstring; False: always through ``http``). ``max_connections`` caps that pool's
    connections (a request waits for a free one, up to ``timeout_s``); ``keepalive_expiry_s``
    closes those left idle that long, below the usual server keep-alive timeout (uvicorn's is
    5 s). ``aclose`` closes them at once; without it they close themselves when idle.
    """

    http: httpx.AsyncClient
    base_url: str
    model: str
    api_key: str | None = None
    request_token_ids: bool = True
    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    timeout_s: float = 300.0
    direct_http: bool = True
    max_connections: int = 1024
    keepalive_expiry_s: float = 4.0
    _pool: ConnectionPool | None = field(default=None, init=False, repr=False, compare=False)
    _routed: bool = field(default=False, init=False, repr=False, compare=False)

    async def complete(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        sampling: SamplingParams,
        turn: int = 0,
    ) -> Completion:
        """The next assistant message for ``messages`` with ``tools`` offered.

        Retries connection errors, timeouts and the statuses ``is_retryable_status`` admits
        (429, most 5xx) ``retries`` times, by the shared HTTP retry policy (exponential backoff
        from ``backoff_s`` with jitter, or the server's ``Retry-After``, each wait at most
        ``max_backoff_s``); raises ``PolicyError`` when they run out, on any other status
        (with the server's message) and on a reply that is not a chat completion.
        """
        body = self.request_body(messages, tools, sampling)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        url = self.base_url.rstrip("/") + "/chat/completions"
        pool = self._direct_pool(url, headers)
        content = encode_json(body) if pool is not None else b""
        started = time.perf_counter()

        async def post() -> httpx.Response | RawResponse:
            reply: httpx.Response | RawResponse
            if pool is None:
                reply = await self.http.post(
                    url, json=body, headers=headers, timeout=self.timeout_s
                )
            else:
                reply = await pool.post(content, self.timeout_s)
                if reply.is_redirect and self.http.follow_redirects:
                    reply = await self.http.post(  # httpx knows how to follow it
                        url, json=body, headers=headers, timeout=self.timeout_s
                    )
            if reply.status_code == 200:
                return reply
            failure = f"HTTP {reply.status_code}: {reply.text[:500]}"
            if not is_retryable_status(reply.status_code):
                raise PolicyError(f"policy endpoint {url} refused the request: {failure}")
            raise RetryableReply(failure, reply)

        try:
            sent = await retry_http(
                post, policy=self._retry_policy(), what=f"policy endpoint {url}"
            )
        except HttpRetriesExhausted as exc:
            raise PolicyError(str(exc)) from None
        response = sent.value
        try:
            payload = response.json()
        except ValueError as exc:
            raise PolicyError(f"policy endpoint {url} returned non-JSON: {exc}") from None
        completion = parse_completion(payload, turn)
        completion.seconds = time.perf_counter() - started
        completion.attempts = sent.attempts
        return completion

    def _retry_policy(self) -> HttpRetryPolicy:
        return HttpRetryPolicy(
            retries=self.retries, backoff_s=self.backoff_s, max_backoff_s=self.max_backoff_s
        )

    async def aclose(self) -> None:
        """Close the lean path's pooled connections (the shared ``http`` client stays open);
        a later request opens new ones."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._routed = False

    def _direct_pool(self, url: str, headers: dict[str, str] | None) -> ConnectionPool | None:
        """The lean pool for ``url``, or None where requests must go through ``http``."""
        if self.http.is_closed:
            return None  # httpx then refuses the request, as it did before
        loop = asyncio.get_running_loop()
        if self._routed and (self._pool is None or self._pool.loop is loop):
            return self._pool
        self._routed = True
        old, self._pool = self._pool, None
        if old is not None and not old.loop.is_closed():  # another loop's: of no use here
            old.loop.call_soon_threadsafe(old.close)
        target = httpx.URL(url)
        if self.direct_http and bypasses_nothing(self.http, target):
            self._pool = ConnectionPool(
                loop,
                target,
                [
                    *self.http.headers.raw,
                    *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
                ],
                max_connections=self.max_connections,
                keepalive_expiry_s=self.keepalive_expiry_s,
            )
        return self._pool

    def request_body(
        self, messages: list[Message], tools: list[ToolSpec], sampling: SamplingParams
    ) -> dict[str, Any]:
        """The JSON body ``complete`` posts for these arguments."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [wire_message(m) for m in messages],
            **sampling.model_dump(exclude_none=True),
        }
        if tools:
            body["tools"] = [t.to_openai() for t in tools]
            body["tool_choice"] = "auto"
        if self.request_token_ids:
            body["logprobs"] = True
            body["return_token_ids"] = True
        return body


def wire_message(message: Message) -> dict[str, Any]:
    """A message as the chat-completions API takes it (assistant content never missing)."""
    data = message.model_dump(exclude_none=True)
    if message.role == "assistant" and "content" not in data:
        data["content"] = ""
    return data


def parse_completion(payload: Any, turn: int) -> Completion:
    """Read a chat-completion response body; raises ``PolicyError`` when it is not one."""
    try:
        choice = payload["choices"][0]
        raw = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise PolicyError("policy reply has no choices[0].message") from None
    content = raw.get("content")
    call_errors: dict[str, str] = {}
    tool_calls: list[ToolCall] = []
    for index, call in enumerate(raw.get("tool_calls") or []):
        function = call.get("function") or {}
        name = function.get("name") or INVALID_CALL_NAME
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some servers send an object, not a JSON string
            arguments = json.dumps(arguments)
        call_id = call.get("id") or f"call_{turn}_{index}"
        tool_calls.append(
            ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments or "{}"))
        )
        if name == INVALID_CALL_NAME:
            call_errors[call_id] = "tool call has no function name"
    parsed_from_text = False
    if not tool_calls and has_tool_call_text(content):
        parsed_from_text = True
        content, text_calls = parse_tool_call_text(content or "")
        for index, text_call in enumerate(text_calls):
            call_id = f"call_{turn}_{index}"
            tool_calls.append(
                ToolCall(
                    id=call_id,
                    function=FunctionCall(
                        name=text_call.name or INVALID_CALL_NAME, arguments=text_call.arguments
                    ),
                )
            )
            if text_call.error:
                call_errors[call_id] = text_call.error
    message = Message(role="assistant", content=content or None, tool_calls=tool_calls or None)
    usage = payload.get("usage") or {}
    token_ids = choice.get("token_ids")
    return Completion(
        message=message,
        finish_reason=choice.get("finish_reason"),
        call_errors=call_errors,
        prompt_token_ids=_int_list(payload.get("prompt_token_ids")),
        completion_token_ids=_int_list(token_ids),
        logprobs=_logprobs(choice.get("logprobs")),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        parsed_from_text=parsed_from_text,
    )


def _int_list(value: Any) -> list[int] | None:
    # the element types, not each element: prompts echo thousands of ids every turn
    if isinstance(value, list) and all(issubclass(t, int) for t in set(map(type, value))):
        return list(value)
    return None


def _logprobs(value: Any) -> list[float] | None:
    """Per-token logprobs from OpenAI's ``logprobs.content`` list, non-finite values replaced."""
    if not isinstance(value, dict) or not isinstance(value.get("content"), list):
        return None
    out: list[float] = []
    for entry in value["content"]:
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        if not isinstance(logprob, int | float):
            return None
        out.append(float(logprob) if math.isfinite(logprob) else NONFINITE_LOGPROB)
    return out
