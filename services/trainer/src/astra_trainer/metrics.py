"""Training metrics on ``/metrics``: the newest record of each run's ``metrics.jsonl``.

Runs are separate processes; they write their metrics to their run directory and this
collector reads the newest step record of each at scrape time, labelled by run id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from astra_trainer.run_files import read_metrics

GAUGES: dict[str, str] = {
    "loss": "Training loss of the newest step",
    "reward_mean": "Mean trajectory reward in the newest GRPO batch",
    "reward_std": "Std of trajectory rewards in the newest GRPO batch",
    "batch_fill_ratio": "Share of complete groups with reward variance (GRPO)",
    "turns_mean": "Mean turns per trajectory in the newest GRPO batch",
    "calls_mean": "Mean tool calls per trajectory in the newest GRPO batch",
    "tokens_per_second": "Tokens per second of the newest step",
    "stream_lag": "Entries of the stream the consumer group has not been delivered",
    "policy_version": "Policy version after the newest step",
    "step": "Optimizer steps done",
}


class RunMetricsCollector(Collector):
    """Gauges ``astra_trainer_<name>{run=...}`` from every run directory under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(f"astra_trainer_{name}", text, labels=["run"])
            for name, text in GAUGES.items()
        }
        if self.root.is_dir():
            for run_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
                records = [r for r in read_metrics(run_dir) if "loss" in r or "step" in r]
                if not records:
                    continue
                newest = records[-1]
                for name, family in families.items():
                    value = newest.get(name)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        family.add_metric([run_dir.name], float(value))
        yield from families.values()
