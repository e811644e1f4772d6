"""The LLM tool emulator over REST: ``POST /v1/emulate`` answers one call of a tool known only
by its document (teacher runs of the rollout service send the calls of document-only servers
here). Stateless: each request carries the trajectory's recent calls and the call's position,
so a call's injected failure is the same whichever replica answers it. The bodies are
``astra_proto.api.synth.EmulateRequest`` and ``EmulateReply``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException

from astra_proto.api.synth import EmulateReply, EmulateRequest, ToolServer
from astra_synth.llm import LLMError
from astra_synth.llm_endpoint import ChatModels
from astra_synth.llm_pipeline.ask import Unparseable
from astra_synth.trajectories.emulator import HISTORY, EmulatedCall, ToolEmulator


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
