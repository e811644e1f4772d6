"""What the envhost gateway routes by: the replicas it sees, and who holds what.

Replicas keep episodes and MCP sessions in memory, so a request that names one must reach
the replica that holds it. The gateway learns who that is from the replicas' own answers
(a 307 to the owner, the ``Location`` of a created episode, the ``Mcp-Session-Id`` of an
``initialize`` answer) and keeps it in bounded maps.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Generic, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

EPISODE_MCP = "/episodes/{episode_id}/mcp"
EPISODE_REST = "/v1/episodes/{episode_id}"
"""Served by the replica that holds the episode, and so are the paths below it."""
ENVIRONMENT_MCP = "/envs/{env_id}/mcp"
"""Session era: each client's episode lives in its ``Mcp-Session-Id`` on one replica."""
EPISODES = "/v1/episodes"
"""Creating an episode here: the replica that answers holds it."""


def _pattern(template: str, *, below: bool = False) -> re.Pattern[str]:
    """A path template (``{name}`` for one segment) as a regex; ``below``: subpaths too."""
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(regex + ("(?:/.*)?" if below else ""))


_EPISODE_PATHS = (_pattern(EPISODE_MCP), _pattern(EPISODE_REST, below=True))
_ENVIRONMENT_PATH = _pattern(ENVIRONMENT_MCP)


def episode_of(path: str) -> str | None:
    """The episode a request path names, or None."""
    for pattern in _EPISODE_PATHS:
        if match := pattern.fullmatch(path):
            return match.group("episode_id")
    return None


def is_environment_mcp(path: str) -> bool:
    """Whether ``path`` is an environment's (session-era) MCP endpoint."""
    return _ENVIRONMENT_PATH.fullmatch(path) is not None


def created_episode(method: str, path: str, status: int, location: str | None) -> str | None:
    """The episode a ``POST /v1/episodes`` answer created, from its ``Location``; else None."""
    if method != "POST" or path.rstrip("/") != EPISODES or status != 201 or not location:
        return None
    return episode_of(urlsplit(location).path)


@dataclass(frozen=True)
class Upstream:
    """One envhost replica: where to connect, and the ``Host`` it expects (its own name)."""

    url: str
    host: str

    @classmethod
    def at(cls, url: str) -> Upstream:
        """The replica at ``url`` (its own host name is its Host)."""
        return cls(url.rstrip("/"), urlsplit(url).netloc)


def owner_from_redirect(location: str | None, path: str) -> Upstream | None:
    """The replica a replica's 307 names: ``Location`` is its base URL plus the same path.

    None for any other redirect (not http(s), another path), which is passed to the client.
    """
    if not location:
        return None
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if not parts.path.endswith(path):
        return None
    prefix = parts.path[: len(parts.path) - len(path)]
    return Upstream.at(f"{parts.scheme}://{parts.netloc}{prefix}")


K = TypeVar("K")
V = TypeVar("V")


class Affinity(Generic[K, V]):
    """A map that keeps the ``max_entries`` most recently used entries, and counts how many
    keys each value holds."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._held: Counter[V] = Counter()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.forget(key)
        self._entries[key] = value
        self._held[value] += 1
        while len(self._entries) > self.max_entries:
            _, evicted = self._entries.popitem(last=False)
            self._release(evicted)

    def forget(self, key: K) -> None:
        if (value := self._entries.pop(key, None)) is not None:
            self._release(value)

    def held_by(self, value: V) -> int:
        """How many keys map to ``value``."""
        return self._held[value]

    def _release(self, value: V) -> None:
        self._held[value] -= 1
        if self._held[value] <= 0:
            del self._held[value]

    def __len__(self) -> int:
        return len(self._entries)


class Replicas:
    """The envhost replicas: a fixed list, or every address a host name resolves to.

    With a name (``http://envhost:8080``), Docker's DNS answers with one address per replica;
    the list is resolved again every ``interval_s`` so scaled-up replicas join and stopped
    ones leave. Each address is sent the name as its ``Host``, which replicas accept.
    """

    def __init__(self, *, upstream: str, fixed: Iterable[str] = ()) -> None:
        self.upstream = upstream.rstrip("/")
        self.fixed = [Upstream.at(url) for url in fixed]
        self._current: list[Upstream] = list(self.fixed)
        self._turn = 0

    def current(self) -> list[Upstream]:
        """The replicas seen now."""
        return list(self._current)

    def rotation(self) -> list[Upstream]:
        """Every replica, starting one further along at each call (round robin)."""
        replicas = self._current
        if not replicas:
            return []
        self._turn = (self._turn + 1) % len(replicas)
        return list(islice([*replicas, *replicas], self._turn, self._turn + len(replicas)))

    async def refresh(self) -> None:
        """Resolve the upstream name again (a fixed list stays as it is)."""
        if self.fixed:
            return
        parts = urlsplit(self.upstream)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            kept = len(self._current)
            log.warning("cannot resolve %s (%s); keeping %d replicas", host, exc, kept)
            return
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        found = [
            Upstream(
                f"{parts.scheme}://{f'[{a}]' if ':' in a else a}:{port}{parts.path}", parts.netloc
            )
            for a in addresses
        ]
        if found != self._current:
            log.info("envhost replicas behind %s: %s", host, ", ".join(r.url for r in found))
        self._current = found

    async def keep_resolving(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh()
