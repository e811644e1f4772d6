"""``astra envs`` against a real synth API, Celery worker and envhost: import BFCL (a synth
job whose source is envhost's BFCL pack), list, show, and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import astra
from synth_support import synth_stack

from astra_envhost.settings import EnvhostSettings

pytestmark = pytest.mark.timeout(240)

Settings = Callable[..., EnvhostSettings]


async def test_import_bfcl_list_and_show(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    # BFCL runs on its own backends, not in the sandbox: no isolation to ask for.
    def unsandboxed() -> EnvhostSettings:
        return envhost_settings(sandbox="none", allow_unsandboxed=True)

    async with synth_stack(database_url, redis_url, tmp_path, unsandboxed, api_token="t") as s:
        s.workers.start()
        url = s.url
        flags = ["--synth-url", url, "--token", "t"]
        code, out, err = await astra("envs", "import", "bfcl", "-c", "base", "--limit", "3", *flags)
        assert code == 0, (err, s.workers.logs())
        assert "(bfcl)" in out  # the job that imports them
        assert f"3 environments registered, 0 were already there ({url})" in out
        code, out, _ = await astra("envs", "import", "bfcl", "-c", "base", "--limit", "3", *flags)
        assert "0 environments registered, 3 were already there" in out
        entry = ["--entry", "multi_turn_miss_param_4"]
        code, out, err = await astra("envs", "import", "bfcl", *entry, *flags)
        assert code == 0, err
        assert "1 environments registered, 0 were already there" in out

        code, out, _ = await astra("envs", "list", "--source", "bfcl", "--synth-url", url)
        assert code == 0
        assert "4 of 4 environments" in out
        assert "multi_turn_base" in out
        assert "multi_turn_miss_param" in out

        code, out, err = await astra("envs", "import", "bfcl", "-c", "nonsense", *flags)
        assert code == 1
        assert "unknown BFCL category 'nonsense'" in err
        code, out, err = await astra("envs", "import", "bfcl", "--limit", "1", "--synth-url", url)
        assert code == 1
        assert "answered 401" in err
        code, out, err = await astra("envs", "import", "gsm8k", *flags)
        assert code == 1
        assert "unknown source 'gsm8k'; importable: bfcl" in err
        code, out, err = await astra("envs", "show", "env_missing", "--synth-url", url)
        assert code == 1
        assert "answered 404" in err


async def test_unreachable_api_is_one_readable_line() -> None:
    code, _, err = await astra("envs", "list", "--synth-url", "http://127.0.0.1:1")
    assert code == 1
    assert "cannot reach synth at http://127.0.0.1:1" in err
    assert len(err.strip().splitlines()) == 1
