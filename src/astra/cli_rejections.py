"""What a synthesis job rejected, for people: reasons with counts and a few examples."""

from __future__ import annotations

from astra.cli_support import console
from astra_common.clients.synth import SynthClient
from astra_proto import JobRejection, SynthesisJob

EXAMPLES_PER_REASON = 2
EXCERPT_CHARS = 160


async def print_rejections(synth: SynthClient, job: SynthesisJob) -> None:
    """Print the job's rejections by stage and reason, most frequent first, each with up to
    ``EXAMPLES_PER_REASON`` examples (which item, why, the start of the model's reply)."""
    counts = [
        (stage.stage, reason, count)
        for stage in job.progress
        for reason, count in stage.rejected.items()
    ]
    if not counts:
        return
    total = sum(count for _, _, count in counts)
    console.print(f"{total} rejected:", highlight=False)
    for stage, reason, count in sorted(counts, key=lambda c: -c[2]):
        console.print(f"  {count} x {reason} (at {stage})", highlight=False, markup=False)
        page = await synth.job_rejections(
            job.id, stage=stage, reason=reason, limit=EXAMPLES_PER_REASON
        )
        for record in page.items:
            console.print(f"      {describe(record)}", highlight=False, markup=False)
    console.print(f"every record: astra synth rejections {job.id}", highlight=False)


def describe(record: JobRejection) -> str:
    """One line about one rejection record."""
    parts = [record.item or "an item"]
    if record.message:
        parts.append(record.message)
    if record.excerpt:
        parts.append(f"reply: {one_line(record.excerpt, EXCERPT_CHARS)!r}")
    return " - ".join(parts)


def one_line(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
