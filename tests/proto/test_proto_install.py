"""proto/ installs alone into a fresh virtualenv and needs nothing but pydantic."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"

# Runs inside the fresh venv; prints one JSON line.
PROBE = """
import importlib, importlib.metadata, json
import astra_proto
from astra_proto import EnvironmentSpec, SyntheticTool, ToolSpec

tool = SyntheticTool(
    spec=ToolSpec(name="lookup", description="Looks things up."),
    code="def run(**kw):\\n    return {}\\n",
    entrypoint="run",
)
spec = EnvironmentSpec(
    task="Where is X?",
    domain="demo",
    tools=[tool],
    sub_questions=[{"id": "a", "question": "Where?", "answer": "here", "tool_name": "lookup"}],
)
importable = {}
for name in ("fastapi", "sqlalchemy", "redis", "celery", "astra_common", "astra"):
    try:
        importlib.import_module(name)
        importable[name] = True
    except ImportError:
        importable[name] = False
print(json.dumps({
    "module": astra_proto.__file__,
    "env_id": spec.id,
    "requires": importlib.metadata.requires("astra-proto"),
    "importable": importable,
}))
"""


def clean_env() -> dict[str, str]:
    """This process's environment minus what would leak the repo's venv into the new one."""
    leaks = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER"}
    return {key: value for key, value in os.environ.items() if key not in leaks}


def run(*args: str | Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_proto_installs_alone_with_pydantic_only(tmp_path: Path) -> None:
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3")
    assert base_python, "no base Python to create a venv with"
    venv = tmp_path / "venv"
    run(base_python, "-m", "venv", venv, cwd=tmp_path, timeout=120)
    python = venv / "bin" / "python"

    # Build from a copy so that the build leaves nothing in the repository, and so that the
    # package cannot reach anything outside its own folder.
    source = tmp_path / "proto"
    shutil.copytree(
        PROTO_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    run(python, "-m", "pip", "install", "--no-input", "--quiet", source, cwd=tmp_path, timeout=240)

    probe = run(python, "-I", "-c", PROBE, cwd=tmp_path, timeout=60)
    report = json.loads(probe.stdout.strip().splitlines()[-1])

    assert Path(report["module"]).is_relative_to(venv), "imported from outside the venv"
    assert report["env_id"].startswith("env_")
    assert [re.split(r"[\s;<>=!~\[]", r)[0] for r in report["requires"]] == ["pydantic"]
    assert report["importable"] == {
        "fastapi": False,
        "sqlalchemy": False,
        "redis": False,
        "celery": False,
        "astra_common": False,
        "astra": False,
    }
    assert (Path(report["module"]).parent / "py.typed").is_file()
