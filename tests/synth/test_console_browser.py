"""The web console in a real browser: Debian's chromium, driven by Playwright, against a real
synth API, a real Celery worker and a real envhost. Screenshots of every page are kept in
test-artifacts/console/."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from envhost_support import envhost, register, weather_spec
from fastapi import FastAPI, HTTPException
from http_support import running
from mcp import Client
from playwright.async_api import Page, async_playwright, expect
from synth_support import private_redis, synth_service

from astra.redis_server import free_port
from astra_common.db import Database
from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings
from astra_proto import (
    EnvironmentSpec,
    FinishReason,
    FunctionCall,
    JobKind,
    JobRejection,
    JobState,
    Message,
    RewardBreakdown,
    StageProgress,
    SynthesisJob,
    Timings,
    ToolCall,
    Trajectory,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
WAIT_MS = 15_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (scripts/system-deps.sh installs Debian's chromium)",
    ),
]

needs_bwrap = pytest.mark.skipif(
    find_bwrap() is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
)


@asynccontextmanager
async def browser_page() -> AsyncIterator[tuple[Page, list[str]]]:
    """A page in headless chromium, and the uncaught script errors it has seen so far."""
    assert CHROMIUM is not None
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            await browser.close()


async def snap(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


HOSTILE_TASK = 'How warm is Paris? <img src=x onerror="window.__pwned=1"><b>bold</b>'


def hostile_weather_spec() -> EnvironmentSpec:
    """The two-hop weather environment, with markup in its task that must show as text."""
    document = weather_spec().model_dump(exclude={"id"})
    return EnvironmentSpec.model_validate({**document, "task": HOSTILE_TASK})


def archived_trajectory(env_id: str) -> Trajectory:
    now = datetime.now(UTC)
    return Trajectory(
        id="traj_console",
        env_id=env_id,
        group_id="group_console",
        policy_version=3,
        model="policy-under-test",
        messages=[
            Message(role="system", content="You answer with tools."),
            Message(role="user", content=HOSTILE_TASK),
            Message(
                role="assistant",
                tool_calls=[
                    ToolCall(
                        id="call_a",
                        function=FunctionCall(name="get_city_id", arguments='{"name": "Paris"}'),
                    )
                ],
            ),
            Message(
                role="tool", tool_call_id="call_a", name="get_city_id", content='{"city_id":"c-75"}'
            ),
            Message(role="assistant", content="It will be 21 °C."),
        ],
        tools=weather_spec().tool_specs(),
        token_ids=[1, 2, 3, 4, 5, 6],
        logprobs=[0.0, 0.0, 0.0, -0.1, -0.2, -0.3],
        loss_mask=[0, 0, 0, 1, 1, 1],
        text_only=False,
        reward=RewardBreakdown.compute(2, ["q1"], 1),
        finish_reason=FinishReason.FINAL_ANSWER,
        turns=1,
        timings=Timings(started_at=now - timedelta(seconds=2), finished_at=now),
    )


async def episode_with_calls(envhost_url: str, env_id: str) -> str:
    """An episode opened over envhost's REST API, three MCP calls (one failing), scored, closed."""
    async with httpx.AsyncClient(base_url=envhost_url, timeout=30) as http:
        created = await http.post("/v1/episodes", json={"env_id": env_id})
        assert created.status_code == 201, created.text
        episode = created.json()
        async with Client(episode["mcp_url"]) as client:
            assert not (await client.call_tool("get_city_id", {"name": "Paris"})).is_error
            assert (await client.call_tool("get_city_id", {"name": "Atlantis"})).is_error
            assert not (await client.call_tool("get_forecast", {"city_id": "c-75"})).is_error
        scored = await http.post(f"/v1/episodes/{episode['id']}/score", json={"final_answer": "21"})
        assert scored.status_code == 200, scored.text
        assert (await http.delete(f"/v1/episodes/{episode['id']}")).status_code == 204
    return str(episode["id"])


async def until_recorded(http: httpx.AsyncClient, episode_id: str, calls: int) -> None:
    """Wait (bounded) until synth reads the episode's calls: envhost journals them behind."""
    async with asyncio.timeout(30):
        while True:
            response = await http.get(f"/v1/episodes/{episode_id}")
            if response.status_code == 200 and len(response.json()["calls"]) == calls:
                return
            await asyncio.sleep(0.2)


