"""Policy clients of the runs this replica is playing units of, one per run, shared by its
units (so they share the client's keep-alive connections) and closed once none is in flight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from astra_rollout.policy import PolicyClient


@dataclass
class _Shared:
    policy: PolicyClient
    users: int = 0


class RunPolicies:
    """Hands out one ``PolicyClient`` per run; ``release`` closes it after its last user."""

    def __init__(self) -> None:
        self._clients: dict[str, _Shared] = {}

    def acquire(self, run_id: str, build: Callable[[], PolicyClient]) -> PolicyClient:
        """The run's client (built with ``build`` when none is open); pair with ``release``."""
        shared = self._clients.get(run_id)
        if shared is None:
            shared = self._clients[run_id] = _Shared(build())
        shared.users += 1
        return shared.policy

    async def release(self, run_id: str) -> None:
        """One user of the run's client is done; the last one closes it."""
        shared = self._clients.get(run_id)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del self._clients[run_id]
            await shared.policy.aclose()

    async def aclose(self) -> None:
        """Close every client."""
        clients, self._clients = self._clients, {}
        for shared in clients.values():
            await shared.policy.aclose()
