"""``astra demo`` and ``astra experiment``: the whole loop on the local stack, with a report."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from rich.console import Console

from astra.loop import LoopConfig, LoopError, LoopResult, Services, run_loop
from astra.report import write_report
from astra.stack import LocalStack
from astra_common.clients import ServiceError
from astra_common.clients.synth import SynthClient
from astra_proto.api.synth import EnvironmentQuery

console = Console()


def new_run_id(kind: str) -> str:
    """A sortable, unique run id."""
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def run_on_stack(
    stack: LocalStack, config: LoopConfig, runs_dir: Path, kind: str, token: str | None = None
) -> tuple[LoopResult, Path]:
    """Run the loop against ``stack`` and write its report under ``runs_dir/<run id>/``."""
    run_id = new_run_id(kind)
    services = Services(
        synth=stack.url("synth"),
        rollout=stack.url("rollout"),
        trainer=stack.url("trainer"),
        token=token,
        timeout_s=120.0,
    )
    result = run_loop(services, config, run_id=run_id, console=console)
    result.report.title = (
        "ASTRA demo: synthesize, serve, train"
        if kind == "demo"
        else "ASTRA experiment: base vs SFT vs SFT+RL"
    )
    _add_pointers(result, stack)
    markdown = write_report(result.report, runs_dir / run_id)
    return result, markdown


def _add_pointers(result: LoopResult, stack: LocalStack) -> None:
    envhost = stack.url("envhost")
    result.report.section(
        "Where things are",
        "\n".join(
            [
                f"- environments of job `{result.envs_job}`: {stack.url('synth')}"
                f"/v1/environments?job_id={result.envs_job}",
                f"- SFT dataset: `{result.dataset}`",
                f"- SFT model: `{result.sft_model}`",
                f"- GRPO run `{result.grpo_run}`: {stack.url('trainer')}/v1/runs/{result.grpo_run}",
                f"- every environment is an MCP server: `{envhost}/envs/<env id>/mcp`",
            ]
        ),
    )


def connect_hint(stack: LocalStack, env_id: str | None) -> str:
    """How to reach the environments with any MCP client."""
    envhost = stack.url("envhost")
    url = f"{envhost}/envs/{env_id or '<env id>'}/mcp"
    return (
        f"Connect any MCP client to an environment (streamable HTTP): {url}\n"
        "  Python:  async with mcp.Client(url) as client: await client.list_tools()\n"
        '  Desktop clients: {"mcpServers": {"astra": {"url": "' + url + '"}}}\n'
        f"The web console: {stack.url('synth')}/"
    )


def first_env(stack: LocalStack, job_id: str) -> str | None:
    """One environment of the job, for the connection hint (none when synth cannot say)."""

    async def first(url: str) -> str | None:
        async with SynthClient(url) as synth:
            page = await synth.list_environments(EnvironmentQuery(job_id=job_id), limit=1)
        return page.items[0].id if page.items else None

    try:
        return asyncio.run(first(stack.url("synth")))
    except ServiceError:
        return None


__all__ = ["LoopConfig", "LoopError", "connect_hint", "first_env", "run_on_stack"]
