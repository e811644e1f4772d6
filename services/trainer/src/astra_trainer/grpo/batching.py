"""Groups and adaptive batch filling.

Rollouts of one task share a group id. A group is complete at ``group_size`` members (or,
after ``group_timeout_s``, with whatever it has if that is at least two). A complete group
counts only if the standard deviation of its rewards exceeds ``delta``: a group whose
rollouts all scored the same carries no GRPO signal. Valid groups queue up; a batch is the
first ``batch_groups`` of them, and the extras wait for the next batch. The queue holds at
most ``batch_groups + buffer_groups`` groups (the buffer is smaller than a batch): past that,
``wants_more`` turns false and the reader stops pulling from the stream.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")


@dataclass(slots=True)
class Member(Generic[ItemT]):
    """One rollout in a group: the thing to train on and what grouping needs of it."""

    record_id: str
    reward: float
    policy_version: int
    item: ItemT


@dataclass(slots=True)
class Group(Generic[ItemT]):
    """Rollouts sharing one group id."""

    group_id: str
    members: list[Member[ItemT]] = field(default_factory=list)
    opened_at: float = 0.0

    @property
    def rewards(self) -> list[float]:
        """Rewards of the members, in arrival order."""
        return [m.reward for m in self.members]

    @property
    def reward_std(self) -> float:
        """Population standard deviation of the rewards."""
        return statistics.pstdev(self.rewards) if len(self.members) > 1 else 0.0

    @property
    def oldest_version(self) -> int:
        """The oldest policy version that sampled a member."""
        return min(m.policy_version for m in self.members)


@dataclass(slots=True)
class Dropped(Generic[ItemT]):
    """Members that will never be trained on, and why (acknowledged without training)."""

    reason: str
    members: list[Member[ItemT]]


@dataclass(slots=True)
class FillStats:
    """Counters of what the filter saw, for the batch-fill ratio."""

    complete_groups: int = 0
    valid_groups: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def fill_ratio(self) -> float:
        """Share of complete groups that passed the variance filter."""
        return self.valid_groups / self.complete_groups if self.complete_groups else 0.0


class GroupBuffer(Generic[ItemT]):
    """Collects members into groups and hands out batches of valid groups."""

    def __init__(
        self,
        *,
        group_size: int,
        batch_groups: int,
        buffer_groups: int,
        delta: float,
        max_staleness: int,
        group_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if group_size < 2:
            raise ValueError("group_size must be at least 2")
        if not 0 <= buffer_groups < batch_groups:
            raise ValueError("buffer_groups must be at least 0 and smaller than batch_groups")
        self.group_size = group_size
        self.batch_groups = batch_groups
        self.buffer_groups = buffer_groups
        self.delta = delta
        self.max_staleness = max_staleness
        self.group_timeout_s = group_timeout_s
        self._clock = clock
        self._open: dict[str, Group[ItemT]] = {}
        self._ready: list[Group[ItemT]] = []
        self._known: set[str] = set()
        self.stats = FillStats()

    @property
    def ready_groups(self) -> int:
        """Valid groups waiting for a batch."""
        return len(self._ready)

    @property
    def open_groups(self) -> int:
        """Groups still waiting for members."""
        return len(self._open)

    def record_ids(self) -> set[str]:
        """Every record held (open or ready)."""
        return set(self._known)

    def members(self) -> list[Member[ItemT]]:
        """Every member held (open or ready groups)."""
        return [m for group in (*self._open.values(), *self._ready) for m in group.members]

    def wants_more(self) -> bool:
        """False once a batch and the whole buffer are ready: stop reading the stream."""
        return len(self._ready) < self.batch_groups + self.buffer_groups

    def add(self, group_id: str, member: Member[ItemT]) -> list[Dropped[ItemT]]:
        """Add a member; returns what this decided to drop (a repeat, or a group without signal)."""
        if member.record_id in self._known:
            return [Dropped("duplicate", [member])]
        self._known.add(member.record_id)
        group = self._open.get(group_id)
        if group is None:
            group = self._open[group_id] = Group(group_id, opened_at=self._clock())
        group.members.append(member)
        if len(group.members) >= self.group_size:
            del self._open[group_id]
            return self._close(group)
        return []

    def expire(self) -> list[Dropped[ItemT]]:
        """Close groups open longer than the timeout; returns the ones dropped."""
        now = self._clock()
        dropped: list[Dropped[ItemT]] = []
        for group_id, group in list(self._open.items()):
            if now - group.opened_at >= self.group_timeout_s:
                del self._open[group_id]
                if len(group.members) < 2:
                    dropped.append(self._drop("incomplete", group))
                else:
                    dropped.extend(self._close(group))
        return dropped

    def take_batch(self, current_version: int) -> tuple[list[Group[ItemT]], list[Dropped[ItemT]]]:
        """The next batch (empty until ``batch_groups`` valid, fresh groups are ready).

        Groups sampled by a policy older than ``current_version - max_staleness`` are dropped
        first. Returns the batch and what was dropped as stale.
        """
        oldest_allowed = current_version - self.max_staleness
        dropped = [
            self._drop("stale", group)
            for group in self._ready
            if group.oldest_version < oldest_allowed
        ]
        self._ready = [g for g in self._ready if g.oldest_version >= oldest_allowed]
        if len(self._ready) < self.batch_groups:
            return [], dropped
        batch, self._ready = self._ready[: self.batch_groups], self._ready[self.batch_groups :]
        for group in batch:
            self._known.difference_update(m.record_id for m in group.members)
        return batch, dropped

    def _close(self, group: Group[ItemT]) -> list[Dropped[ItemT]]:
        self.stats.complete_groups += 1
        if group.reward_std > self.delta:
            self.stats.valid_groups += 1
            self._ready.append(group)
            return []
        return [self._drop("no_reward_variance", group)]

    def _drop(self, reason: str, group: Group[ItemT]) -> Dropped[ItemT]:
        self._known.difference_update(m.record_id for m in group.members)
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + len(group.members)
        return Dropped(reason, group.members)
