"""``astra envs`` against a real synth API: import BFCL, list, show, and clear errors."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from http_support import running

from astra.redis_server import free_port
from astra_common.db.migrate import upgrade_async
from astra_synth.app import create_app
from astra_synth.settings import SynthSettings

pytestmark = pytest.mark.timeout(180)


async def astra(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "astra.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_import_bfcl_list_and_show(tmp_path: Path, redis_url: str) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'astra.db'}"
    await upgrade_async(database_url)
    settings = SynthSettings(database_url=database_url, redis_url=redis_url, api_token="t")
    async with running(create_app(settings), free_port()) as url:
        flags = ["--synth-url", url, "--token", "t"]
        code, out, err = await astra("envs", "import", "bfcl", "-c", "base", "--limit", "3", *flags)
        assert code == 0, err
        assert "3 environments registered, 0 were already there" in out
        code, out, _ = await astra("envs", "import", "bfcl", "-c", "base", "--limit", "3", *flags)
        assert "0 environments registered, 3 were already there" in out

        code, out, _ = await astra("envs", "list", "--source", "bfcl", "--synth-url", url)
        assert code == 0
        assert "3 of 3 environments" in out
        assert "multi_turn_base" in out

        code, out, err = await astra("envs", "import", "bfcl", "-c", "nonsense", *flags)
        assert code == 1
        assert "unknown BFCL category 'nonsense'" in err
        code, out, err = await astra("envs", "import", "bfcl", "--limit", "1", "--synth-url", url)
        assert code == 1
        assert "answered 401" in err
        code, out, err = await astra("envs", "show", "env_missing", "--synth-url", url)
        assert code == 1
        assert "answered 404" in err


async def test_unreachable_api_is_one_readable_line() -> None:
    code, _, err = await astra("envs", "list", "--synth-url", "http://127.0.0.1:1")
    assert code == 1
    assert "cannot reach http://127.0.0.1:1" in err
    assert len(err.strip().splitlines()) == 1
