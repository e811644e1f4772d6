"""The shared queue of rollout work: one unit per episode on a Redis stream with a consumer group.

Starting a run puts one entry per unit (``kind``, ``run``, ``unit``) on ``astra:rollout:work``.
Every replica runs one ``WorkQueue`` (consumer group ``rollout``, a consumer name of its own):
it reads only as many units as it has free episode capacity (``max_concurrent_episodes``), so
whichever replica is free takes the work.

Leases: a replica refreshes the claim of every unit it holds (``XCLAIM ... JUSTID``, only for
entries it still owns) at least every ``work_lease_s / 3``. A unit whose holder stopped
refreshing (the process died, or hung) is idle for ``work_lease_s`` and is taken over by
another replica with ``XAUTOCLAIM``. A unit is acked (and deleted) only after its result is
recorded (``RunStore.record``, once per unit whatever the deliveries), so a unit is played at
least once and counted exactly once. A unit delivered more than ``work_max_deliveries`` times
is recorded as a failed episode with the reason instead of being played again, so a run
always ends. A replica that stops cleanly hands its units back at once (their idle time is set
to the lease), so others need not wait for the lease.

Cancel: a cancelled run's units are dropped (acked unplayed) when read, and units in flight
are cancelled by the replica holding them within a refresh interval (at once on the replica
that took the cancel request).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from astra_proto import JobState
from astra_rollout.run_store import RunStore

logger = logging.getLogger(__name__)

WORK_STREAM = "astra:rollout:work"
WORK_GROUP = "rollout"
ENQUEUE_CHUNK = 1000
MAX_TICK_S = 1.0
"""The most time between two refreshes of claims (and checks for cancelled runs)."""
ERROR_BACKOFF_S = 1.0
RECANCEL_S = 0.5
CANCEL_WAIT_S = 60.0

# KEYS: 1 stream. ARGV: 1 group, 2 consumer, 3 idle ms to set ('' = leave at 0), 4.. entry ids.
# Claims again (JUSTID: the delivery count stays) the entries this consumer still owns;
# returns those ids. An entry another replica took over is left to it.
_REFRESH_OWN = """
local kept = {}
for i = 4, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    if ARGV[3] ~= '' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    else
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    end
    table.insert(kept, ARGV[i])
  end
