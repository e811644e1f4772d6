"""Chat models for synthesis: the ``ChatModel`` protocol, an OpenAI-compatible HTTP client
with retries, and a file cache keyed by request content. See docs/synth-llm.md."""

from astra_synth.llm.cache import LLMCache, request_key
from astra_synth.llm.openai_chat import OpenAIChatModel
from astra_synth.llm.types import (
    ChatModel,
    Completion,
    LLMError,
    LLMRequestRejected,
    LLMUnavailable,
    LLMUsage,
)

__all__ = [
    "ChatModel",
    "Completion",
    "LLMCache",
    "LLMError",
    "LLMRequestRejected",
    "LLMUnavailable",
    "LLMUsage",
    "OpenAIChatModel",
    "request_key",
]