@needs_bwrap
@pytest.mark.timeout(300)
async def test_console_pages_over_a_live_stack(
    database_url: str,
    redis_url: str,
    envhost_settings: Callable[..., EnvhostSettings],
    tmp_path: Path,
) -> None:
    hostile = hostile_weather_spec()
    await register(database_url, hostile)
    async with Database(database_url) as database, database.transaction() as repos:
        await repos.trajectories.archive(archived_trajectory(hostile.id))
    async with (
        envhost(envhost_settings()) as envhost_url,
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url=envhost_url,
            tmp_path=tmp_path,
            trainer_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        ) as (synth_url, workers),
        httpx.AsyncClient(base_url=synth_url, timeout=30) as http,
        browser_page() as (page, errors),
    ):
        workers.start()

        # Jobs: start a procedural job from the page and watch its progress bars fill.
        await page.goto(f"{synth_url}/#/jobs")
        await page.fill("#start-job input[name=hops]", "0")
        await page.click("#start-job button[type=submit]")  # refused: the reason is shown
        await expect(page.locator("#start-job .notice.error")).to_contain_text("between 1 and 20")
        await page.fill("#start-job input[name=count]", "3")
        await page.fill("#start-job input[name=seed]", "7")
        await page.fill("#start-job input[name=hops]", "3")
        await page.fill("#start-job input[name=scenario_types]", "multi_hop")
        await page.click("#start-job button[type=submit]")
        await page.wait_for_url("**/#/jobs/job_*", timeout=WAIT_MS)
        job_id = page.url.rsplit("/", 1)[1]
        state = page.locator(".job-head [data-state]")
        ended = re.compile("succeeded|failed|cancelled")
        await expect(state).to_have_attribute("data-state", ended, timeout=120_000)
        assert await state.get_attribute("data-state") == "succeeded", (
            await page.locator(".job-head").inner_text(),
            workers.logs(),
        )
        bars = page.locator("progress.stage-bar")
        await expect(bars).to_have_count(3)
        filled = await bars.evaluate_all("bars => bars.map(b => [b.dataset.stage, b.value, b.max])")
        assert filled == [[name, 3, 3] for name in ("generated", "verified", "registered")]
        await expect(page.locator("progress[data-stage=registered]")).to_have_attribute(
            "data-done", "3"
        )
        await expect(page.locator("#job-stats")).to_contain_text("registered")
        await expect(page.locator("#cancel-job")).to_have_count(0)  # it has ended
        await snap(page, "job")
        await page.goto(f"{synth_url}/#/jobs")
        await expect(page.locator("table.jobs tbody tr")).to_have_count(1)
        await expect(page.locator("table.jobs")).to_contain_text(job_id)
        await snap(page, "jobs")

        # Environments: the job's three, then one with its DAG, certificate and verification.
        await page.goto(f"{synth_url}/#/environments?job_id={job_id}")
        await expect(page.locator("#environments-table tbody tr")).to_have_count(3)
        await snap(page, "environments")
        await page.locator("a.env-link").first.click()
        env_id = page.url.rsplit("/", 1)[1]
        spec = EnvironmentSpec.model_validate((await http.get(f"/v1/environments/{env_id}")).json())
        assert spec.certificate is not None
        await expect(page.locator("#task")).to_have_text(spec.task)
        nodes = page.locator("svg#dag g.dag-node")
        await expect(nodes).to_have_count(len(spec.sub_questions))
        assert sorted(await nodes.evaluate_all("gs => gs.map(g => g.dataset.id)")) == sorted(
            q.id for q in spec.sub_questions
        )
        edges = sum(len(q.depends_on) for q in spec.sub_questions)
        assert spec.hops == 3
        assert edges >= 2  # a three-hop chain at least
        await expect(page.locator("svg#dag path.dag-edge")).to_have_count(edges)
        rows = page.locator("table.certificate-rows tbody tr")
        await expect(rows).to_have_count(len(spec.certificate.replays))
        await expect(rows.first).to_contain_text(spec.certificate.replays[0].call.tool_name)
        await expect(page.locator("details.tool")).to_have_count(len(spec.tools))
        await page.click("#verify")
        await expect(page.locator("#verify-result")).to_contain_text("holds", timeout=60_000)
        await snap(page, "environment")

        # Data is text, never markup: the hostile task shows literally and runs nothing.
        await page.goto(f"{synth_url}/#/environments/{hostile.id}")
        await expect(page.locator("#task")).to_have_text(HOSTILE_TASK)
        await expect(page.locator("svg#dag g.dag-node")).to_have_count(2)
        await expect(page.locator("svg#dag path.dag-edge")).to_have_count(1)
        assert await page.locator("main img, main b").count() == 0
        assert await page.evaluate("() => window.__pwned") is None

        # Episodes: one opened over envhost's REST API with three MCP calls.
        episode_id = await episode_with_calls(envhost_url, hostile.id)
        await until_recorded(http, episode_id, 3)
        await page.goto(f"{synth_url}/#/episodes?env_id={hostile.id}")
        await expect(page.locator("#episodes-table tbody tr")).to_have_count(1)
        await snap(page, "episodes")
        await page.click("a.episode-link")
        calls = page.locator("#call-log tbody tr")
        await expect(calls).to_have_count(3)
        await expect(calls.nth(0)).to_contain_text("get_city_id")
        await expect(calls.nth(1).locator(".call-error")).to_contain_text("Atlantis")
        await expect(calls.nth(2)).to_contain_text("temperature_c")
        await expect(page.locator("#reward")).to_contain_text("subquestion_f1")
        await snap(page, "episode")

        # Trajectories: the archived one as a chat, with its token counts and policy version.
        await page.goto(f"{synth_url}/#/trajectories")
        await expect(page.locator("#trajectories-table tbody tr")).to_have_count(1)
        await snap(page, "trajectories")
        await page.click("a.trajectory-link")
        await expect(page.locator("#chat .msg")).to_have_count(5)
        await expect(page.locator("#chat .tool-call")).to_contain_text("get_city_id")
        await expect(page.locator("#chat .role-tool")).to_contain_text("c-75")
        await expect(page.locator("#chat .role-user")).to_contain_text(HOSTILE_TASK)
        await expect(page.locator("#token-counts")).to_have_text(
            "6 tokens, 3 trained (policy), 3 context"
        )
        await expect(page.locator("#policy-version")).to_have_text("3")
        assert await page.locator("main img").count() == 0
        await snap(page, "trajectory")

        # Training: no trainer runs, and the page says so.
        await page.goto(f"{synth_url}/#/training")
        await expect(page.locator("#training-error")).to_contain_text("trainer unreachable")
        await snap(page, "training-unreachable")
        assert errors == []


