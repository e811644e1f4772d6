"""The dataset card (README.md) of an exported SFT dataset."""

from __future__ import annotations

from astra_proto.api.synth import DatasetStats


def dataset_card(
    name: str, stats: DatasetStats, rejected: dict[str, int], parquet: str, jsonl: str
) -> str:
    """Markdown card with Hugging Face front matter (configs pointing at the data files)."""
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {parquet}",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- tool-use",
        "- function-calling",
        "- sft",
        "---",
        "",
        f"# {name}",
        "",
        "Tool-use trajectories for supervised fine-tuning, in the OpenAI chat format: each row "
        "has `messages` (system, user, assistant turns with `tool_calls`, `tool` results, and "
        "a final assistant answer) and `tools` (the OpenAI function specs offered, as one JSON "
        "string). Tool-call `arguments` are JSON strings. Produced by ASTRA's trajectory "
        "synthesis.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        f'dataset = load_dataset("{name}")  # or the folder path: reads {parquet}',
        f'same_rows = load_dataset("json", data_files="{jsonl}")',
        "```",
        "",
        "TRL's `SFTTrainer` trains on it directly (it parses the `tools` string).",
        "",
        "## Statistics",
        "",
        "| figure | value |",
        "|---|---|",
        f"| records | {stats.records} |",
        f"| tool calls per record (mean) | {stats.tool_calls_mean:.2f} |",
        f"| tool calls per record (max) | {stats.tool_calls_max} |",
        f"| assistant messages with parallel calls | {stats.parallel_call_messages} |",
        f"| messages per record (mean) | {stats.messages_mean:.2f} |",
        f"| tools offered per record (mean) | {stats.tools_offered_mean:.2f} |",
    ]
    if stats.score_mean is not None:
        lines.append(f"| quality score (mean) | {stats.score_mean:.3f} |")
    for title, counts in (("Domains", stats.by_domain), ("Sources", stats.by_source)):
        if counts:
            lines += ["", f"## {title}", "", "| value | records |", "|---|---|"]
            lines += [f"| {key} | {count} |" for key, count in counts.items()]
    if rejected:
        lines += ["", "## Dropped before export", "", "| reason | samples |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in sorted(rejected.items())]
    return "\n".join(lines) + "\n"
