"""Reading the ``astra:policy`` pointer: the one reader every service uses.

The trainer writes the pointer after the policy server holds the new weights; rollout stamps
trajectories with its version and the trainer's API shows it.
"""

from __future__ import annotations

from pydantic import ValidationError
from redis.asyncio import Redis

from astra_proto import POLICY_KEY, PolicyPointer


class PolicyPointerUnreadable(ValueError):
    """``astra:policy`` holds something that is not a ``PolicyPointer``; the message says what."""


async def read_policy_pointer(redis: Redis) -> PolicyPointer | None:
    """The current pointer, or None when no policy was published yet.

    Raises ``PolicyPointerUnreadable`` when the key holds something else (a damaged or foreign
    value), rather than reading it as "no policy" and stamping trajectories with version 0.
    """
    raw = await redis.get(POLICY_KEY)
    if raw is None:
        return None
    try:
        return PolicyPointer.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        raise PolicyPointerUnreadable(
            f"{POLICY_KEY} does not hold a policy pointer ({where}: {first['msg']})"
        ) from None
