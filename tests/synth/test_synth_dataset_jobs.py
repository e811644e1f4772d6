"""Dataset jobs end to end: procedural environments registered by a job, their gold
trajectories played through a real envhost by a real Celery worker, the dataset listed and
downloaded over REST and read back by `datasets`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from synth_support import stage, synth_stack, wait_for_job

from astra_envhost.sandbox import find_bwrap
from astra_envhost.settings import EnvhostSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed"),
]

Settings = Callable[..., EnvhostSettings]


async def test_gold_dataset_job_exports_a_downloadable_dataset(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    import datasets  # type: ignore[import-untyped]

    async with synth_stack(database_url, redis_url, tmp_path, envhost_settings) as s:
        http, workers = s.http, s.workers
        workers.start()
        envs = (await http.post("/v1/jobs/environments", json={"count": 5, "seed": 4})).json()
        assert (await wait_for_job(http, envs["id"]))["state"] == "succeeded"

        response = await http.post(
            "/v1/jobs/datasets", json={"name": "gold-test", "job_id": envs["id"]}
        )
        assert response.status_code == 201, response.text
        assert response.json()["kind"] == "trajectories"
        job = await wait_for_job(http, response.json()["id"])
        assert job["state"] == "succeeded", (job, workers.logs())
        assert stage(job, "gold_trajectories") == {
            "stage": "gold_trajectories", "done": 5, "total": 5, "rejected": {},
        }  # fmt: skip
        assert job["result"]["dataset"]["stats"]["records"] == 5

        listed = (await http.get("/v1/datasets")).json()
        assert [d["name"] for d in listed] == ["gold-test"]
        manifest = (await http.get("/v1/datasets/gold-test")).json()
        assert set(manifest["files"]) >= {"jsonl/train.jsonl", "data/train.parquet", "README.md"}

        out = tmp_path / "download"
        for name in ("jsonl/train.jsonl", "data/train.parquet"):
            file = await http.get(f"/v1/datasets/gold-test/files/{name}")
            assert file.status_code == 200
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(file.content)
        rows = [json.loads(line) for line in (out / "jsonl/train.jsonl").read_text().splitlines()]
        assert len(rows) == 5
        loaded = datasets.load_dataset("parquet", data_files=str(out / "data/train.parquet"))
        assert loaded["train"].num_rows == 5
        assert set(loaded["train"].column_names) >= {"messages", "tools"}

        assert (await http.get("/v1/datasets/nope")).status_code == 404
        outside = await http.get("/v1/datasets/gold-test/files/manifest.json/../../x")
        assert outside.status_code == 404
        bad = await http.post("/v1/jobs/datasets", json={"name": "../escape"})
        assert bad.status_code == 422
        none = await http.post("/v1/jobs/datasets", json={"split": "no-such-split"})
        failed = await wait_for_job(http, none.json()["id"])
        assert failed["state"] == "failed"
        assert "no registered environment matches" in failed["error"]
