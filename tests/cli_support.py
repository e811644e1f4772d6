"""Running the ``astra`` CLI as a user does: a separate process, its exit code and output."""

from __future__ import annotations

import asyncio
import os
import sys


async def astra(*args: str, columns: int = 250) -> tuple[int, str, str]:
    """Run ``python -m astra.cli ARGS`` (a wide terminal, so tables are not cut); (exit code,
    stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "astra.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": str(columns)},
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()
