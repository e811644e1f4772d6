"""The servers under test of ``bench/envhost.py``, each run as a process of its own.

    .venv/bin/python bench/envhost_server.py envhost --database-url URL --port PORT
    .venv/bin/python bench/envhost_server.py fastapi --port PORT

``envhost`` migrates the database, registers two environments offering the same lookup tool
(one synthetic, run in the episode's sandbox worker; one of the builtin kind
``bench_inprocess``, which runs the same code in process) and serves the real envhost app with
the real kinds plus that one. ``fastapi`` serves a bare FastAPI app whose one POST endpoint runs
the same function. Once listening, each prints one JSON line on stdout for the parent: its URL
and, for envhost, the ids of the two environments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import textwrap
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from astra_common.db import Database
from astra_common.db.migrate import upgrade
from astra_envhost.app import create_app, sandbox_factory
from astra_envhost.backends import EpisodeRuntime, ToolExecutionError
from astra_envhost.episodes import EnvironmentKind
from astra_envhost.kinds import builtin_kinds, score_subquestions
from astra_envhost.settings import EnvhostSettings
from astra_proto import (
    BuiltinBackend,
    EnvironmentSpec,
    SubQuestion,
    SyntheticTool,
    ToolSpec,
)

TOOL_NAME = "lookup_capital"  # bench/envhost.py calls it by this name
INPROCESS_KIND = "bench_inprocess"

LOOKUP_CODE = textwrap.dedent(
    """
    CAPITALS = {
        "france": "Paris", "germany": "Berlin", "italy": "Rome", "spain": "Madrid",
        "japan": "Tokyo", "canada": "Ottawa", "brazil": "Brasilia", "kenya": "Nairobi",
    }

    def lookup_capital(country):
        key = country.strip().lower()
        if key not in CAPITALS:
            raise ValueError(f"unknown country {country!r}")
        return {"country": country, "capital": CAPITALS[key]}
    """
)
LOOKUP_BYTECODE = compile(LOOKUP_CODE, "<lookup tool>", "exec")

LOOKUP_TOOL = ToolSpec(
    name=TOOL_NAME,
    description="The capital city of a country.",
    parameters={
        "type": "object",
        "properties": {"country": {"type": "string"}},
        "required": ["country"],
    },
)
QUESTIONS = [
    SubQuestion(id="q1", question="Capital of France?", answer="Paris", tool_name=TOOL_NAME)
]


def synthetic_spec() -> EnvironmentSpec:
    """(a): the lookup tool as synthesized code, run in the episode's sandbox worker."""
    return EnvironmentSpec(
        task="What is the capital of France?",
        answer="Paris",
        domain="geography",
        sub_questions=QUESTIONS,
        tools=[SyntheticTool(spec=LOOKUP_TOOL, code=LOOKUP_CODE, entrypoint=TOOL_NAME)],
    )


def inprocess_spec() -> EnvironmentSpec:
    """(b): the same tool served by the trusted in-process kind ``bench_inprocess``."""
    return EnvironmentSpec(
        kind="builtin",
        task="What is the capital of France?",
        answer="Paris",
        domain="geography",
        sub_questions=QUESTIONS,
        builtin=BuiltinBackend(name=INPROCESS_KIND),
        builtin_tools=[LOOKUP_TOOL],
    )


def load_lookup() -> Callable[..., Any]:
    """The tool function, from its code executed into a fresh namespace."""
    namespace: dict[str, Any] = {}
    exec(LOOKUP_BYTECODE, namespace)
    function: Callable[..., Any] = namespace[TOOL_NAME]
    return function


class InProcessBackend:
    """Trusted tools in process: the episode's own copy of the tool code, called directly."""

    def __init__(self) -> None:
        self.lookup = load_lookup()

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        try:
            return self.lookup(**arguments)
        except Exception as exc:
            raise ToolExecutionError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        """Nothing to release."""


def inprocess_kind() -> EnvironmentKind:
    """The ``bench_inprocess`` kind: one ``InProcessBackend`` per episode."""

    def create_runtime(spec: EnvironmentSpec, _: list[SyntheticTool]) -> EpisodeRuntime:
        backend = InProcessBackend()
        return EpisodeRuntime({tool.name: backend for tool in spec.builtin_tools})

    return EnvironmentKind(create_runtime=create_runtime, score=score_subquestions)


class LookupArguments(BaseModel):
    country: str


def bare_app() -> FastAPI:
    """(c): one JSON POST endpoint running the same function; no middleware."""
    app = FastAPI()
    lookup = load_lookup()

    @app.post("/lookup")
    async def call_lookup(arguments: LookupArguments) -> dict[str, Any]:
        result: dict[str, Any] = lookup(**arguments.model_dump())
        return result

    return app


async def register(database_url: str, *specs: EnvironmentSpec) -> None:
    async with Database(database_url) as database, database.transaction() as repos:
        for spec in specs:
            await repos.environments.register(spec)


async def serve(app: FastAPI, port: int, ready: dict[str, str]) -> None:
    """Serve ``app`` on loopback; print ``ready`` as one JSON line once listening."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    print(json.dumps(ready), flush=True)
    await task


def envhost_app(database_url: str, port: int, max_episodes: int) -> FastAPI:
    settings = EnvhostSettings(
        database_url=database_url,
        port=port,
        max_episodes=max_episodes,
        episode_idle_timeout_s=86_400.0,
        log_level="warning",
    )
    kinds = builtin_kinds(sandbox_factory(settings)) | {INPROCESS_KIND: inprocess_kind()}
    return create_app(settings, kinds=kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("server", choices=["envhost", "fastapi"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--max-episodes", type=int, default=20_000)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    if args.server == "fastapi":
        asyncio.run(serve(bare_app(), args.port, {"url": url}))
        return
    synthetic, inprocess = synthetic_spec(), inprocess_spec()
    upgrade(args.database_url)
    asyncio.run(register(args.database_url, synthetic, inprocess))
    app = envhost_app(args.database_url, args.port, args.max_episodes)
    ready = {"url": url, "synthetic_env": synthetic.id, "inprocess_env": inprocess.id}
    asyncio.run(serve(app, args.port, ready))


if __name__ == "__main__":
    main()
