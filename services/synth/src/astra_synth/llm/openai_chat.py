"""``OpenAIChatModel``: any OpenAI-compatible ``/chat/completions`` endpoint, over httpx.

No SDK: one POST per completion, retried by the shared HTTP retry policy
(``astra_common.retry.retry_http``) on connection errors, timeouts, the statuses it deems
transient (429, most 5xx) and a success whose body is not a chat completion; a cache hit makes
no request at all.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

import httpx

from astra_common.retry import (
    HttpRetriesExhausted,
    HttpRetryPolicy,
    RetryableReply,
    describe_failure,
    is_retryable_status,
    retry_http,
)
from astra_synth.llm.cache import LLMCache
from astra_synth.llm.types import Completion, LLMRequestRejected, LLMUnavailable, LLMUsage

_FATAL_STATUS = frozenset({401, 403, 404})
_MAX_BODY_IN_MESSAGE = 300


class OpenAIChatModel:
    """A ``ChatModel`` over an OpenAI-compatible HTTP API.

    ``base_url`` is the API root (``http://host:8000/v1``); requests go to
    ``{base_url}/chat/completions``. ``max_retries`` is the number of retries after the first
    attempt; the wait doubles from ``backoff_s`` (with jitter) up to ``max_backoff_s`` (a
    ``Retry-After`` header is honoured within that cap). ``transport`` replaces the network (tests).
    ``usage`` counts the calls made and the cache hits.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        cache: LLMCache | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.cache = cache
        self._retry = HttpRetryPolicy(
            retries=max_retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self.usage = LLMUsage()
        self.http_requests = 0
        """HTTP requests actually sent (retries included)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s), headers=headers, transport=transport
        )

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    def request_body(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON body of the chat-completions request (also the cache key's content)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if response_format is not None:
            body["response_format"] = response_format
        return body

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        """The assistant's reply; from the cache when this exact request was answered before."""
        body = self.request_body(
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            response_format=response_format,
        )
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, body)
            if hit is not None:
                self.usage.record(hit)
                return hit
        completion = await self._post_with_retries(body)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put, body, completion)
        self.usage.record(completion)
        return completion

    async def _post_with_retries(self, body: dict[str, Any]) -> Completion:
        url = f"{self.base_url}/chat/completions"

        async def post() -> Completion:
            self.http_requests += 1
            response = await self._client.post(url, json=body)
            if response.status_code == 200:
                try:
                    return _parse_completion(response)
                except ValueError as exc:
                    raise RetryableReply(f"unreadable response: {exc}") from None
            detail = f"HTTP {response.status_code}: {_short(response.text)}"
            if response.status_code in _FATAL_STATUS:
                raise LLMUnavailable(f"the LLM endpoint {url} refused the request ({detail})")
            if is_retryable_status(response.status_code):
                raise RetryableReply(detail, response)
            raise LLMRequestRejected(f"the LLM endpoint {url} rejected a request ({detail})")

        try:
            return (await retry_http(post, policy=self._retry, what=f"LLM endpoint {url}")).value
        except HttpRetriesExhausted as exc:
            raise LLMUnavailable(
                f"the LLM endpoint {url} (model {self.model!r}) failed "
                f"{exc.attempts} attempts; last error: {describe_failure(exc.last_error)}"
            ) from None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_BODY_IN_MESSAGE else text[:_MAX_BODY_IN_MESSAGE] + "..."


def _parse_completion(response: httpx.Response) -> Completion:
    """Text and token counts of a chat-completions response; ValueError if it is not one."""
    try:
        data = response.json()
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    try:
        message = data["choices"][0]["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ValueError(f"no choices[0].message in {_short(response.text)}") from None
    if content is not None and not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return Completion(
        text=content or "",
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
