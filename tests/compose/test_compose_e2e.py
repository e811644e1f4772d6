"""The compose deployment end to end, on a real Docker engine (run by scripts/compose-test.sh).

One stack for the module, in order: every image builds; ``up --wait`` with every service
healthy (the cpu profile: vLLM's CPU build serves the policy); a procedural synthesis job over
REST at the published port; the official MCP Python client on the host lists and calls tools
through the one published envhost address and keeps episode state across calls; a rollout
batch against the CPU policy server whose trajectories a GRPO run's consumer group reads from
the stream; then envhost, rollout and the synth worker scaled to two, a worker killed mid-job
(the job completes, each environment registered once), MCP episodes on both envhost replicas
through the one address, a batch spread over both rollout replicas; ``down -v`` leaves nothing.
Figures (build times, image sizes, time to healthy) go to test-artifacts/compose-report.json.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from astra_proto import EnvironmentSpec, SubQuestion, SyntheticTool, ToolSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "test-artifacts" / "compose-report.json"
SYNTH = "http://127.0.0.1:8100"
ENVS = "http://127.0.0.1:8101"
ROLLOUT = "http://127.0.0.1:8102"
TRAINER = "http://127.0.0.1:8103"
IMAGES = ["astra/synth", "astra/envhost", "astra/rollout", "astra/trainer", "astra/vllm-cpu"]
# The stack's secrets: taken from the environment where set (to rerun single tests against a
# stack already up), else fresh for this run.
TOKEN = os.environ.get("ASTRA_API_TOKEN") or secrets.token_hex(16)
POSTGRES_PASSWORD = os.environ.get("POSTGRES_PASSWORD") or secrets.token_hex(8)
figures: dict[str, Any] = {}


def compose(*args: str, timeout: float = 1800, check: bool = True, profile: str = "cpu") -> str:
    """Run ``docker compose`` on the repository's file; its output (stderr appended on error)."""
    env = {**os.environ, "POSTGRES_PASSWORD": POSTGRES_PASSWORD, "ASTRA_API_TOKEN": TOKEN}
    result = subprocess.run(
        ["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "--profile", profile, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker compose {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result.stdout


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout


def container_logs(container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout + result.stderr


def client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60.0)


def wait_for(what: str, probe: Callable[[], Any], limit_s: float = 900.0) -> Any:
    """``probe()``'s first truthy value, polled with a growing interval up to ``limit_s``."""
    deadline, delay, last = time.monotonic() + limit_s, 0.5, None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except httpx.HTTPError as exc:  # a service restarting or briefly overloaded
            value, last = None, exc
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
    raise AssertionError(f"{what}: not within {limit_s:.0f} s (last error: {last})")


def finished_job(synth: httpx.Client, job_id: str, limit_s: float = 900.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = synth.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job: dict[str, Any] = wait_for(f"synth job {job_id}", done, limit_s)
    assert job["state"] == "succeeded", job
    return job


def finished_batch(rollout: httpx.Client, batch_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        batch: dict[str, Any] = rollout.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        return batch if batch["state"] in ("succeeded", "failed", "cancelled") else None

    batch: dict[str, Any] = wait_for(f"rollout batch {batch_id}", done)
    assert batch["state"] == "succeeded", batch
    return batch


def job_environments(synth: httpx.Client, job_id: str) -> list[str]:
    listed = synth.get("/v1/environments", params={"job_id": job_id, "limit": 200})
    page = listed.raise_for_status().json()
    assert page["total"] == len(page["items"]), page["total"]
    return [entry["id"] for entry in page["items"]]


def synthesized(synth: httpx.Client, count: int, seed: int) -> list[str]:
    """Ids of the environments of a procedural synthesis job started over REST, once done."""
    body = {"count": count, "seed": seed, "split": "train"}
    job = synth.post("/v1/jobs/environments", json=body).raise_for_status().json()
    done = finished_job(synth, job["id"])
    assert done["result"]["registered"] == count, done
    return job_environments(synth, job["id"])


def played(
    rollout: httpx.Client, env_ids: list[str], *, max_tokens: int, seed: int
) -> dict[str, Any]:
    """A finished rollout batch of groups of 2 per environment against the policy server."""
    body = {
        "env_ids": env_ids,
        "group_size": 2,
        "sampling": {"temperature": 1.0, "max_tokens": max_tokens},
        "limits": {"max_turns": 3},
        "seed": seed,
    }
    batch = rollout.post("/v1/batches", json=body).raise_for_status().json()
    return finished_batch(rollout, batch["id"])


def redis_cli(*args: str) -> str:
    return compose("exec", "-T", "redis", "redis-cli", *args).strip()


def counter_spec() -> EnvironmentSpec:
    """One tool whose module state counts calls: state kept by an episode, not shared."""
    code = textwrap.dedent(
        """
        CALLS = []

        def count(label):
            CALLS.append(label)
            return {"calls": len(CALLS), "last": label}
        """
    )
    return EnvironmentSpec(
        task="Count twice.",
        answer="2",
        domain="testing",
        sub_questions=[SubQuestion(id="q1", question="Count.", answer="2", tool_name="count")],
        tools=[
            SyntheticTool(
                spec=ToolSpec(
                    name="count",
                    description="Count a call.",
                    parameters={
                        "type": "object",
                        "properties": {"label": {"type": "string"}},
                        "required": ["label"],
                    },
                ),
                code=code,
                entrypoint="count",
            )
        ],
    )


async def call_twice(url: str) -> list[int]:
    """The ``calls`` counter over two calls of ``count`` by the official Python client, in
    one connection (its default mode: the protocol generation the server offers)."""
    counts = []
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120.0)
    async with http, Client(streamable_http_client(url, http_client=http)) as session:
        tools = await session.list_tools()
        assert [tool.name for tool in tools.tools] == ["count"]
        for label in ("a", "b"):
            result = await session.call_tool("count", {"label": label})
            assert not result.is_error, result
            assert result.structured_content is not None, result
            counts.append(int(result.structured_content["calls"]))
    return counts


@pytest.fixture(scope="module")
def stack() -> Iterator[None]:
    try:
        yield
    finally:
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))


def test_the_gpu_profile_is_a_valid_project_for_the_compose_cli(stack: None) -> None:
    """The gpu profile cannot run here (no GPU): the real CLI checks and resolves it."""
    resolved = json.loads(compose("config", "--format", "json", profile="gpu"))
    vllm = resolved["services"]["vllm"]
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert vllm["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    assert "vllm-cpu" not in resolved["services"]


def test_every_image_builds(stack: None) -> None:
    started = time.monotonic()
    compose("build", timeout=3000)
    figures["build_s"] = round(time.monotonic() - started)
    sizes = {}
    for image in IMAGES:
        size = int(docker("image", "inspect", "--format", "{{.Size}}", f"{image}:latest"))
        sizes[image] = f"{size / 1e6:.0f} MB"
    figures["image_sizes"] = sizes


def test_every_service_comes_up_healthy(stack: None) -> None:
    started = time.monotonic()
    compose("up", "-d", "--wait", "--wait-timeout", "1200", timeout=1500)
    figures["up_to_healthy_s"] = round(time.monotonic() - started)
    states = [json.loads(line) for line in compose("ps", "-a", "--format", "json").splitlines()]
    by_service = {state["Service"]: state for state in states}
    for name in (
        "redis",
        "postgres",
        "synth-api",
        "synth-worker",
        "envhost",
        "rollout",
        "trainer",
        "vllm-cpu",
        "envhost-gateway",
    ):
        assert by_service[name]["Health"] in ("healthy", ""), by_service[name]
        assert by_service[name]["State"] == "running", by_service[name]
    for one_shot in ("migrate", "model-init"):
        assert by_service[one_shot]["ExitCode"] == 0, by_service[one_shot]


def test_a_procedural_synthesis_job_over_rest(stack: None) -> None:
    with client(SYNTH) as synth:
        assert len(synthesized(synth, 6, seed=7)) == 6


def test_an_mcp_client_on_the_host_calls_tools_through_the_published_address(
    stack: None,
) -> None:
    import asyncio

    spec = counter_spec()
    with client(SYNTH) as synth:
        synth.post("/v1/environments", json=spec.model_dump(mode="json")).raise_for_status()
    # The environment's URL: every call of this session in one episode, state kept.
    results = asyncio.run(call_twice(f"{ENVS}/envs/{spec.id}/mcp"))
    assert results == [1, 2]
    # An episode opened over REST: the MCP URL handed out names the published address.
    with client(ENVS) as envs:
        episode = envs.post("/v1/episodes", json={"env_id": spec.id}).raise_for_status().json()
        assert episode["mcp_url"] == f"{ENVS}/episodes/{episode['id']}/mcp", episode
        results = asyncio.run(call_twice(episode["mcp_url"]))
        assert results == [1, 2]
        log = envs.get(f"/v1/episodes/{episode['id']}").raise_for_status().json()
        assert len(log["calls"]) == 2
        envs.delete(f"/v1/episodes/{episode['id']}").raise_for_status()


def stream_group(group: str) -> dict[str, Any] | None:
    """The consumer group ``group`` of astra:trajectories as XINFO GROUPS tells it."""
    groups = json.loads(redis_cli("--json", "XINFO", "GROUPS", "astra:trajectories") or "[]")
    return next((g for g in groups if g.get("name") == group), None)


def test_a_rollout_batch_on_the_cpu_policy_feeds_the_trainer_through_the_stream(
    stack: None,
) -> None:
    with client(SYNTH) as synth, client(ROLLOUT) as rollout, client(TRAINER) as trainer:
        env_ids = synthesized(synth, 2, seed=11)
        run = (
            trainer.post(
                "/v1/runs/grpo",
                json={
                    "group": "trainer-e2e",
                    "group_start": "beginning",
                    "consumer_name": "trainer-e2e-0",
                    "group_size": 2,
                    "batch_groups": 1,
                    "buffer_groups": 0,
                    "max_steps": 1,
                    "max_tokens": 2048,
                    "micro_batch_size": 2,
                    "block_ms": 500,
                    "served_model": "policy",
                },
            )
            .raise_for_status()
            .json()
        )
        started = time.monotonic()
        batch = played(rollout, env_ids, max_tokens=192, seed=5)
        figures["rollout_batch"] = {
            "episodes": batch["total"],
            "seconds": round(time.monotonic() - started),
            "published": batch["published"],
        }
        assert batch["published"] == batch["total"] == 4, batch
        length = int(redis_cli("XLEN", "astra:trajectories"))

        def read_all() -> dict[str, Any] | None:
            group = stream_group("trainer-e2e")
            state = trainer.get(f"/v1/runs/{run['run_id']}").json()
            assert state["state"] != "failed", state
            if group is not None and group["entries-read"] >= length and group["lag"] == 0:
                return group
            return None

        group = wait_for("the GRPO run reading every trajectory", read_all, limit_s=600)
        figures["trainer_group"] = {k: group[k] for k in ("entries-read", "lag", "pending")}
        state = trainer.get(f"/v1/runs/{run['run_id']}").json()
        figures["grpo_run"] = {k: state.get(k) for k in ("state", "step", "policy_version")}
        trainer.post(f"/v1/runs/{run['run_id']}/stop", json={})


def containers(service: str) -> list[str]:
    return compose("ps", "-q", service).split()


def test_scaled_out_a_killed_worker_loses_no_job(stack: None) -> None:
    started = time.monotonic()
    compose(
        "up",
        "-d",
        "--wait",
        "--wait-timeout",
        "900",
        "--scale",
        "synth-worker=2",
        "--scale",
        "envhost=2",
        "--scale",
        "rollout=2",
        timeout=1200,
    )
    figures["scale_out_s"] = round(time.monotonic() - started)
    for service in ("synth-worker", "envhost", "rollout"):
        assert len(containers(service)) == 2, service
    with client(SYNTH) as synth:
        job = (
            synth.post("/v1/jobs/environments", json={"count": 60, "seed": 23, "split": "train"})
            .raise_for_status()
            .json()
        )

        def running_worker() -> str | None:
            for container in containers("synth-worker"):
                if f"job {job['id']}: run 1 started" in container_logs(container):
                    return container
            return None

        victim = wait_for("a worker starting the job", running_worker, limit_s=300)
        state = synth.get(f"/v1/jobs/{job['id']}").json()
        assert state["state"] == "running", state
        docker("kill", victim)
        done = finished_job(synth, job["id"], limit_s=900)
        ids = job_environments(synth, job["id"])
        assert len(ids) == len(set(ids)) == 60, done
        assert done["result"]["registered"] + done["result"].get("duplicates", 0) >= 60, done
        figures["killed_worker_job"] = {"attempts": done.get("attempts"), "environments": 60}


def episode_owner(episode_id: str) -> str:
    """The replica URL recorded for the episode (written just after it opened)."""
    query = f"SELECT owner_url FROM episodes WHERE id = '{episode_id}'"

    def recorded() -> str:
        argv = ("exec", "-T", "postgres", "psql", "-U", "astra", "-d", "astra", "-tAc", query)
        return compose(*argv).strip()

    owner: str = wait_for(f"the owner of {episode_id}", recorded, limit_s=60)
    return owner


def test_one_address_reaches_episodes_on_both_envhost_replicas(stack: None) -> None:
    import asyncio

    spec = counter_spec()
    owners: dict[str, str] = {}
    with client(ENVS) as envs:
        for _ in range(40):
            episode = envs.post("/v1/episodes", json={"env_id": spec.id}).raise_for_status().json()
            owner = episode_owner(episode["id"])
            if owner in owners.values():
                envs.delete(f"/v1/episodes/{episode['id']}").raise_for_status()
                continue
            owners[episode["id"]] = owner
            if len(owners) == 2:
                break
        assert len(owners) == 2, f"episodes landed on one replica only: {owners}"
        for episode_id in owners:
            url = f"{ENVS}/episodes/{episode_id}/mcp"
            assert asyncio.run(call_twice(url)) == [1, 2]
            envs.delete(f"/v1/episodes/{episode_id}").raise_for_status()
    figures["envhost_replicas_reached"] = sorted(owners.values())


def test_a_batch_is_spread_over_both_rollout_replicas(stack: None) -> None:
    with client(SYNTH) as synth, client(ROLLOUT) as rollout:
        env_ids = synthesized(synth, 4, seed=31)
        first = redis_cli("XREVRANGE", "astra:trajectories", "+", "-", "COUNT", "1").split()[0]
        started = time.monotonic()
        batch = played(rollout, env_ids, max_tokens=128, seed=9)
        assert batch["published"] == 8, batch
        figures["scaled_rollout_batch_s"] = round(time.monotonic() - started)
        entries = json.loads(redis_cli("--json", "XRANGE", "astra:trajectories", f"({first}", "+"))
        producers = set()
        for _entry_id, fields in entries:
            pairs = dict(zip(fields[::2], fields[1::2], strict=True))
            producers.add(json.loads(pairs["data"])["producer"])
        assert len(producers) == 2, f"one replica played the whole batch: {producers}"


def test_down_leaves_no_container_network_or_volume(stack: None) -> None:
    compose("down", "-v", "--remove-orphans", timeout=600)
    project = os.environ.get("COMPOSE_PROJECT_NAME", "astra")
    label = f"label=com.docker.compose.project={project}"
    assert docker("ps", "-aq", "--filter", label).split() == []
    assert docker("network", "ls", "-q", "--filter", label).split() == []
    assert docker("volume", "ls", "-q", "--filter", label).split() == []
