"""envhost test support: test environments, a migrated database, real servers on free ports."""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from http_support import running

from astra_common.db import Database
from astra_envhost.app import create_app
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, SubQuestion, SyntheticTool, ToolSpec

CITY_CODE = textwrap.dedent(
    """
    CITIES = {"paris": "c-75", "lyon": "c-69"}

    def get_city_id(name):
        key = name.strip().lower()
        if key not in CITIES:
            raise ValueError(f"unknown city {name!r}")
        return {"city_id": CITIES[key]}
    """
)
FORECAST_CODE = textwrap.dedent(
    """
    FORECASTS = {"c-75": {"temperature_c": 21, "condition": "sunny"},
                 "c-69": {"temperature_c": 18, "condition": "rain"}}
    BOOKED = []

    def get_forecast(city_id, days=1):
        if city_id not in FORECASTS:
            raise KeyError(f"no forecast for {city_id}")
        BOOKED.append(city_id)  # state, to show that episodes do not share it
        return {**FORECASTS[city_id], "days": days, "lookups": len(BOOKED)}
    """
)
SLOW_CODE = "def spin(seconds):\n    while True:\n        pass\n"


def tool(name: str, description: str, code: str, properties: dict[str, Any]) -> SyntheticTool:
    required = [key for key, value in properties.items() if not value.pop("optional", False)]
    return SyntheticTool(
        spec=ToolSpec(
            name=name,
            description=description,
            parameters={"type": "object", "properties": properties, "required": required},
        ),
        code=code,
        entrypoint=name,
    )


def weather_spec(domain: str = "travel") -> EnvironmentSpec:
    """Two hops: the city's id, then its forecast."""
    return EnvironmentSpec(
        task="How warm will it be in Paris tomorrow?",
        answer="21",
        domain=domain,
        scenario_type="multi_hop",
        sub_questions=[
            SubQuestion(id="q1", question="Id of Paris?", answer="c-75", tool_name="get_city_id"),
            SubQuestion(
                id="q2",
                question="Temperature for that id?",
                answer="21",
                depends_on=["q1"],
                tool_name="get_forecast",
            ),
        ],
        tools=[
            tool("get_city_id", "Look up a city's id.", CITY_CODE, {"name": {"type": "string"}}),
            tool(
                "get_forecast",
                "Forecast for a city id.",
                FORECAST_CODE,
                {
                    "city_id": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "optional": True},
                },
            ),
        ],
    )


def slow_spec() -> EnvironmentSpec:
    """One tool that never returns, to test timeouts."""
    return EnvironmentSpec(
        task="Spin.",
        domain="testing",
        sub_questions=[SubQuestion(id="q1", question="spin", answer="x", tool_name="spin")],
        tools=[tool("spin", "Never returns.", SLOW_CODE, {"seconds": {"type": "number"}})],
    )


async def register(database_url: str, *specs: EnvironmentSpec) -> None:
    async with Database(database_url) as database, database.transaction() as repos:
        for spec in specs:
            await repos.environments.register(spec)


ServerFactory = Callable[..., Any]


@asynccontextmanager
async def envhost(settings: EnvhostSettings) -> AsyncIterator[str]:
    """A real envhost on its own port."""
    async with running(create_app(settings), settings.port) as url:
        yield url


def descendants(pid: int) -> set[int]:
    """Live processes below ``pid`` (and ``pid`` itself), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found = {pid} if pid in parents else set()
    grew = True
    while grew:
        below = {child for child, parent in parents.items() if parent in found}
        grew = not below <= found
        found |= below
    return found
