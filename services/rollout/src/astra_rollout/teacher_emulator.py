"""Tools of a document-only server, each call answered by synth's LLM tool emulator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from astra_proto import ToolSpec
from astra_rollout.envhost_client import ToolOutcome
from astra_rollout.teacher_models import EmulatorOptions, TeacherServer

EMULATOR_HISTORY = 5


class EmulatorError(Exception):
    """The emulator refused or failed a call; the trajectory cannot go on without a result."""


@dataclass
class EmulatedSession:
    """Tools of a document-only server, each call answered by synth's emulator."""

    http: httpx.AsyncClient
    url: str
    headers: dict[str, str]
    server: TeacherServer
    options: EmulatorOptions
    seed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    injected: int = 0

    async def list_tools(self) -> list[ToolSpec]:
        return list(self.server.tools)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        body = {
            "server": self.server.model_dump(mode="json", exclude={"url"}),
            "tool": name,
            "arguments": arguments,
            "history": self.history[-EMULATOR_HISTORY:],
            "index": len(self.history),
            "seed": self.seed,
            "failure_rate": self.options.failure_rate,
            "llm_base_url": self.options.llm_base_url,
            "llm_model": self.options.llm_model,
        }
        try:
            response = await self.http.post(
                f"{self.url}/v1/emulate", json=body, headers=self.headers
            )
        except httpx.TransportError as exc:
            raise EmulatorError(f"the emulator at {self.url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise EmulatorError(
                f"the emulator answered HTTP {response.status_code}: {response.text[:500]}"
            )
        reply = response.json()
        output, error = reply.get("output"), reply.get("error")
        self.injected += bool(reply.get("injected"))
        self.history.append(
            {"tool": name, "arguments": arguments, "output": output, "error": error}
        )
        if error is not None:
            return ToolOutcome(text=f"Error: {error}", is_error=True)
        return ToolOutcome(text=json.dumps(output, ensure_ascii=False), is_error=False)
