"""A shortened ``astra demo`` end to end, as a user runs it: every service, the real vLLM
server, SFT and a GRPO step on CPU, evaluation before and after, and the report it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from astra_envhost.sandbox import find_bwrap

VLLM_VENV = Path(sys.prefix).parent / ".venv-vllm"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(
        not (VLLM_VENV / "bin" / "python").exists(),
        reason=f"no vLLM environment at {VLLM_VENV}: run scripts/vllm-venv.sh (make install does)",
    ),
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed"),
]


def test_shortened_demo_writes_a_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "astra.cli", "demo", "--no-serve",
         "--state-dir", str(tmp_path / "state"), "--runs-dir", str(runs),
         "--train-envs", "8", "--sft-steps", "3", "--grpo-steps", "1", "--eval-limit", "2"],
        capture_output=True, text=True, timeout=1400, check=False,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    (run_dir,) = runs.iterdir()
    report = (run_dir / "report.md").read_text()
    assert f"report: {run_dir / 'report.md'}" in " ".join(output.split())
    assert "/envs/" in output  # how to connect an MCP client

    for label in ("SFT · held-out", "SFT+RL · held-out"):
        for category in ("heldout_entities", "heldout_compositions", "overall"):
            assert f"| {label} | heldout-procedural | {category} |" in report, report
    for figure in ("eval_mean_reward.png", "eval_success_rate.png", "sft_curves.png"):
        assert (run_dir / figure).read_bytes().startswith(b"\x89PNG")
    facts = json.loads((run_dir / "report.json").read_text())["facts"]
    assert int(facts["training environments"]) == 8
    assert int(facts["SFT samples (gold trajectories)"]) >= 1
    assert facts["GRPO steps"] == "1 of 1"
    assert int(facts["policy version after RL"]) >= 1
    assert not list((tmp_path / "state").glob("stack.json"))  # the stack was stopped
