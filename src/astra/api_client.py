"""A small client for the services' REST APIs, with errors a person can read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from astra.stack import read_state


class ApiError(RuntimeError):
    """A request failed; the message is one readable line."""


def service_url(service: str, explicit: str | None, state_dir: Path) -> str:
    """The base URL of ``service``: the flag, else ``ASTRA_<SERVICE>_URL``, else the running
    local stack, else the default local port."""
    if explicit:
        return explicit.rstrip("/")
    from_env = os.environ.get(f"ASTRA_{service.upper()}_URL")
    if from_env:
        return from_env.rstrip("/")
    state = read_state(state_dir.resolve())
    if state is not None and state["services"].get(service, {}).get("url"):
        return str(state["services"][service]["url"])
    ports = {"synth": 8100, "envhost": 8101, "rollout": 8102, "trainer": 8103}
    return f"http://127.0.0.1:{ports[service]}"


class ApiClient:
    """Synchronous JSON client for one service."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ``ApiError`` for transport failures and 4xx/5xx answers."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(
                f"cannot reach {self.base_url} (is the stack running? start it with `astra up`)"
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"{method} {self.base_url}{path} failed: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(f"{method} {path} answered {response.status_code}: {_one_line(detail)}")
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.request("POST", path, json=body)


def _one_line(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for error in detail:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        return "; ".join(parts)
    return " ".join(str(detail).split())[:500]
