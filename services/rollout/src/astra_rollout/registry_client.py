"""The environment registry (synth API): specs by id, and ids matching a query."""

from __future__ import annotations

from typing import Protocol

from astra_common.clients import ServiceError, ServiceUnreachable
from astra_common.clients.synth import SynthClient
from astra_proto import EnvironmentSpec
from astra_proto.api.rollout import RegistryQuery
from astra_proto.api.synth import EnvironmentQuery


class RegistryError(Exception):
    """The registry refused or failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class EnvironmentSource(Protocol):
    """Where batches get environment specs."""

    async def get(self, env_id: str) -> EnvironmentSpec:
        """The spec of ``env_id``; raises ``RegistryError`` (status 404 when unknown)."""
        ...

    async def query(self, query: RegistryQuery) -> list[str]:
        """Ids of the environments matching ``query``, in registry order."""
        ...


class SynthRegistry:
    """``EnvironmentSource`` over the synth API's registry, through ``synth``; specs cached
    (they are immutable)."""

    def __init__(self, synth: SynthClient) -> None:
        self._synth = synth
        self._specs: dict[str, EnvironmentSpec] = {}

    async def get(self, env_id: str) -> EnvironmentSpec:
        cached = self._specs.get(env_id)
        if cached is not None:
            return cached
        try:
            spec = await self._synth.get_environment(env_id)
        except ServiceError as exc:
            raise self._error(f"reading environment {env_id!r}", exc) from None
        self._specs[env_id] = spec
        return spec

    async def query(self, query: RegistryQuery) -> list[str]:
        filters = EnvironmentQuery.model_validate(query.model_dump(exclude={"limit", "offset"}))
        try:
            return await self._synth.environment_ids(
                filters, limit=query.limit, offset=query.offset
            )
        except ServiceError as exc:
            raise self._error("querying environments", exc) from None

    def _error(self, action: str, error: ServiceError) -> RegistryError:
        if isinstance(error, ServiceUnreachable):
            return RegistryError(
                f"environment registry unreachable at {self._synth.base_url}: {error}"
            )
        if not error.detail:  # an answer that is not what the route promises
            return RegistryError(f"registry failed {action}: {error}", status=error.status)
        return RegistryError(
            f"registry refused {action} (HTTP {error.status}): {error.detail[:300]}",
            status=error.status,
        )
