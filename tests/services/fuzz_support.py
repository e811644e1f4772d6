"""The four services wired to each other over real HTTP, for fuzzing their OpenAPI documents.

Each app runs under uvicorn in a thread of its own (the fuzzer's HTTP client is synchronous),
with real dependencies: one SQLite file shared by synth and envhost (as in ``astra up``), the
test run's Redis server, bubblewrap sandboxes for tool code, and a bearer token on every
service so that write endpoints are reached. Work that valid fuzzed requests start fails fast:
no LLM endpoint is configured, rollout's policy server is a port where nothing listens, and
the trainer runs one training process at a time (more are refused with 429).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from astra.redis_server import free_port
from astra_envhost.app import create_app as create_envhost
from astra_envhost.settings import EnvhostSettings
from astra_rollout.app import create_app as create_rollout
from astra_rollout.settings import RolloutSettings
from astra_synth.app import create_app as create_synth
from astra_synth.settings import SynthSettings
from astra_trainer.app import create_app as create_trainer
from astra_trainer.settings import TrainerSettings

TOKEN = "fuzz-token"
"""The bearer token every service of the stack demands on its write endpoints."""

DEAD_URL = "http://127.0.0.1:1"
"""Nothing listens on port 1: work that needs a policy or LLM server fails at once."""

SERVICES = ("synth", "envhost", "rollout", "trainer")


@contextmanager
def served_in_thread(app: FastAPI, port: int, start_timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on loopback from a thread of its own; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"{app.title} stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{app.title} did not start in {start_timeout_s} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=120)


@dataclass
class Stack:
    """Base URLs of the running services, by name."""

    urls: dict[str, str]


@contextmanager
def running_stack(redis_url: str, database_url: str, data_dir: Path) -> Iterator[Stack]:
    """All four services, each pointed at the others, served until the block ends."""
    ports = {name: free_port() for name in SERVICES}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    builders: dict[str, Callable[[], FastAPI]] = {
        "synth": lambda: create_synth(
            SynthSettings(
                database_url=database_url,
                redis_url=redis_url,
                api_token=TOKEN,
                envhost_url=url["envhost"],
                envhost_token=TOKEN,
                rollout_url=url["rollout"],
                rollout_token=TOKEN,
                trainer_url=url["trainer"],
                data_dir=str(data_dir / "synth"),
                port=ports["synth"],
            )
        ),
        "envhost": lambda: create_envhost(
            EnvhostSettings(
                database_url=database_url,
                api_token=TOKEN,
                port=ports["envhost"],
                tool_timeout_s=2.0,
                tool_cpu_s=2,
                max_concurrent_executions=2,
            )
        ),
        "rollout": lambda: create_rollout(
            RolloutSettings(
                redis_url=redis_url,
                api_token=TOKEN,
                envhost_url=url["envhost"],
                envhost_token=TOKEN,
                synth_url=url["synth"],
                synth_token=TOKEN,
                policy_base_url=DEAD_URL,
                policy_retries=0,
                policy_timeout_s=5.0,
                max_concurrent_episodes=4,
                max_batch_episodes=16,
                episode_timeout_s=10.0,
                port=ports["rollout"],
            )
        ),
        "trainer": lambda: create_trainer(
            TrainerSettings(
                redis_url=redis_url,
                api_token=TOKEN,
                model_dir=data_dir / "models",
                checkpoint_dir=data_dir / "checkpoints",
                policy_base_url=DEAD_URL,
                max_concurrent_runs=1,  # at most one run process at a time (the fuzz stops it)
                port=ports["trainer"],
            )
        ),
    }
    with ExitStack() as stack:
        for name in SERVICES:
            stack.enter_context(served_in_thread(builders[name](), ports[name]))
        yield Stack(urls=url)