end
return kept
"""


@dataclass(frozen=True)
class WorkUnit:
    """One episode of one run."""

    kind: str
    run_id: str
    index: int


class UnitHandler(Protocol):
    """Plays and records the units of one kind of run."""

    async def play_unit(self, unit: WorkUnit) -> None:
        """Play the unit and record its result (recording twice must count once)."""

    async def fail_unit(self, unit: WorkUnit, reason: str) -> None:
        """Record the unit as a failed episode with ``reason``, without playing it."""


@dataclass
class _Held:
    unit: WorkUnit
    task: asyncio.Task[None] | None = None
    run_cancelled: bool = False


@dataclass
class WorkQueue:
    """The replica's consumer of the work stream (see the module docstring)."""

    redis: Redis
    store: RunStore
    capacity: int
    lease_s: float
    max_deliveries: int
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    stream: str = WORK_STREAM
    group: str = WORK_GROUP
    _handlers: dict[str, UnitHandler] = field(default_factory=dict, init=False)
    _held: dict[str, _Held] = field(default_factory=dict, init=False)
    _room: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _chores: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _claim_cursor: str = field(default="0-0", init=False)
    _stopping: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._refresh = self.redis.register_script(_REFRESH_OWN)
        self._room.set()

    @property
    def tick_s(self) -> float:
        """How often claims are refreshed and cancelled runs looked for."""
        return min(MAX_TICK_S, self.lease_s / 3)

    @property
    def in_flight(self) -> int:
        """Units this replica holds now."""
        return len(self._held)

    def _stopped(self) -> bool:
        return self._stopping

    def register(self, kind: str, handler: UnitHandler) -> None:
        """Play units of ``kind`` with ``handler``."""
        self._handlers[kind] = handler

    async def enqueue(self, kind: str, run_id: str, units: int) -> None:
        """Put units ``0 .. units - 1`` of the run on the stream."""
        await self._ensure_group()
        for start in range(0, units, ENQUEUE_CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for index in range(start, min(units, start + ENQUEUE_CHUNK)):
                    pipe.xadd(self.stream, {"kind": kind, "run": run_id, "unit": index})
                await pipe.execute()

    def start(self) -> None:
        """Start taking units (and refreshing their claims) in the background."""
        if not self._tasks:
            self._stopping = False
            self._tasks = [
                asyncio.create_task(self._take(), name=f"work:{self.consumer}"),
                asyncio.create_task(self._maintain(), name=f"leases:{self.consumer}"),
            ]

    async def aclose(self, *, hand_back: bool = True) -> None:
        """Stop: units in flight are cancelled unacked. With ``hand_back`` their idle time is
        set to the lease so other replicas take them at once; without it they wait out the
        lease, as after a crash."""
        # The loops also stop on the flag: a cancellation racing with a Redis call was seen
        # lost here (Python 3.11), and the loop then went on.
        self._stopping = True
        self._room.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await _cancel_all([h.task for h in self._held.values() if h.task is not None])
        ids = list(self._held)
        self._held.clear()
        if hand_back and ids:
            try:
                await self._refresh(
                    keys=[self.stream],
                    args=[self.group, self.consumer, int(self.lease_s * 1000), *ids],
                )
            except Exception as exc:  # Redis gone: the lease hands them over anyway
                logger.warning("handing back %d units failed: %s", len(ids), exc)

    async def cancel_local(self, run_id: str) -> None:
        """Cancel this replica's units of a cancelled run now (they are acked unplayed)."""
        await self._cancel_runs({run_id})

    # -- internals --------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _take(self) -> None:
        while not self._stopping:
            try:
                await self._ensure_group()
                break
            except Exception as exc:
                logger.warning("work stream not ready: %s", exc)
                await asyncio.sleep(ERROR_BACKOFF_S)
        next_reclaim = 0.0
        while not self._stopping:
            await self._room.wait()
            if self._stopped():
                return
            try:
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + self.tick_s
                    await self._reclaim()
                free = self.capacity - len(self._held)
                if free <= 0:
                    continue
                reply: Any = await self.redis.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=free,
                    block=max(1, int(self.tick_s * 1000)),
                )
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        self._spawn(_text(entry_id), fields, deliveries=1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reading the work stream failed: %s", exc)
                await asyncio.sleep(ERROR_BACKOFF_S)

    async def _reclaim(self) -> None:
        free = self.capacity - len(self._held)
        if free <= 0:
            return
        reply = await self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.lease_s * 1000),
            start_id=self._claim_cursor,
            count=free,
        )
        self._claim_cursor = _text(reply[0])
        entries: list[tuple[Any, Any]] = [e for e in reply[1] if e[1] is not None]
        for entry_id, fields in reply[1]:
            if fields is None:  # deleted from the stream (Redis 6.2 still hands it out)
                self._background(self._ack(_text(entry_id)))
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            pending = await pipe.execute()
        for (entry_id, fields), rows in zip(entries, pending, strict=True):
            deliveries = int(rows[0]["times_delivered"]) if rows else self.max_deliveries + 1
            logger.info("took over unit %s (delivery %d)", _text(entry_id), deliveries)
            self._spawn(_text(entry_id), fields, deliveries=deliveries)

    def _spawn(self, entry_id: str, fields: dict[Any, Any], deliveries: int) -> None:
        if entry_id in self._held:  # already ours and in flight
            return
        values = {_text(k): _text(v) for k, v in fields.items()}
        try:
            unit = WorkUnit(kind=values["kind"], run_id=values["run"], index=int(values["unit"]))
        except (KeyError, ValueError):
            logger.error("dropping malformed work entry %s: %s", entry_id, values)
            self._background(self._ack(entry_id))
            return
        held = _Held(unit=unit)
        self._held[entry_id] = held
        if len(self._held) >= self.capacity:
            self._room.clear()
        held.task = asyncio.create_task(self._handle(entry_id, held, deliveries))
        held.task.add_done_callback(lambda _: self._release(entry_id, held))

    def _release(self, entry_id: str, held: _Held) -> None:
        if self._held.get(entry_id) is held:
            del self._held[entry_id]
        if len(self._held) < self.capacity:
            self._room.set()

    async def _handle(self, entry_id: str, held: _Held, deliveries: int) -> None:
        unit = held.unit
        try:
            state = await self.store.state(unit.run_id)
            handler = self._handlers.get(unit.kind)
            if state is JobState.RUNNING and handler is None:
                logger.error("no handler for work of kind %r; dropping %s", unit.kind, entry_id)
            elif state is JobState.RUNNING and handler is not None:
                if deliveries > self.max_deliveries:
                    await handler.fail_unit(
                        unit,
                        f"the episode was handed out {deliveries} times, more than "
                        f"work_max_deliveries ({self.max_deliveries}): the replicas that held "
                        "it stopped before finishing it",
                    )
                else:
                    await handler.play_unit(unit)
            await self._ack(entry_id)
        except asyncio.CancelledError:
            if held.run_cancelled:
                await asyncio.shield(self._ack(entry_id))
            raise
        except Exception:  # left pending: handed out again after the lease
            logger.exception("unit %s of %s failed; it will be retried", unit.index, unit.run_id)

    async def _ack(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def _maintain(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.tick_s)
            try:
                await self._refresh_claims()
                runs = {h.unit.run_id for h in self._held.values()}
                ended = set()
                for run_id in runs:
                    if await self.store.state(run_id) is not JobState.RUNNING:
                        ended.add(run_id)
                await self._cancel_runs(ended)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("refreshing work claims failed: %s", exc)

    async def _refresh_claims(self) -> None:
        ids = list(self._held)
        if not ids:
            return
        kept = {
            _text(i)
            for i in await self._refresh(
                keys=[self.stream], args=[self.group, self.consumer, "", *ids]
            )
        }
        for entry_id in ids:
            held = self._held.get(entry_id)
            if entry_id not in kept and held is not None and held.task is not None:
                # Taken over by another replica (we were too slow): it plays the unit now.
                logger.warning("unit %s was taken over by another replica", entry_id)
                held.task.cancel()

    async def _cancel_runs(self, run_ids: Iterable[str]) -> None:
        wanted = set(run_ids)
        tasks = []
        for held in list(self._held.values()):
            if held.unit.run_id in wanted and held.task is not None:
                held.run_cancelled = True
                tasks.append(held.task)
        await _cancel_all(tasks)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again while they run: a
    unit waiting on its policy inside an MCP session was seen to swallow the first
    cancellation (Python 3.11), and a unit must not go on after its replica let it go."""
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + CANCEL_WAIT_S
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    if pending:
        logger.error(
            "%d units did not stop within %.0f s of being cancelled", len(pending), CANCEL_WAIT_S
        )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
