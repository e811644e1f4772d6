"""One LLM request of a trajectory-synthesis stage, parsed strictly into a reply model."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from astra_synth.llm import ChatModel, LLMUsage
from astra_synth.llm_pipeline.ask import Unparseable, parse_reply, render_input

Reply = TypeVar("Reply", bound=BaseModel)


class Asker:
    """Sends (system prompt, JSON input) to the chat model and parses its JSON reply.

    ``ask`` raises ``Unparseable`` for a malformed reply and lets the model's ``LLMError``
    through; callers count either as a rejection of the item (``LLMUnavailable`` ends a job).
    """

    def __init__(
        self,
        llm: ChatModel,
        *,
        temperature: float = 0.7,
        judge_temperature: float = 0.0,
        max_tokens: int = 1024,
        usage: LLMUsage | None = None,
    ) -> None:
        self.llm = llm
        self.temperature = temperature
        self.judge_temperature = judge_temperature
        self.max_tokens = max_tokens
        self.usage = usage or LLMUsage()

    async def ask(
        self,
        stage: str,
        system: str,
        payload: dict[str, Any],
        model: type[Reply],
        *,
        judge: bool = False,
        sample: int = 0,
    ) -> Reply:
        """The reply to one request, parsed into ``model``.

        ``sample`` distinguishes repeated samples of one request (votes), so a request cache
        does not answer them all with one reply.
        """
        body = dict(payload, sample=sample) if sample else payload
        completion = await self.llm.complete(
            [
                {"role": "system", "content": system},
                {"role": "user", "content": render_input(body)},
            ],
            temperature=self.judge_temperature if judge else self.temperature,
            max_tokens=self.max_tokens,
            response_format={"type": "json_object"},
        )
        self.usage.record(completion, stage)
        try:
            return parse_reply(completion.text, model)
        except Unparseable as exc:
            raise Unparseable(f"{stage}: {exc}", completion.text) from None
