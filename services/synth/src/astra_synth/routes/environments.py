"""The environment registry over REST: register, list with filters, read one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from astra_common.db import Database, EnvironmentFilter, ImmutableError, NotFoundError
from astra_common.query_bounds import QueryCount, QueryOffset
from astra_proto import EnvironmentSpec, ScenarioType
from astra_proto.api.synth import (
    EnvironmentPage,
    EnvironmentSummary,
    Registered,
    VerificationReport,
)
from astra_synth.jobs.executor import EnvironmentExecutor, ExecutionUnavailable
from astra_synth.procedural import (
    certificate_from_outcomes,
    certificate_mismatches,
    reference_calls,
)

MAX_PAGE = 500


def environments_router(
    database: Database,
    auth: Callable[..., Awaitable[None]],
    executor_factory: Callable[[], EnvironmentExecutor],
) -> APIRouter:
    """Routes of the environment registry; ``executor_factory`` reaches envhost's sandbox."""
    router = APIRouter(prefix="/environments", tags=["environments"])

    @router.post("", dependencies=[Depends(auth)], summary="Register an environment spec")
    async def register(spec: EnvironmentSpec, response: Response) -> Registered:
        try:
            async with database.transaction() as repos:
                registration = await repos.environments.register(spec)
        except ImmutableError as exc:
            raise HTTPException(409, detail=str(exc)) from None
        response.status_code = 201 if registration.created else 200
        return Registered(id=registration.spec.id, created=registration.created)

    @router.get("", summary="Environments matching every given filter")
    async def list_environments(
        kind: str | None = None,
        source: str | None = None,
        domain: str | None = None,
        scenario_type: ScenarioType | None = None,
        split: str | None = None,
        job_id: str | None = None,
        min_hops: QueryCount = None,
        max_hops: QueryCount = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: QueryOffset = 0,
    ) -> EnvironmentPage:
        where = EnvironmentFilter(
            kind=kind,
            source=source,
            domain=domain,
            scenario_type=scenario_type,
            split=split,
            job_id=job_id,
            min_hops=min_hops,
            max_hops=max_hops,
        )
        async with database.transaction() as repos:
            total = await repos.environments.count(where)
            specs = await repos.environments.list(where, limit=limit, offset=offset)
        return EnvironmentPage(total=total, items=[EnvironmentSummary.of(s) for s in specs])

    @router.get("/{env_id}", summary="One environment: spec and verification certificate")
    async def read(env_id: str) -> EnvironmentSpec:
        return await _get(database, env_id)

    @router.post(
        "/{env_id}/verify",
        dependencies=[Depends(auth)],
        summary="Re-check the certificate: replay every reference call in envhost's sandbox",
    )
    async def verify(env_id: str) -> VerificationReport:
        spec = await _get(database, env_id)
        if spec.certificate is None:
            raise HTTPException(
                422,
                detail=f"environment {env_id} carries no certificate"
                + (
                    " (built-in environments are checked by their own backend)"
                    if spec.builtin
                    else ""
                ),
            )
        calls = reference_calls(spec)
        try:
            async with executor_factory() as executor:
                outcomes = await executor.replay(spec.tools, calls)
        except ExecutionUnavailable as exc:
            raise HTTPException(503, detail=str(exc)) from None
        fresh = certificate_from_outcomes(spec, outcomes)
        problems = certificate_mismatches(spec, fresh)
        return VerificationReport(
            env_id=env_id, holds=not problems, replays=len(calls), problems=problems
        )

    return router


async def _get(database: Database, env_id: str) -> EnvironmentSpec:
    try:
        async with database.transaction() as repos:
            return await repos.environments.get(env_id)
    except NotFoundError:
        raise HTTPException(404, detail=f"no environment {env_id!r} is registered") from None
