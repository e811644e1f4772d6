"""The LLM tool emulator over REST: ``POST /v1/emulate`` answers one call of a tool known only
by its document (teacher runs of the rollout service send the calls of document-only servers
here). Stateless: each request carries the trajectory's recent calls and the call's position,
so a call's injected failure is the same whichever replica answers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Self

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import ToolSpec
from astra_synth.llm import LLMError
from astra_synth.llm_endpoint import ChatModels
from astra_synth.llm_pipeline.ask import Unparseable
from astra_synth.trajectories.emulator import HISTORY, EmulatedCall, ToolEmulator
from astra_synth.trajectories.models import ToolServer


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmulatedServer(_Strict):
    """The server's documents."""

    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=20_000)
    tools: list[ToolSpec] = Field(min_length=1, max_length=1_000)


class PastCall(_Strict):
    """One earlier call of the trajectory and what it returned."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    error: str | None = None


class EmulateRequest(_Strict):
    """One call to emulate, with the trajectory's recent calls (the last five are shown to the
    LLM) and its position ``index`` among all the trajectory's calls."""

    server: EmulatedServer
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)
    history: list[PastCall] = Field(default_factory=list, max_length=50)
    index: int = Field(default=0, ge=0)
    seed: int = 0
    failure_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    llm_base_url: str | None = Field(default=None, max_length=2_000)
    llm_model: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _position(self) -> Self:
        if self.index < len(self.history):
            raise ValueError("index counts every earlier call, so it is at least len(history)")
        return self


class EmulateReply(_Strict):
    """The call's output, or its error (``injected``: failed on purpose)."""

    output: Any = None
    error: str | None = None
    injected: bool = False


def emulate_router(models: ChatModels, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """The emulator route (it spends LLM calls: the bearer token protects it when set); the
    chat models come from ``models``, open for the app's life."""
    router = APIRouter(tags=["trajectories"])

    @router.post(
        "/emulate", dependencies=[Depends(auth)], summary="Emulate one call of a documented tool"
    )
    async def emulate(body: EmulateRequest) -> EmulateReply:
        history = [
            EmulatedCall(c.tool, c.arguments, c.output, c.error) for c in body.history[-HISTORY:]
        ]
        server = ToolServer(
            name=body.server.name,
            description=body.server.description,
            source="json",
            tools=body.server.tools,
        )
        try:
            emulator = ToolEmulator(
                models.get(body.llm_base_url, body.llm_model),
                server,
                failure_rate=body.failure_rate,
                seed=body.seed,
                history=history,
                earlier_calls=body.index - len(history),
            )
            call = await emulator.call(body.tool, body.arguments)
        except Unparseable as exc:
            detail = f"the emulator's LLM reply was unusable: {exc}"
            raise HTTPException(502, detail=detail) from None
        except LLMError as exc:
            raise HTTPException(502, detail=f"the emulator's LLM failed: {exc}") from None
        except ValueError as exc:  # no endpoint, or a base URL that is not http(s)
            raise HTTPException(422, detail=str(exc)) from None
        return EmulateReply(output=call.output, error=call.error, injected=call.injected)

    return router
