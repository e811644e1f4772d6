"""What the CLI command modules share: the consoles, a failure exit, and a typed client call
with errors turned into that exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

import typer
from rich.console import Console

from astra.stack import read_state
from astra_common.clients import ServiceClient, ServiceError, ServiceUnreachable

C = TypeVar("C", bound=ServiceClient)
T = TypeVar("T")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def service_url(service: str, explicit: str | None, state_dir: Path) -> str:
    """The base URL of ``service``: the flag, else ``ASTRA_<SERVICE>_URL``, else the running
    local stack, else the default local port."""
    if explicit:
        return explicit.rstrip("/")
    from_env = os.environ.get(f"ASTRA_{service.upper()}_URL")
    if from_env:
        return from_env.rstrip("/")
    state = read_state(state_dir.resolve())
    if state is not None and state["services"].get(service, {}).get("url"):
        return str(state["services"][service]["url"])
    ports = {"synth": 8100, "envhost": 8101, "rollout": 8102, "trainer": 8103}
    return f"http://127.0.0.1:{ports[service]}"


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit (code 1) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def with_client(
    client_type: type[C],
    url: str | None,
    state_dir: Path,
    work: Callable[[C], Awaitable[T]],
    *,
    token: str | None = None,
    timeout_s: float = 30.0,
) -> T:
    """Run ``work`` with a typed client of ``client_type.service`` (found as ``service_url``
    says) and return its result; an unreachable service or an error answer exits 1 with one
    readable line.

    ```python
    page = with_client(SynthClient, synth_url, state_dir, lambda s: s.list_jobs(limit=20))
    ```
    """

    # A read's retries log a warning each; a command prints only its one line of outcome.
    logging.getLogger("astra.retry").setLevel(logging.ERROR)

    async def main() -> T:
        base = service_url(client_type.service, url, state_dir)
        async with client_type(base, token=token, timeout_s=timeout_s) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except ServiceUnreachable as exc:
        raise fail(f"{exc} (is the stack running? start it with `astra up`)") from None
    except ServiceError as exc:
        raise fail(str(exc)) from None


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise ``KeyboardInterrupt`` as Ctrl-C does, so a command's ``finally``
    (stopping the stack) runs when it is terminated."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