def fake_trainer(runs: list[dict[str, Any]], steps: list[dict[str, Any]]) -> FastAPI:
    """A test double of the trainer's API (``/v1/runs``, ``/v1/runs/{id}/metrics``), serving
    the metrics contract the console reads; the real trainer is another service."""
    app = FastAPI()

    @app.get("/v1/runs")
    async def list_runs() -> list[dict[str, Any]]:
        return runs

    @app.get("/v1/runs/{run_id}/metrics")
    async def run_metrics(run_id: str) -> list[dict[str, Any]]:
        if run_id not in {run["run_id"] for run in runs}:
            raise HTTPException(404, detail="no such run")
        return steps

    return app


async def test_training_page_draws_curves_once_the_trainer_answers(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    trainer_port = free_port()
    steps = [
        {
            "step": step,
            "loss": 1.0 / step,
            "reward_mean": step / 10,
            "reward_std": 0.1,
            "batch_fill_ratio": min(1.0, step / 4),
            "policy_version": step,
            "records": [f"record-{step}"],
        }
        for step in range(1, 9)
    ]
    log = [event for step in steps for event in ({"event": "step_started"}, step)]
    runs = [{"run_id": "grpo-demo", "kind": "grpo", "state": "running"}]
    async with (
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url="http://127.0.0.1:9",
            tmp_path=tmp_path,
            trainer_url=f"http://127.0.0.1:{trainer_port}",
        ) as (synth_url, _),
        browser_page() as (page, errors),
    ):
        await page.goto(f"{synth_url}/#/training")
        await expect(page.locator("#training-error")).to_contain_text(
            f"trainer unreachable at http://127.0.0.1:{trainer_port}"
        )
        async with running(fake_trainer(runs, log), trainer_port):
            await page.reload()
            for metric in ("loss", "reward_mean", "batch_fill"):
                chart = page.locator(f"figure.chart[data-metric={metric}]")
                await expect(chart).to_have_attribute("data-points", "8")
                await expect(chart.locator("circle.point")).to_have_count(8)
            await expect(page.locator("figure.chart[data-metric=loss]")).to_contain_text(
                "last: 0.125 at step 8"
            )
            await expect(page.locator("#run-select")).to_have_value("grpo-demo")
            await expect(page.locator("#training-body")).to_contain_text(
                "8 steps logged · policy version 8"
            )
            await snap(page, "training")
        assert errors == []


