"""``astra datasets export`` against a real synth API: records uploaded and exported there
(``POST /v1/datasets``), gold trajectories built by synth's jobs, the files downloaded into
the folder asked for; and the command's errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import datasets  # type: ignore[import-untyped]
import pytest
from cli_support import astra
from synth_support import synth_service, synth_stack
from test_traj_judge import trajectory

from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings

pytestmark = pytest.mark.timeout(300)

Settings = Callable[..., EnvhostSettings]


async def test_export_from_trajectory_file(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join(trajectory(f"t{i}", 1 + i % 2).model_dump_json() for i in range(3)))
    out = tmp_path / "out"
    async with synth_service(
        database_url=database_url, redis_url="redis://127.0.0.1:1/0",
        envhost_url="http://127.0.0.1:1", tmp_path=tmp_path, api_token="t",
    ) as (url, _):  # fmt: skip
        flags = ["--synth-url", url, "--token", "t"]
        code, output, err = await astra(
            "datasets", "export", str(out), "--trajectories", str(source), *flags
        )
        assert code == 0, err
        assert f"3 records (1.33 tool calls each) in {out}" in output
        assert datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))[
            "id"
        ] == ["t0", "t1", "t2"]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["name"] == "out"
        assert manifest["path"] == str(out)
        # synth keeps it too, under its data directory
        assert (tmp_path / "synth-data" / "datasets" / "out" / "jsonl" / "train.jsonl").is_file()

        unauthorised = await astra(
            "datasets", "export", str(out), "--trajectories", str(source), "--synth-url", url
        )
        assert unauthorised[0] == 1
        assert "answered 401" in unauthorised[2]
        bad = tmp_path / "bad.jsonl"
        unfinished = trajectory("u", 1)
        unfinished.messages.pop()
        bad.write_text(unfinished.model_dump_json())
        refused = await astra("datasets", "export", str(out), "--trajectories", str(bad), *flags)
        assert refused[0] == 1
        assert "answered 422" in refused[2]
        assert "final answer" in refused[2]


async def test_export_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    nowhere = ["--synth-url", "http://127.0.0.1:1"]
    code, _, err = await astra("datasets", "export", out, *nowhere)
    assert code == 1
    assert "exactly one of" in err
    code, _, err = await astra(
        "datasets", "export", out, "--trajectories", str(tmp_path / "no"), *nowhere
    )
    assert code == 1
    assert "does not exist" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    code, _, err = await astra("datasets", "export", out, "--trajectories", str(bad), *nowhere)
    assert code == 1
    assert "bad.jsonl:1: not a Trajectory" in err
    code, _, err = await astra("datasets", "export", out, "--gold", "0", *nowhere)
    assert code == 1
    assert "at least 1" in err
    code, _, err = await astra("datasets", "export", out, "--gold", "2", "--name", "a b", *nowhere)
    assert code == 1
    assert "'a b' cannot name a dataset" in err
    code, _, err = await astra("datasets", "export", out, "--gold", "2", *nowhere)
    assert code == 1
    assert "cannot reach synth at http://127.0.0.1:1" in err


@pytest.mark.integration
@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed")
async def test_gold_export_runs_synth_jobs_and_downloads_the_dataset(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "gold"
    async with synth_stack(database_url, redis_url, tmp_path, envhost_settings) as s:
        s.workers.start()
        code, output, err = await astra(
            "datasets", "export", str(out), "--gold", "3", "--seed", "2", "--name", "gold-3",
            "--synth-url", s.url,
        )  # fmt: skip
        assert code == 0, (err, s.workers.logs())
        assert f"3 environments registered at {s.url}" in output
        assert "3 records (" in output
        assert f"in {out}" in output
        jobs = (await s.http.get("/v1/jobs")).json()["items"]
        assert [job["kind"] for job in jobs] == ["trajectories", "environments"]
        assert jobs[0]["params"]["job_id"] == jobs[1]["id"]
    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == 3
    assert json.loads((out / "manifest.json").read_text())["name"] == "gold-3"
