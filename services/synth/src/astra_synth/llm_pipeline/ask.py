"""One stage's LLM call: a system prompt, a JSON input, a reply parsed strictly into a model.

Strict means: the reply must be one JSON object (a whole-reply markdown code fence is the only
wrapping tolerated) that validates against the stage's pydantic model, unknown fields
included. Anything else raises ``Unparseable``: the caller rejects or retries, never passes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from astra_synth.llm import ChatModel, LLMUsage
from astra_synth.llm_pipeline.settings import PipelineSettings

INPUT_HEADER = "INPUT (JSON):\n"
"""Precedes the stage's input in every user message."""

RETRY_REQUEST = "Reply again with corrected JSON only."

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*)\n\s*```$", re.DOTALL)
_MAX_ERROR_CHARS = 600

_Reply = TypeVar("_Reply", bound=BaseModel)


class StageReply(BaseModel):
    """Base of every stage's expected output: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", strict=False)


class Unparseable(Exception):
    """The LLM's reply is not the JSON the stage asked for (the message says how);
    ``reply`` is the text as received."""

    def __init__(self, message: str, reply: str = "") -> None:
        super().__init__(message)
        self.reply = reply


def render_input(payload: dict[str, Any]) -> str:
    """The user message of a stage: its input as indented, key-sorted JSON."""
    return INPUT_HEADER + json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False)


def parse_reply(text: str, model: type[_Reply]) -> _Reply:
    """``text`` as an instance of ``model``; raises ``Unparseable`` with the reason."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise Unparseable(f"the reply is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise Unparseable(f"the reply must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise Unparseable(_cut(f"the reply does not fit the expected fields: {problems}")) from None


class StageAsker:
    """Asks the chat model for one stage's JSON, with the pipeline's sampling settings, and
    counts every call under its stage name in ``usage``. ``last_reply`` is the text of the
    latest reply it received (what a rejection shows as its excerpt)."""

    def __init__(self, llm: ChatModel, settings: PipelineSettings, usage: LLMUsage) -> None:
        self.llm = llm
        self.settings = settings
        self.usage = usage
        self.last_reply = ""

    def for_item(self) -> StageAsker:
        """An asker for one item: same model, settings and usage, its own ``last_reply``."""
        return StageAsker(self.llm, self.settings, self.usage)

    async def ask(
        self,
        stage: str,
        system: str,
        payload: dict[str, Any],
        model: type[_Reply],
        *,
        judge: bool = False,
        history: Sequence[tuple[str, str]] = (),
    ) -> _Reply:
        """The parsed reply (see ``ask_text``)."""
        parsed, _ = await self.ask_text(stage, system, payload, model, judge=judge, history=history)
        return parsed

    async def ask_text(
        self,
        stage: str,
        system: str,
        payload: dict[str, Any],
        model: type[_Reply],
        *,
        judge: bool = False,
        history: Sequence[tuple[str, str]] = (),
    ) -> tuple[_Reply, str]:
        """The parsed reply and its text.

        ``history`` holds (earlier reply, why it was refused) pairs of this same request:
        they are replayed so the model can correct itself (and so a retry is a different
        request, with its own cache entry).

        Raises ``Unparseable``; the chat model's errors pass through.
        """
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": render_input(payload)},
        ]
        for reply, problem in history:
            messages.append({"role": "assistant", "content": reply})
            messages.append(
                {
                    "role": "user",
                    "content": f"That was refused: {problem}\n{RETRY_REQUEST}",
                }
            )
        self.last_reply = ""  # a request refused outright has no reply to show
        completion = await self.llm.complete(
            messages,
            temperature=self.settings.judge_temperature if judge else self.settings.temperature,
            max_tokens=self.settings.max_tokens,
            response_format={"type": "json_object"} if self.settings.json_mode else None,
        )
        self.usage.record(completion, stage)
        self.last_reply = completion.text
        try:
            return parse_reply(completion.text, model), completion.text
        except Unparseable as exc:
            raise Unparseable(str(exc), completion.text) from None


def cut(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """``text`` shortened to ``limit`` characters for feedback and rejection details."""
    return _cut(text, limit)


def _cut(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
