"""Evaluation suites over REST: a real rollout app, synth registry, envhost and stub policy;
scores per category and per entry, failed episodes counted as 0, and clear 4xx answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from envhost_support import weather_spec
from http_support import running
from rollout_support import stack

from astra.redis_server import free_port
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, Provenance
from astra_rollout.app import create_app
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings

Settings = Callable[..., EnvhostSettings]


def heldout(split: str, domain: str) -> EnvironmentSpec:
    """The weather task as a procedural environment of a held-out split."""
    data = weather_spec(domain).model_dump(exclude={"id"})
    data |= {"split": split, "provenance": Provenance(source="procedural").model_dump()}
    return EnvironmentSpec.model_validate(data)


@asynccontextmanager
async def rollout_api(
    database_url: str, redis_url: str, envhost_settings: Settings, *extra: EnvironmentSpec
) -> AsyncIterator[httpx.AsyncClient]:
    specs = (
        heldout("heldout_entities", "travel"),
        heldout("heldout_entities", "weather"),
        heldout("heldout_compositions", "travel"),
        *extra,
    )
    async with stack(database_url, envhost_settings, *specs) as s:
        synth = create_synth(SynthSettings(database_url=database_url, redis_url=redis_url))
        async with running(synth, free_port()) as synth_url:
            settings = RolloutSettings(
                port=free_port(),
                redis_url=redis_url,
                envhost_url=s.envhost_url,
                synth_url=synth_url,
                policy_base_url=s.policy_url,
                policy_backoff_s=0.01,
                policy_retries=1,
            )
            async with (
                running(create_app(settings), settings.port) as url,
                httpx.AsyncClient(base_url=url, timeout=60) as api,
            ):
                yield api


async def finished(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    started = await api.post("/v1/evaluations", json=body)
    assert started.status_code == 201, started.text
    async with asyncio.timeout(90):
        while True:
            status: dict[str, Any] = (
                await api.get(f"/v1/evaluations/{started.json()['id']}")
            ).json()
            if status["state"] in ("succeeded", "failed", "cancelled"):
                return status
            await asyncio.sleep(0.1)


async def test_scores_per_category_and_entry(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_api(database_url, redis_url, envhost_settings) as api:
        solved = await finished(
            api, {"suite": "heldout-procedural", "policy": {"model": "solver"}, "label": "base"}
        )
        assert solved["state"] == "succeeded"
        assert (solved["total"], solved["done"], solved["label"]) == (3, 3, "base")
        by_category = {c["category"]: c for c in solved["categories"]}
        assert by_category["heldout_entities"]["entries"] == 2
        assert by_category["heldout_compositions"]["entries"] == 1
        assert solved["overall"]["mean_reward"] == pytest.approx(1.0, abs=1e-4)
        assert solved["overall"]["success_rate"] == 1.0
        assert solved["overall"]["mean_tool_calls"] == 2.0
        entry = solved["entries"][0]
        assert entry["success"] is True
        assert entry["finish_reason"] == "final_answer"
        trajectory = await api.get(
            f"/v1/evaluations/{solved['id']}/trajectories/{entry['trajectory_id']}"
        )
        assert trajectory.status_code == 200
        assert trajectory.json()["env_id"] == entry["env_id"]

        lazy = await finished(
            api,
            {"suite": "heldout-procedural", "categories": ["heldout_compositions"],
             "policy": {"model": "answer"}},
        )  # fmt: skip
        assert lazy["total"] == 1
        assert lazy["overall"]["mean_reward"] == 0.0  # answered without solving anything
        assert lazy["overall"]["success_rate"] == 0.0

        down = await finished(api, {"suite": "heldout-procedural", "policy": {"model": "broken"}})
        assert down["state"] == "succeeded"  # the evaluation ran; every episode failed
        assert down["overall"]["failed"] == 3
        assert down["overall"]["mean_reward"] == 0.0
        assert all("refused" in e["failure_reason"] or "failed" in e["failure_reason"]
                   for e in down["entries"])  # fmt: skip

        listed = (await api.get("/v1/evaluations")).json()
        assert [e["id"] for e in listed] == [solved["id"], lazy["id"], down["id"]]
        assert all(e["entries"] == [] for e in listed)


async def test_bad_evaluation_requests(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    async with rollout_api(database_url, redis_url, envhost_settings) as api:
        unknown = await api.post("/v1/evaluations", json={"suite": "trivia"})
        assert unknown.status_code == 422
        category = await api.post(
            "/v1/evaluations", json={"suite": "bfcl-multi-turn", "categories": ["hard"]}
        )
        assert category.status_code == 422
        assert "unknown categories" in category.text
        empty = await api.post("/v1/evaluations", json={"suite": "bfcl-multi-turn"})
        assert empty.status_code == 422
        assert "astra envs import bfcl" in empty.json()["detail"]
        assert (await api.get("/v1/evaluations/eval_nope")).status_code == 404


async def test_bfcl_suite_scores_by_category_with_bfcls_checker(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> None:
    from astra_envhost.bfcl import bfcl_environments

    entries = bfcl_environments(["base", "miss_param"], 1, None)
    async with rollout_api(database_url, redis_url, envhost_settings, *entries) as api:
        status = await finished(
            api,
            {"suite": "bfcl-multi-turn", "categories": ["base", "miss_param"],
             "policy": {"model": "answer"}, "limits": {"max_turns": 8}},
        )  # fmt: skip
    assert status["state"] == "succeeded", status
    assert [c["category"] for c in status["categories"]] == ["base", "miss_param"]
    assert {e["env_id"] for e in status["entries"]} == {spec.id for spec in entries}
    for entry in status["entries"]:
        assert entry["failure_reason"] is None, entry
        assert entry["reward"] == 0.0  # answering in words never passes BFCL's checker
