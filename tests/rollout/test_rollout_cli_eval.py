"""``astra eval`` as a user runs it (a separate process) against the real rollout app, synth
registry and envhost, with the scripted stub policy: the score table and the JSON result,
the service's refusal as one ``error:`` line, a request refused before it is sent, and a
rollout URL where nothing listens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cli_support import astra
from envhost_support import weather_spec
from http_support import running
from rollout_support import stack
from synth_support import private_redis

from astra.redis_server import free_port
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, Provenance
from astra_proto.api.rollout import EvaluationStatus
from astra_rollout.app import create_app
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Settings = Callable[..., EnvhostSettings]
TOKEN = "eval-test-token"


def heldout(domain: str) -> EnvironmentSpec:
    """The weather task as a procedural environment of the held-out entities split."""
    data = weather_spec(domain).model_dump(exclude={"id"}) | {
        "split": "heldout_entities",
        "provenance": Provenance(source="procedural").model_dump(),
    }
    return EnvironmentSpec.model_validate(data)


@asynccontextmanager
async def rollout_url(
    database_url: str, redis_url: str, envhost_settings: Settings
) -> AsyncIterator[str]:
    """The rollout app (writes need ``TOKEN``) with two held-out environments registered."""
    async with stack(database_url, envhost_settings, heldout("travel"), heldout("weather")) as s:
        synth = create_synth(SynthSettings(database_url=database_url, redis_url=redis_url))
        async with running(synth, free_port()) as synth_url:
            settings = RolloutSettings(
                port=free_port(),
                redis_url=private_redis(redis_url),
                envhost_url=s.envhost_url,
                synth_url=synth_url,
                policy_base_url=s.policy_url,
                policy_backoff_s=0.01,
                api_token=TOKEN,
            )
            async with running(create_app(settings), settings.port) as url:
                yield url


async def test_eval_prints_the_scores_and_writes_the_result(
    database_url: str, redis_url: str, envhost_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    async with rollout_url(database_url, redis_url, envhost_settings) as url:
        code, stdout, stderr = await astra(
            "eval", "heldout-procedural", "-c", "heldout_entities", "--limit", "2",
            "--model", "solver", "--max-turns", "4", "--out", str(out),
            "--rollout-url", url, "--token", TOKEN, "--state-dir", str(tmp_path),
        )  # fmt: skip
        code_refused, _, refused = await astra(
            "eval", "heldout-procedural", "--policy-url", "ftp://nowhere",
            "--rollout-url", url, "--token", TOKEN, "--state-dir", str(tmp_path),
        )  # fmt: skip
    assert code == 0, stdout + stderr
    status = EvaluationStatus.model_validate(json.loads(out.read_text()))
    assert (status.state, status.total, status.done) == ("succeeded", 2, 2)
    assert [entry.reward for entry in status.entries] == pytest.approx([1.0, 1.0])
    overall = next(line for line in stdout.splitlines() if line.strip().startswith("overall"))
    assert overall.split()[:3] == ["overall", "2", "0"]
    assert code_refused == 1
    assert refused.startswith("error: rollout: POST /v1/evaluations answered 422: ")
    assert "policy.base_url must be an http(s) URL" in refused


async def test_eval_refuses_a_bad_request_and_an_unreachable_service(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    state = ("--state-dir", str(tmp_path))
    code_suite, _, bad_suite = await astra("eval", "nonsense", "--rollout-url", nowhere, *state)
    code_category, _, bad_category = await astra(
        "eval", "bfcl-multi-turn", "-c", "heldout_entities", "--rollout-url", nowhere, *state
    )
    code_down, _, down = await astra("eval", "heldout-procedural", "--rollout-url", nowhere, *state)
    assert code_suite == 1
    assert bad_suite.startswith("error: suite: Input should be 'heldout-procedural' or")
    assert code_category == 1
    assert "unknown categories ['heldout_entities'] for bfcl-multi-turn" in bad_category
    assert code_down == 1
    assert down.startswith(f"error: cannot reach rollout at {nowhere} (POST /v1/evaluations: ")
    assert "start it with `astra up`" in down
