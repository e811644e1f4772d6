"""The environment registry (synth API): specs by id, and ids matching a query."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from astra_proto import EnvironmentSpec
from astra_proto.api.rollout import RegistryQuery

PAGE = 500
"""Page size of registry listings (the synth API's maximum)."""


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
    """``EnvironmentSource`` over the synth API at ``base_url``; specs cached (immutable)."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._specs: dict[str, EnvironmentSpec] = {}

    async def get(self, env_id: str) -> EnvironmentSpec:
        cached = self._specs.get(env_id)
        if cached is not None:
            return cached
        response = await self._get(f"/v1/environments/{env_id}")
        if response.status_code != 200:
            raise _error(f"reading environment {env_id!r}", response)
        spec = EnvironmentSpec.model_validate(response.json())
        self._specs[env_id] = spec
        return spec

    async def query(self, query: RegistryQuery) -> list[str]:
        filters = query.model_dump(mode="json", exclude_none=True, exclude={"limit", "offset"})
        ids: list[str] = []
        offset = query.offset
        while len(ids) < query.limit:
            page = min(PAGE, query.limit - len(ids))
            params: dict[str, Any] = {**filters, "limit": page, "offset": offset}
            response = await self._get("/v1/environments", params=params)
            if response.status_code != 200:
                raise _error("querying environments", response)
            items = response.json().get("items", [])
            ids.extend(str(item["id"]) for item in items)
            if len(items) < page:
                break
            offset += len(items)
        return ids

    async def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.get(self.base_url + path, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryError(
                f"environment registry unreachable at {self.base_url}: {type(exc).__name__}: {exc}"
            ) from exc


def _error(action: str, response: httpx.Response) -> RegistryError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return RegistryError(
        f"registry refused {action} (HTTP {response.status_code}): {str(detail)[:300]}",
        status=response.status_code,
    )