async def test_write_actions_need_the_token_configured_in_the_page(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url="http://127.0.0.1:9",
            tmp_path=tmp_path,
            api_token="console-secret",
        ) as (synth_url, _),  # no worker: the job stays queued, so it can be cancelled
        browser_page() as (page, errors),
    ):
        await page.goto(f"{synth_url}/#/jobs")
        await expect(page.locator("#auth-state")).to_have_text("read-only (no token)")
        await expect(page.locator("main")).to_contain_text("Set an API token")
        await expect(page.locator("#start-job")).to_have_count(0)

        await page.fill("#token-input", "wrong-token")
        await page.click("#token-form button")
        await page.click("#start-job button[type=submit]")
        await expect(page.locator("#start-job .notice.error")).to_contain_text(
            "missing or invalid bearer token"
        )

        await page.fill("#token-input", "console-secret")
        await page.click("#token-form button")
        await expect(page.locator("#auth-state")).to_have_text("token set")
        await page.click("#start-job button[type=submit]")
        await page.wait_for_url("**/#/jobs/job_*", timeout=WAIT_MS)
        state = page.locator(".job-head [data-state]")
        await expect(state).to_have_attribute("data-state", "pending")
        await page.click("#cancel-job")
        await expect(state).to_have_attribute("data-state", "cancelled")
        await expect(page.locator("#cancel-job")).to_have_count(0)
        await expect(page.locator(".job-head")).to_contain_text("cancelled over the API")
        await snap(page, "job-cancelled")
        assert errors == []


async def test_a_job_page_lists_its_rejections_with_the_model_reply_as_text(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    job = SynthesisJob(
        id="job_rejections",
        kind=JobKind.ENVIRONMENTS,
        state=JobState.SUCCEEDED,
        params={"source": "qa"},
        progress=[
            StageProgress(
                stage="decomposed",
                done=1,
                total=3,
                rejected={"unparseable_decomposition": 1, "malformed_line": 1},
            )
        ],
        created_at=now,
        updated_at=now,
        finished_at=now,
    )
    records = [
        JobRejection(
            stage="decomposed",
            reason="unparseable_decomposition",
            item="item 0: Is Fredville rainy?",
            message="the reply is not JSON",
            excerpt=HOSTILE_TASK,
            at=now,
        ),
        JobRejection(stage="decomposed", reason="malformed_line", item="line 2", at=now),
    ]
    async with Database(database_url) as database, database.transaction() as repos:
        await repos.jobs.create(job)
        await repos.jobs.add_rejections(job.id, records)
    async with (
        synth_service(
            database_url=database_url,
            redis_url=private_redis(redis_url),
            envhost_url="http://127.0.0.1:9",
            tmp_path=tmp_path,
        ) as (synth_url, _),
        browser_page() as (page, errors),
    ):
        await page.goto(f"{synth_url}/#/jobs/{job.id}")
        rows = page.locator("#job-rejections table.rejections tbody tr")
        await expect(rows).to_have_count(2, timeout=WAIT_MS)
        await expect(page.locator("#job-rejections")).to_contain_text("2 rejections recorded")
        first = rows.first
        await expect(first).to_contain_text("unparseable_decomposition")
        await expect(first).to_contain_text("Is Fredville rainy?")
        await expect(first).to_contain_text("the reply is not JSON")
        await expect(first.locator("code.excerpt")).to_have_text(HOSTILE_TASK)  # as text
        assert await page.locator("main img, main b").count() == 0
        assert await page.evaluate("() => window.__pwned") is None
        await snap(page, "job-rejections")
        assert errors == []
