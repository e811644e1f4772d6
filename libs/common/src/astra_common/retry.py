"""One retry policy for transient faults of Redis and the database, built on tenacity.

Long-running work (a GRPO run reading the stream, a synthesis job writing its final state)
must survive a dependency that is briefly slow or restarting, and fail only when it stays down
past a stated limit. Every retry is logged with the exception, so an outage leaves a trace.

```python
from astra_common.retry import retry_transient

status = await retry_transient(lambda: repo.mark_failed(job_id, reason), what="mark job failed")
```
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions
import sqlalchemy.exc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

T = TypeVar("T")

logger = logging.getLogger("astra.retry")

DEFAULT_GIVE_UP_AFTER_S = 120.0
"""How long a dependency may stay down before the work that needs it fails."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a fault that may pass: a lost or timed-out connection, a restart."""
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(error, redis.exceptions.ResponseError):
        # A server that is loading its data set or is read-only during a failover answers so.
        return str(error).startswith(("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN"))
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        return bool(error.connection_invalidated) or isinstance(
            error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        )
    return isinstance(error, ConnectionError | TimeoutError)


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s failed (attempt %d, %.1f s so far): %s: %s; retrying in %.1f s",
            what,
            state.attempt_number,
            state.seconds_since_start,
            type(error).__name__,
            error,
            wait,
        )

    return log


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    give_up_after_s: float = DEFAULT_GIVE_UP_AFTER_S,
    max_wait_s: float = 10.0,
) -> T:
    """Await ``operation()``, retrying transient faults with jittered exponential backoff.

    Non-transient errors propagate at once. A transient fault that persists past
    ``give_up_after_s`` propagates as the last error, after a log line naming ``what``.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(give_up_after_s),
        wait=wait_exponential_jitter(initial=0.2, max=max_wait_s),
        before_sleep=_log_retry(what),
        reraise=True,
    )

    async def attempt() -> T:
        # Awaited here: tenacity awaits only coroutine functions, and ``operation`` is often a
        # lambda returning an awaitable, whose result it would hand back un-awaited.
        return await operation()

    try:
        return await retrying(attempt)
    except BaseException as error:
        if is_transient(error):
            logger.error("%s: giving up after %.0f s: %s", what, give_up_after_s, error)
        raise
