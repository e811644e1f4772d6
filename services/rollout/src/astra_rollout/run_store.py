"""Runs recorded in Redis, so that every rollout replica reads, counts and cancels the same run.

One run (a batch, an evaluation or a teacher run) is a handful of keys under
``astra:rollout:run:{id}``:

- the run itself (hash): ``kind``, ``status`` (its status model as created, JSON), ``state``,
  ``total``, ``done``, the kind's counters (``HINCRBY`` / ``HINCRBYFLOAT``), ``error``,
  ``finished_at``, ``cancelled``;
- ``:plan`` (hash): what every replica needs to play a unit (the request, the specs);
- ``:results`` (hash): one row per finished unit, by unit index; a unit is recorded only once
  (``HSETNX``), whichever replica finished it and however often it was delivered;
- ``:order`` (list): what the kind lists in finishing order (entry rows, trajectory ids);
- ``:failures`` (list): the most recent failures;
- ``:trajectories`` (hash): trajectories kept with the run (evaluations, teacher runs);
- ``:groups`` and ``:group:{g}`` (batches): episodes done per GRPO group, distinct rewards.

Every key expires ``run_retention_s`` after the run's last write. Recording a unit and
ending the run when its last unit is recorded happen in one Lua script, atomically.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from astra_proto import JobState, Trajectory

RUN_PREFIX = "astra:rollout:run"
RUN_INDEX = "astra:rollout:runs"
WAIT_POLL_S = 0.05
TRAJECTORY_NAMESPACE = uuid.UUID("5b0c8f1e-6f2a-4d0e-9a55-3c1f0d2b7e41")


@dataclass(frozen=True)
class RunKeys:
    """The Redis keys of one run."""

    run_id: str

    @property
    def meta(self) -> str:
        return f"{RUN_PREFIX}:{self.run_id}"

    @property
    def plan(self) -> str:
        return f"{self.meta}:plan"

    @property
    def results(self) -> str:
        return f"{self.meta}:results"

    @property
    def order(self) -> str:
        return f"{self.meta}:order"

    @property
    def failures(self) -> str:
        return f"{self.meta}:failures"

    @property
    def trajectories(self) -> str:
        return f"{self.meta}:trajectories"

    @property
    def groups(self) -> str:
        return f"{self.meta}:groups"

    def group_rewards(self, group: str) -> str:
        return f"{self.meta}:group:{group}"


def run_index(kind: str) -> str:
    """The sorted set of one kind's run ids, scored by creation time."""
    return f"{RUN_INDEX}:{kind}"


# KEYS: 1 run, 2 results, 3 order, 4 failures, 5 groups, 6 the group's reward set, 7 trajectories
# ARGV: 1 unit, 2 result row, 3 ttl ms, 4 now, 5 order value, 6 failure row, 7 failures kept,
#       8 group, 9 group size, 10 group reward, 11 trajectory id, 12 trajectory JSON,
#       then triples (i|f, counter, amount). Empty strings mean "none".
# Returns 1 when recorded, 0 when the unit was recorded before or the run has ended.
_RECORD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[5]) end
for i = 13, #ARGV, 3 do
  if ARGV[i] == 'f' then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  end
end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[6])
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[7]), -1)
end
if ARGV[8] ~= '' then
  local n = redis.call('HINCRBY', KEYS[5], ARGV[8], 1)
  redis.call('SADD', KEYS[6], ARGV[10])
  redis.call('PEXPIRE', KEYS[6], ARGV[3])
  if n == tonumber(ARGV[9]) then
    redis.call('HINCRBY', KEYS[1], 'groups_done', 1)
    if redis.call('SCARD', KEYS[6]) > 1 then
      redis.call('HINCRBY', KEYS[1], 'groups_with_variance', 1)
    end
    redis.call('DEL', KEYS[6])
  end
end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[7], ARGV[11], ARGV[12]) end
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
if done >= tonumber(redis.call('HGET', KEYS[1], 'total')) then
  redis.call('HSET', KEYS[1], 'state', 'succeeded', 'finished_at', ARGV[4])
