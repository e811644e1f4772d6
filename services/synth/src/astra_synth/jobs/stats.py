"""Yield statistics of an environment-synthesis job, kept up to date while it runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from astra_proto import EnvironmentSpec


@dataclass
class YieldStats:
    """Counts over the environments a job registered (and the ones it found registered
    already, which count as ``duplicates``)."""

    registered: int = 0
    duplicates: int = 0
    hops: Counter[int] = field(default_factory=Counter)
    scenario_types: Counter[str] = field(default_factory=Counter)
    tools_per_environment: Counter[int] = field(default_factory=Counter)
    domains: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)

    def add(self, spec: EnvironmentSpec, *, created: bool) -> None:
        """Count one environment the job produced."""
        if not created:
            self.duplicates += 1
        self.registered += 1
        self.hops[spec.hops] += 1
        self.scenario_types[spec.scenario_type.value if spec.scenario_type else "none"] += 1
        self.tools_per_environment[len(spec.tool_names())] += 1
        self.domains[spec.domain] += 1
        self.splits[spec.split] += 1

    def as_dict(self, rejected: dict[str, int]) -> dict[str, Any]:
        """JSON form, with the job's rejections by reason."""

        def keyed(counter: Counter[Any]) -> dict[str, int]:
            return {str(key): counter[key] for key in sorted(counter)}

        return {
            "registered": self.registered,
            "duplicates": self.duplicates,
            "hops": keyed(self.hops),
            "scenario_types": keyed(self.scenario_types),
            "tools_per_environment": keyed(self.tools_per_environment),
            "domains": keyed(self.domains),
            "splits": keyed(self.splits),
            "mean_hops": _mean(self.hops),
            "mean_tools": _mean(self.tools_per_environment),
            "rejected": dict(sorted(rejected.items())),
        }


def _mean(counter: Counter[int]) -> float | None:
    total = sum(counter.values())
    if not total:
        return None
    return round(sum(value * n for value, n in counter.items()) / total, 3)
