"""Tools of a document-only server, each call answered by synth's LLM tool emulator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.synth import SynthClient
from astra_proto import ToolSpec
from astra_proto.api.rollout import EmulatorOptions, TeacherServer
from astra_proto.api.synth import EmulatedServer, EmulateReply, EmulateRequest, PastCall
from astra_rollout.envhost_client import ToolOutcome

EMULATOR_HISTORY = 5


class EmulatorError(Exception):
    """The emulator refused or failed a call; the trajectory cannot go on without a result."""


@dataclass
class EmulatedSession:
    """Tools of a document-only server, each call answered by synth's emulator (``synth``)."""

    synth: SynthClient
    server: TeacherServer
    options: EmulatorOptions
    seed: int
    history: list[PastCall] = field(default_factory=list)
    injected: int = 0

    async def list_tools(self) -> list[ToolSpec]:
        return list(self.server.tools)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        try:
            request = EmulateRequest(
                server=EmulatedServer(
                    name=self.server.name,
                    description=self.server.description,
                    tools=self.server.tools,
                ),
                tool=name,
                arguments=arguments,
                history=self.history[-EMULATOR_HISTORY:],
                index=len(self.history),
                seed=self.seed,
                failure_rate=self.options.failure_rate,
                llm_base_url=self.options.llm_base_url,
                llm_model=self.options.llm_model,
            )
        except ValidationError as exc:
            raise EmulatorError(f"the call cannot be emulated: {_first_error(exc)}") from None
        reply = await self._emulate(request)
        try:
            past = PastCall(tool=name, arguments=arguments, output=reply.output, error=reply.error)
        except ValidationError as exc:
            raise EmulatorError(
                f"the emulator answered an unusable output: {_first_error(exc)}"
            ) from None
        self.injected += reply.injected
        self.history.append(past)
        if reply.error is not None:
            return ToolOutcome(text=f"Error: {reply.error}", is_error=True)
        return ToolOutcome(text=json.dumps(reply.output, ensure_ascii=False), is_error=False)

    async def _emulate(self, request: EmulateRequest) -> EmulateReply:
        try:
            return await self.synth.emulate(request)
        except ServiceUnreachable as exc:
            raise EmulatorError(
                f"the emulator at {self.synth.base_url} is unreachable: {exc}"
            ) from exc
        except ServiceError as exc:
            if not exc.status:
                raise EmulatorError(f"the emulator failed: {exc}") from exc
            raise EmulatorError(
                f"the emulator answered HTTP {exc.status}: {exc.detail or exc}"
            ) from exc


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
