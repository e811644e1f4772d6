"""The retry policies, built on tenacity: transient faults of Redis and the database, and HTTP
calls to other services and model servers.

Long-running work (a GRPO run reading the stream, a synthesis job writing its final state)
must survive a dependency that is briefly slow or restarting, and fail only when it stays down
past a stated limit. Every retry is logged with the exception, so an outage leaves a trace.

```python
from astra_common.retry import retry_transient

status = await retry_transient(lambda: repo.mark_failed(job_id, reason), what="mark job failed")
```

HTTP callers classify each reply themselves (which statuses are final for them) and share the
rest: what is transient, the backoff, ``Retry-After``, the log line and the attempt count:

```python
async def post() -> httpx.Response:
    reply = await http.post(url, json=body)
    if reply.status_code != 200 and is_retryable_status(reply.status_code):
        raise RetryableReply(f"HTTP {reply.status_code}", reply)
    return reply

reply = (await retry_http(post, policy=HttpRetryPolicy(retries=4), what=url)).value
```
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import httpx
import redis.exceptions
import sqlalchemy.exc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
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


# --- HTTP calls --------------------------------------------------------------------------------


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status says the same request may succeed later.

    The OpenAI SDK's rule (408, 409, 429 and 5xx) plus 425 Too Early, less the two 5xx that
    say the request can never succeed (501 Not Implemented, 505 HTTP Version Not Supported).
    """
    if status in (408, 409, 425, 429):
        return True
    return status >= 500 and status not in (501, 505)


class HttpReply(Protocol):
    """What the HTTP retry policy reads of a response: its status and headers."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class RetryableReply(Exception):
    """Raised by a caller's request function for a reply worth asking again for: a status
    that ``is_retryable_status`` admits (pass the reply, so its ``Retry-After`` is honoured),
    or a success whose body was unreadable. The message says what was wrong."""

    def __init__(self, problem: str, reply: HttpReply | None = None) -> None:
        super().__init__(problem)
        self.reply = reply

    @property
    def retry_after_s(self) -> float | None:
        """The reply's ``Retry-After`` in seconds, when it is a number of seconds."""
        if self.reply is None:
            return None
        try:
            return max(0.0, float(self.reply.headers.get("retry-after", "")))
        except ValueError:
            return None


class HttpRetriesExhausted(Exception):
    """Every attempt of an HTTP call failed transiently; ``last_error`` is the last failure."""

    def __init__(self, what: str, attempts: int, last_error: BaseException) -> None:
        super().__init__(f"{what} failed after {attempts} attempts: {describe_failure(last_error)}")
        self.attempts = attempts
        self.last_error = last_error


def is_transient_http(error: BaseException) -> bool:
    """Whether a failed HTTP attempt is worth repeating: a ``RetryableReply``, or a transport
    failure (connection refused or reset, timeout, broken protocol) other than a URL scheme
    that no transport speaks."""
    if isinstance(error, RetryableReply):
        return True
    return isinstance(error, httpx.TransportError) and not isinstance(
        error, httpx.UnsupportedProtocol
    )


def describe_failure(error: BaseException) -> str:
    """One line for users: a reply's problem, or the exception's type and message."""
    if isinstance(error, RetryableReply):
        return str(error)
    return f"{type(error).__name__}: {error}".rstrip(": ")


@dataclass(frozen=True, slots=True)
class HttpRetryPolicy:
    """How an HTTP call is repeated: ``retries`` after the first attempt, waiting
    ``backoff_s`` doubled at each retry, scaled by a random factor in [0.5, 1] (so clients
    that failed together do not retry together), or the server's ``Retry-After``; every wait
    is capped at ``max_backoff_s``."""

    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0")

    def wait_s(self, retry: int, error: BaseException | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) after ``error``."""
        if isinstance(error, RetryableReply) and (hinted := error.retry_after_s) is not None:
            return min(self.max_backoff_s, hinted)
        delay = min(self.max_backoff_s, self.backoff_s * 2.0 ** (retry - 1))
        return delay * (0.5 + random.random() / 2)


@dataclass(frozen=True, slots=True)
class Attempted(Generic[T]):
    """A call's result and the number of attempts it took."""

    value: T
    attempts: int


async def retry_http(
    request: Callable[[], Awaitable[T]], *, policy: HttpRetryPolicy, what: str
) -> Attempted[T]:
    """Await ``request()`` until it returns, retrying what ``is_transient_http`` admits.

    ``request`` classifies replies itself: it raises ``RetryableReply`` for one worth asking
    again for, and its own error for one that is final (that error propagates at once, as
    does any other non-transient one). When ``policy.retries`` retries are spent, raises
    ``HttpRetriesExhausted`` naming ``what``, the attempts and the last failure.
    """

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return policy.wait_s(state.attempt_number, error)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient_http),
        stop=stop_after_attempt(policy.retries + 1),
        wait=wait,
        before_sleep=_log_retry(what),
        reraise=True,
    )
    attempts = 0

    async def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return await request()

    try:
        value: T = await retrying(attempt)
    except BaseException as error:
        if is_transient_http(error):
            raise HttpRetriesExhausted(what, attempts, error) from error
        raise
    return Attempted(value, attempts)
