"""The synth service's chat model: the OpenAI-compatible endpoint a request names, else the
configured one, with the configured key, retries, timeout and response cache."""

from __future__ import annotations

import os
from pathlib import Path

from astra_synth.llm import LLMCache, OpenAIChatModel
from astra_synth.settings import SynthSettings


class NoLLMConfigured(ValueError):
    """Neither the request nor the settings name an LLM endpoint."""


def chat_model(
    settings: SynthSettings, base_url: str | None = None, model: str | None = None
) -> OpenAIChatModel:
    """A chat model on ``base_url``/``model`` (default: the settings'); use it as an async
    context manager. Raises ``NoLLMConfigured`` when there is no endpoint."""
    url = base_url or settings.llm_base_url
    if not url:
        raise NoLLMConfigured(
            "no LLM endpoint: give llm_base_url, or configure ASTRA_SYNTH_LLM_BASE_URL"
        )
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return OpenAIChatModel(
        url,
        model or settings.llm_model,
        api_key or os.environ.get("OPENAI_API_KEY"),
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        cache=LLMCache(Path(settings.data_dir) / "llm-cache"),
    )


class ChatModels:
    """Open chat models kept per (base URL, model), so a route answering many requests (the
    tool emulator) reuses one HTTP client each instead of building one per request."""

    def __init__(self, settings: SynthSettings) -> None:
        self.settings = settings
        self._models: dict[tuple[str, str], OpenAIChatModel] = {}

    def get(self, base_url: str | None = None, model: str | None = None) -> OpenAIChatModel:
        """The open model for these (default: the settings'); ``NoLLMConfigured`` or
        ``ValueError`` (a base URL that is not http(s)) as ``chat_model`` raises them."""
        key = (base_url or self.settings.llm_base_url, model or self.settings.llm_model)
        if key not in self._models:
            self._models[key] = chat_model(self.settings, *key)
        return self._models[key]

    async def aclose(self) -> None:
        """Close every model's connections."""
        models, self._models = list(self._models.values()), {}
        for model in models:
            await model.aclose()