end
for i = 1, 7 do
  if i ~= 6 then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 1
"""

# KEYS: 1 run. ARGV: 1 now. Returns the state after the call (nil for an unknown run).
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
if state ~= 'running' then return state end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1],
           'cancelled', total - done)
return 'cancelled'
"""


@dataclass(frozen=True)
class UnitRecord:
    """What one finished unit adds to its run."""

    result: str
    """The unit's row in ``:results`` (JSON or an id)."""
    counters: Sequence[tuple[str, int | float]] = ()
    """Counters of the run to add to (floats with ``HINCRBYFLOAT``)."""
    order: str = ""
    """Appended to ``:order`` when not empty."""
    failure: str = ""
    """Appended to ``:failures`` (the newest kept) when not empty."""
    group: str = ""
    """The GRPO group of the unit (batches), counted in ``:groups``."""
    group_size: int = 0
    group_reward: str = ""
    trajectory: Trajectory | None = None
    """Kept in ``:trajectories`` by id."""


class RunStore:
    """Creates, records, reads and cancels runs in Redis (see the module docstring)."""

    def __init__(self, redis: Redis, *, retention_s: float, failures_kept: int = 20) -> None:
        self.redis = redis
        self.retention_ms = max(1, int(retention_s * 1000))
        self.failures_kept = failures_kept
        self._record = redis.register_script(_RECORD)
        self._cancel = redis.register_script(_CANCEL)

    async def create(
        self, kind: str, run_id: str, status_json: str, total: int, plan: Mapping[str, str]
    ) -> None:
        """Record a new running run of ``total`` units with its plan."""
        keys = RunKeys(run_id)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.meta,
                mapping={
                    "kind": kind,
                    "status": status_json,
                    "state": JobState.RUNNING.value,
                    "total": total,
                    "done": 0,
                },
            )
            pipe.pexpire(keys.meta, self.retention_ms)
            if plan:
                pipe.hset(keys.plan, mapping={k: v for k, v in plan.items()})
                pipe.pexpire(keys.plan, self.retention_ms)
            pipe.zadd(run_index(kind), {run_id: now})
            pipe.zremrangebyscore(run_index(kind), "-inf", now - self.retention_ms / 1000)
            await pipe.execute()

    async def meta(self, run_id: str) -> dict[str, str] | None:
        """The run's hash as text, or None when unknown (or expired)."""
        raw = await self.redis.hgetall(RunKeys(run_id).meta)
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def state(self, run_id: str) -> JobState | None:
        """The run's state, or None when unknown."""
        value = await self.redis.hget(RunKeys(run_id).meta, "state")
        return JobState(_text(value)) if value is not None else None

    async def plan(self, run_id: str, *fields: str) -> list[str | None]:
        """Fields of the run's plan (None where missing)."""
        values = await self.redis.hmget(RunKeys(run_id).plan, list(fields))
        return [_text(v) if v is not None else None for v in values]

    async def plan_once(self, run_id: str, field: str, value: str) -> str:
        """Set a plan field unless set; returns the value that holds (the first writer's)."""
        key = RunKeys(run_id).plan
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, field, value)
            pipe.hget(key, field)
            _, held = await pipe.execute()
        return _text(held) if held is not None else value

    async def record(self, run_id: str, unit: int, record: UnitRecord) -> bool:
        """Add one finished unit to its run, once; True when this call recorded it (False:
        recorded before, or the run has ended). The last unit ends the run as SUCCEEDED."""
        keys = RunKeys(run_id)
        args: list[str | int | float] = [
            unit,
            record.result,
            self.retention_ms,
            datetime.now(UTC).isoformat(),
            record.order,
            record.failure,
            self.failures_kept,
            record.group,
            record.group_size,
            record.group_reward,
            record.trajectory.id if record.trajectory is not None else "",
            record.trajectory.model_dump_json() if record.trajectory is not None else "",
        ]
        for name, amount in record.counters:
            args += ["f" if isinstance(amount, float) else "i", name, amount]
        group_key = keys.group_rewards(record.group) if record.group else keys.group_rewards("-")
        recorded = await self._record(
            keys=[
                keys.meta,
                keys.results,
                keys.order,
                keys.failures,
                keys.groups,
                group_key,
                keys.trajectories,
            ],
            args=args,
        )
        return bool(recorded)

    async def cancel(self, run_id: str) -> JobState | None:
        """End a running run as CANCELLED (``cancelled`` = units not done); returns the state
        it is in afterwards, None when unknown. Workers drop its units from now on."""
        state = await self._cancel(
            keys=[RunKeys(run_id).meta], args=[datetime.now(UTC).isoformat()]
        )
        return JobState(_text(state)) if state is not None else None

    async def fail(self, run_id: str, error: str) -> None:
        """End a running run as FAILED with ``error`` (it could not be queued)."""
        key = RunKeys(run_id).meta
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "state": JobState.FAILED.value,
                    "error": error,
                    "finished_at": datetime.now(UTC).isoformat(),
                },
            )
            await pipe.execute()

    async def run_ids(self, kind: str) -> list[str]:
        """Ids of the kind's runs within the retention, oldest first."""
        cutoff = time.time() - self.retention_ms / 1000
        ids = await self.redis.zrangebyscore(run_index(kind), cutoff, "+inf")
        return [_text(i) for i in ids if isinstance(i, bytes | str)]

    async def ordered(self, run_id: str, start: int = 0, stop: int = -1) -> list[str]:
        """``:order`` from ``start`` to ``stop`` (inclusive, as LRANGE)."""
        values = await self.redis.lrange(RunKeys(run_id).order, start, stop)
        return [_text(v) for v in values]

    async def ordered_count(self, run_id: str) -> int:
        """How many values ``:order`` holds."""
        return int(await self.redis.llen(RunKeys(run_id).order))

    async def results(self, run_id: str, units: Sequence[str]) -> list[str | None]:
        """The result rows of ``units``."""
        if not units:
            return []
        values = await self.redis.hmget(RunKeys(run_id).results, list(units))
        return [_text(v) if v is not None else None for v in values]

    async def failures(self, run_id: str) -> list[str]:
        """The most recent failure rows, oldest first."""
        return [_text(v) for v in await self.redis.lrange(RunKeys(run_id).failures, 0, -1)]

    async def trajectories(self, run_id: str, ids: Sequence[str]) -> list[Trajectory | None]:
        """Kept trajectories by id (None where unknown or expired)."""
        if not ids:
            return []
        values = await self.redis.hmget(RunKeys(run_id).trajectories, list(ids))
        return [Trajectory.model_validate_json(v) if v is not None else None for v in values]

    async def wait(self, run_id: str) -> None:
        """Return once the run has ended (or is unknown)."""
        while True:
            state = await self.state(run_id)
            if state is None or state.terminal:
                return
            await asyncio.sleep(WAIT_POLL_S)


def unit_trajectory_id(run_id: str, unit: int) -> str:
    """The trajectory id of a run's unit: the same every time the unit is played, so a
    replayed unit publishes (and keeps) the same record id."""
    return f"traj_{uuid.uuid5(TRAJECTORY_NAMESPACE, f'{run_id}/{unit}').hex}"


def lifecycle(meta: Mapping[str, str]) -> dict[str, Any]:
    """The status fields every run kind reads from its hash: state, error, finished_at."""
    finished = meta.get("finished_at")
    return {
        "state": JobState(meta["state"]),
        "error": meta.get("error"),
        "finished_at": datetime.fromisoformat(finished) if finished is not None else None,
    }


def counter(meta: Mapping[str, str], name: str) -> int:
    """An integer counter of the run's hash (0 when unset)."""
    return int(meta.get(name, "0"))


def float_counter(meta: Mapping[str, str], name: str) -> float:
    """A float counter of the run's hash (0.0 when unset)."""
    return float(meta.get(name, "0"))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
