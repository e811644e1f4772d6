"""What the CLI command modules share: the consoles, a failure exit, and one API call with
errors turned into that exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from astra.api_client import ApiClient, ApiError, service_url

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit (code 1) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def call(
    service: str,
    url: str | None,
    state_dir: Path,
    method: str,
    path: str,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    **kwargs: Any,
) -> Any:
    """One request to ``service`` (found as ``service_url`` says) and its JSON answer; an
    unreachable service or an error answer exits 1 with one readable line."""
    try:
        with ApiClient(service_url(service, url, state_dir), token, timeout=timeout) as client:
            return client.request(method, path, **kwargs).json()
    except ApiError as exc:
        raise fail(str(exc)) from None
