"""What every run (batch, evaluation, teacher run) shares: the hard deadline of its episodes
(the fields of its status are ``astra_proto.api.rollout.RunStatus``).

Runs are recorded in Redis (``run_store``) and their episodes are played as units of the shared
work queue (``work_queue``). Every episode is bounded by a hard deadline (``within_deadline``),
so a unit always ends, even when a tool server or the policy stops answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from astra_proto import Trajectory


def hard_deadline_s(timeout_s: float) -> float:
    """How long one episode may take in all: its time limit (which bounds the conversation)
    plus slack for the steps outside it (opening the episode and its tool session, scoring,
    closing): half the limit, at least 10 s, at most 120 s."""
    return timeout_s + min(120.0, max(10.0, timeout_s / 2))


async def within_deadline(
    episode: Awaitable[Trajectory], deadline_s: float, fail: Callable[[str], Trajectory]
) -> Trajectory:
    """The episode's trajectory, or ``fail(reason)`` when it has not ended after
    ``deadline_s`` (it is cancelled)."""
    try:
        async with asyncio.timeout(deadline_s):
            return await episode
    except TimeoutError:
        return fail(
            f"episode exceeded its hard deadline of {deadline_s:.0f} s (a tool server or the "
            "policy stopped answering)"
        )
