"""What a chat model is to the synthesis pipeline: the protocol, its result, its errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Completion:
    """One chat completion: the assistant's text and what it cost.

    ``cached`` is True when the answer came from the cache (no request was made); the token
    counts are then those of the original request.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


class ChatModel(Protocol):
    """An OpenAI-compatible chat model, seen as one async call."""

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        """The assistant's reply to ``messages``.

        Raises ``LLMUnavailable`` when the endpoint cannot be used (after retries), and
        ``LLMRequestRejected`` when it refuses this one request (HTTP 400, 413, 422).
        """
        ...


class LLMError(Exception):
    """A chat model could not answer."""


class LLMUnavailable(LLMError):
    """The endpoint is unreachable, keeps failing, or refuses every request (bad key, model or
    URL): the whole job cannot go on. The message says why and what was tried."""


class LLMRequestRejected(LLMError):
    """The endpoint refused this one request (e.g. a prompt over the context length); other
    requests may still succeed."""


@dataclass
class LLMUsage:
    """Counts of chat calls and tokens. Cached calls are counted apart: they cost nothing."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)

    def record(self, completion: Completion, stage: str | None = None) -> None:
        """Count one completion (under ``stage`` too, when given)."""
        if completion.cached:
            self.cached_calls += 1
        else:
            self.calls += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
        if stage is not None:
            self.by_stage[stage] = self.by_stage.get(stage, 0) + 1

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens of the calls that were made (cache hits excluded)."""
        return self.prompt_tokens + self.completion_tokens
