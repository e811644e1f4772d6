"""The rollout FastAPI app: runs recorded in Redis, their episodes taken from the shared work
queue by whichever replica is free, trajectories to the Redis stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
import redis.asyncio as aioredis
from fastapi import FastAPI

from astra_common.clients.synth import SynthClient
from astra_common.health import redis_check
from astra_common.policy_pointer import read_policy_pointer
from astra_common.service import bearer_auth, create_service_app
from astra_common.streams import StreamPublisher
from astra_proto import (
    TRAJECTORY_STREAM,
    DistractorRef,
    EnvironmentSpec,
    StreamEnvelope,
    Trajectory,
)
from astra_proto.api.rollout import DistractorOptions, PolicyEndpoint
from astra_rollout import __version__
from astra_rollout.batches import BatchRunner, DistractorSelector
from astra_rollout.distractors import ToolIndex
from astra_rollout.envhost_client import EnvhostClient
from astra_rollout.evaluation import EvaluationRunner
from astra_rollout.policy import PolicyClient
from astra_rollout.registry_client import EnvironmentSource, SynthRegistry
from astra_rollout.routes.batches import batches_router
from astra_rollout.routes.evaluations import evaluations_router
from astra_rollout.routes.teacher import teacher_router
from astra_rollout.run_store import RunStore
from astra_rollout.settings import RolloutSettings
from astra_rollout.teacher import TeacherRunner
from astra_rollout.work_queue import WorkQueue

REDIS_CONNECTIONS = 32
"""Connections to Redis per process (policy-version reads and stream writes are short)."""

PUBLISH_TIMEOUT_S = 60.0
"""How long one trajectory may wait for the stream before it counts as a publish error."""


def http_limits(settings: RolloutSettings) -> httpx.Limits:
    """Enough pooled connections for every episode in flight (httpx's default is 100)."""
    n = settings.max_concurrent_episodes
    return httpx.Limits(max_connections=2 * n + 16, max_keepalive_connections=n + 16)


def registry_distractors(registry: EnvironmentSource) -> DistractorSelector:
    """Distractors by similarity bands from every synthetic environment of the registry; the
    index picks up newly registered environments before each selection."""
    index = ToolIndex()

    async def select(env: EnvironmentSpec, options: DistractorOptions) -> list[DistractorRef]:
        await index.update_from(registry)
        return await index.for_batch(env, options)

    return select


def create_app(settings: RolloutSettings, distractors: DistractorSelector | None = None) -> FastAPI:
    """Build the rollout app; ``distractors`` chooses distractor tools (default: by similarity
    bands over the registry's environments, ``astra_rollout.distractors``)."""
    # A blocking pool: episodes that need Redis at once wait for a connection instead of
    # failing with "Too many connections" (the plain pool raises at its cap).
    redis_client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=30
        )
    )
    http = httpx.AsyncClient(limits=http_limits(settings), timeout=60.0, follow_redirects=True)
    n = settings.max_concurrent_episodes
    token_headers = (
        {"Authorization": f"Bearer {settings.envhost_token}"} if settings.envhost_token else {}
    )
    mcp_http = httpx2.AsyncClient(
        headers=token_headers,
        timeout=httpx2.Timeout(30.0, read=300.0),
        limits=httpx2.Limits(max_connections=2 * n + 16, max_keepalive_connections=n + 16),
    )
    publisher = StreamPublisher(redis_client, TRAJECTORY_STREAM, maxlen=settings.stream_maxlen)
    store = RunStore(redis_client, retention_s=settings.run_retention_s)
    queue = WorkQueue(
        redis_client,
        store,
        capacity=settings.max_concurrent_episodes,
        lease_s=settings.work_lease_s,
        max_deliveries=settings.work_max_deliveries,
    )
    producer = f"rollout@{queue.consumer}"

    async def publish(trajectory: Trajectory) -> None:
        envelope = StreamEnvelope[Trajectory](
            record_id=trajectory.id, producer=producer, payload=trajectory
        )
        future = await publisher.publish(envelope)
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await asyncio.shield(future)

    async def policy_version() -> int:
        pointer = await read_policy_pointer(redis_client)
        return pointer.version if pointer is not None else 0

    # Registry reads over the shared client (which the lifespan closes), its 60 s timeout.
    registry = SynthRegistry(SynthClient(settings.synth_url, timeout_s=60.0, http=http))
    episodes = EnvhostClient(
        settings.envhost_url, http=http, mcp_http=mcp_http, token=settings.envhost_token
    )
    runner = BatchRunner(
        settings,
        store=store,
        queue=queue,
        episodes=episodes,
        registry=registry,
        publish=publish,
        policy_version=policy_version,
        policy_http=http,
        distractors=distractors or registry_distractors(registry),
    )
    evaluations = EvaluationRunner(
        store=store,
        queue=queue,
        episodes=episodes,
        registry=registry,
        policy_factory=lambda endpoint: runner.policy_client(endpoint),
        default_limits=runner.default_limits,
    )

    def teacher_policy(endpoint: PolicyEndpoint, token_ids: bool) -> PolicyClient:
        return runner.policy_client(
            endpoint, api_key=settings.teacher_api_key, request_token_ids=token_ids
        )

    teachers = TeacherRunner(
        store=store,
        queue=queue,
        http=http,
        policy_factory=teacher_policy,
        emulator_url=settings.synth_url,
        emulator_token=settings.synth_token,
        # Our own envhost's MCP endpoints get its token; other servers get none.
        mcp_headers=lambda url: token_headers if url.startswith(settings.envhost_url) else {},
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        publisher.start()
        queue.start()
        try:
            yield
        finally:
            try:
                await queue.aclose()
                await runner.aclose()
                await evaluations.aclose()
                await teachers.aclose()
                await publisher.aclose()
            finally:
                await http.aclose()
                await mcp_http.aclose()
                # The pool was passed in: the client does not close it on its own.
                await redis_client.aclose(close_connection_pool=True)

    app = create_service_app(
        service="rollout",
        version=__version__,
        settings=settings,
        routers=[
            batches_router(runner, bearer_auth(settings)),
            evaluations_router(evaluations, bearer_auth(settings)),
            teacher_router(teachers, bearer_auth(settings)),
        ],
        health_checks={"redis": redis_check(redis_client)},
        lifespan=lifespan,
    )
    app.state.work_queue = queue
    app.state.batches = runner
    app.state.evaluations = evaluations
    app.state.teachers = teachers
    return app
