"""The stack's plan (the processes and their configuration), without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra.stack import (
    EMBEDDED_POLICY_DTYPE,
    EMBEDDED_POLICY_EPISODES,
    Child,
    LocalStack,
    StackOptions,
)


def _rollout(children: list[Child]) -> dict[str, str]:
    return next(child.env for child in children if child.name == "rollout")


def _embedded(tmp_path: Path, vllm_venv: Path) -> StackOptions:
    """A stack that serves the policy itself (the plan only, nothing is started)."""
    return StackOptions(
        state_dir=tmp_path / "state", port_base=0, vllm_venv=vllm_venv, policy_model_dir=tmp_path
    )


def _policy_dtype(children: list[Child]) -> str:
    command = next(child.command for child in children if child.name == "policy")
    return command[command.index("--dtype") + 1]


@pytest.fixture
def vllm_venv(tmp_path: Path) -> Path:
    """A folder shaped like the vLLM environment: the plan only checks its interpreter is
    there (the embedded server itself is started in test_stack.py)."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    return tmp_path / "venv"


def test_the_embedded_cpu_policy_server_bounds_the_episodes_in_flight(
    tmp_path: Path, vllm_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES", raising=False)
    options = _embedded(tmp_path, vllm_venv)
    children = LocalStack(options).plan()
    assert "policy" in [child.name for child in children]
    rollout = _rollout(children)
    assert rollout["ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES"] == str(EMBEDDED_POLICY_EPISODES)
    assert rollout["ASTRA_ROLLOUT_POLICY_BASE_URL"].endswith("/v1")


def test_the_embedded_policy_server_serves_the_trained_float32_weights(
    tmp_path: Path, vllm_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASTRA_VLLM_CPU_DTYPE", raising=False)
    options = _embedded(tmp_path, vllm_venv)
    assert EMBEDDED_POLICY_DTYPE == "float32"
    assert _policy_dtype(LocalStack(options).plan()) == "float32"
    monkeypatch.setenv("ASTRA_VLLM_CPU_DTYPE", "bfloat16")
    assert _policy_dtype(LocalStack(options).plan()) == "bfloat16"


def test_a_bound_the_caller_set_is_kept(
    tmp_path: Path, vllm_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES", "7")
    options = _embedded(tmp_path, vllm_venv)
    assert _rollout(LocalStack(options).plan())["ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES"] == "7"


def test_an_external_policy_server_keeps_the_rollout_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES", raising=False)
    options = StackOptions(
        state_dir=tmp_path / "state", port_base=0, policy_url="http://gpu-box:8000/v1"
    )
    children = LocalStack(options).plan()
    assert "policy" not in [child.name for child in children]
    rollout = _rollout(children)
    assert "ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES" not in rollout
    assert rollout["ASTRA_ROLLOUT_POLICY_BASE_URL"] == "http://gpu-box:8000/v1"
