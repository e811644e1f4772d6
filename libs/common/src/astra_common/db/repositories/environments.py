"""The environment registry: immutable, content-addressed specs."""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from astra_common.db.errors import ImmutableError
from astra_common.db.models import EnvironmentRow, JobEnvironmentRow
from astra_common.db.repositories._common import (
    DEFAULT_LIMIT,
    check_page,
    get_row,
    insert_if_absent,
    utc_now,
)
from astra_proto import EnvironmentSpec, ScenarioType


@dataclass(frozen=True)
class EnvironmentFilter:
    """Which environments to list or count; fields left None do not filter."""

    kind: str | None = None
    source: str | None = None
    domain: str | None = None
    scenario_type: ScenarioType | None = None
    split: str | None = None
    job_id: str | None = None
    min_hops: int | None = None
    max_hops: int | None = None

    def clauses(self) -> builtins.list[ColumnElement[bool]]:
        """The WHERE clauses this filter stands for."""
        clauses: builtins.list[ColumnElement[bool]] = []
        equal_to = {
            EnvironmentRow.kind: self.kind,
            EnvironmentRow.source: self.source,
            EnvironmentRow.domain: self.domain,
            EnvironmentRow.scenario_type: self.scenario_type.value if self.scenario_type else None,
            EnvironmentRow.split: self.split,
        }
        clauses.extend(column == value for column, value in equal_to.items() if value is not None)
        if self.job_id is not None:  # registered first by the job, or produced again by it
            produced = select(JobEnvironmentRow.env_id).where(
                JobEnvironmentRow.job_id == self.job_id
            )
            clauses.append(
                or_(EnvironmentRow.job_id == self.job_id, EnvironmentRow.id.in_(produced))
            )
        if self.min_hops is not None:
            clauses.append(EnvironmentRow.hops >= self.min_hops)
        if self.max_hops is not None:
            clauses.append(EnvironmentRow.hops <= self.max_hops)
        return clauses


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a spec: the stored spec, and whether this call stored it."""

    spec: EnvironmentSpec
    created: bool


class EnvironmentRepository:
    """The environment registry. Specs are immutable: there is no update, only new ids."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def link_job(self, job_id: str, env_id: str) -> None:
        """Record that ``job_id`` produced ``env_id`` (idempotent), so filtering by the job
        finds environments an earlier job registered first."""
        await insert_if_absent(
            self.session, JobEnvironmentRow, {"job_id": job_id, "env_id": env_id}
        )

    async def register(self, spec: EnvironmentSpec) -> Registration:
        """Store ``spec`` unless its id is registered already, and return the stored spec.

        Registering the same id again is a no-op that returns the first registration (its
        provenance and certificate included). ``ImmutableError`` when ``spec.id`` is not the
        hash of the spec's content, e.g. because the spec was changed after it was built.
        """
        expected = spec.content_id()
        if spec.id != expected:
            raise ImmutableError(
                f"spec id {spec.id!r} does not match its content ({expected!r}); "
                "a changed spec is a new environment"
            )
        provenance = spec.provenance
        inserted = await insert_if_absent(
            self.session,
            EnvironmentRow,
            {
                "id": spec.id,
                "spec": spec.model_dump(mode="json"),
                "kind": spec.kind,
                "source": provenance.source if provenance else None,
                "domain": spec.domain,
                "scenario_type": spec.scenario_type.value if spec.scenario_type else None,
                "hops": spec.hops,
                "split": spec.split,
                "job_id": provenance.job_id if provenance else None,
                "created_at": utc_now(),
            },
        )
        return Registration(spec=await self.get(spec.id), created=inserted)

    async def get(self, env_id: str) -> EnvironmentSpec:
        """The spec; ``NotFoundError`` when no environment has that id."""
        row = await get_row(self.session, EnvironmentRow, "environment", env_id)
        return EnvironmentSpec.model_validate(row.spec)

    async def exists(self, env_id: str) -> bool:
        """Whether an environment with that id is registered."""
        found = await self.session.scalar(
            select(EnvironmentRow.id).where(EnvironmentRow.id == env_id)
        )
        return found is not None

    async def list(
        self,
        where: EnvironmentFilter | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> builtins.list[EnvironmentSpec]:
        """Specs matching ``where``, oldest registration first (a stable order for paging)."""
        check_page(limit, offset)
        query = (
            select(EnvironmentRow.spec)
            .where(*(where or EnvironmentFilter()).clauses())
            .order_by(EnvironmentRow.created_at, EnvironmentRow.id)
            .limit(limit)
            .offset(offset)
        )
        return [EnvironmentSpec.model_validate(spec) for spec in await self.session.scalars(query)]

    async def count(self, where: EnvironmentFilter | None = None) -> int:
        """How many environments match ``where``."""
        query = (
            select(func.count())
            .select_from(EnvironmentRow)
            .where(*(where or EnvironmentFilter()).clauses())
        )
        return (await self.session.execute(query)).scalar_one()
