"""The local runtime: every service, a Celery worker and Redis as child processes.

Embedded defaults: a SQLite file and a private Redis server under the state directory
(``.astra/`` unless told otherwise), or the Redis at ``REDIS_URL`` when one is given.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from astra.redis_server import RedisServer, free_port
from astra_common.clients import ServiceError
from astra_common.clients.synth import SynthClient
from astra_common.processes import spawn, stop_all, tail

SERVICES = ("synth", "envhost", "rollout", "trainer")
STATE_FILE = "stack.json"
STACK_ID_ENV = "ASTRA_STACK_ID"
EMBEDDED_POLICY_EPISODES = 32
"""Episodes in flight at once when the stack serves the policy itself (vLLM on the CPU). Its
prefill runs at a few hundred tokens/s on two cores: 100 episodes started together (a
held-out evaluation) kept their first requests queued past the rollout's 300 s policy timeout,
so every episode ran out of time without a turn; 32 (one rollout batch of 8 x 4) keeps each
request's wait within it. ``ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES`` overrides it."""

EMBEDDED_POLICY_DTYPE = "float32"
"""The dtype the embedded policy server serves in (``ASTRA_VLLM_CPU_DTYPE`` overrides it, as
in docker-compose.yml). The policy it serves is the one GRPO trains in float32, and bfloat16
rounds small updates away: after 6 GRPO steps at learning rate 3e-5 every parameter had moved,
but only 11.7 % of them differed from the SFT weights once rounded to bfloat16, so a bfloat16
server rolled out and was evaluated on a policy that was mostly the SFT one. float32 costs
speed where the CPU computes in bfloat16 (AMX: 267 vs 507 generated tokens/s,
bench/policy_dtype.py) and gains it where it does not (AVX2: 3.2x faster than bfloat16)."""


def embedded_policy_dtype(env: Mapping[str, str] = os.environ) -> str:
    """The dtype the embedded policy server is started in with this environment."""
    return env.get("ASTRA_VLLM_CPU_DTYPE") or EMBEDDED_POLICY_DTYPE


class StackError(RuntimeError):
    """The stack could not be started or has failed; the message says which part and why."""


@dataclass
class Child:
    """One process of the stack."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    url: str | None = None
    health_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = None


@dataclass
class StackOptions:
    """How ``astra up`` runs the stack."""

    state_dir: Path = Path(".astra")
    port_base: int = 8100
    """First of four consecutive ports (synth, envhost, rollout, trainer); 0 picks free ports."""
    host: str = "127.0.0.1"
    redis_url: str | None = None
    """Use this Redis instead of starting one."""
    allow_unsandboxed: bool = False
    policy_url: str | None = None
    """An OpenAI-compatible policy endpoint (``.../v1``) to use instead of the embedded one."""
    policy_server: bool = True
    """Start the embedded vLLM policy server (when no ``policy_url`` is given)."""
    vllm_venv: Path = field(default_factory=lambda: default_vllm_venv())
    """Virtual environment of vLLM's CPU build (``scripts/vllm-venv.sh`` builds it)."""
    policy_model_dir: Path | None = None
    """Model folder the embedded server starts on; default: the model store's SmolLM2."""
    startup_timeout: float = 300.0


def default_vllm_venv() -> Path:
    """``ASTRA_VLLM_VENV``, else ``.venv-vllm`` beside the virtual environment running this."""
    explicit = os.environ.get("ASTRA_VLLM_VENV")
    return Path(explicit) if explicit else Path(sys.prefix).parent / ".venv-vllm"


POLICY_MODEL_NAME = "SmolLM2-135M-Instruct"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class LocalStack:
    """Start, watch and stop the whole stack on this machine."""

    options: StackOptions
    stack_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    children: list[Child] = field(default_factory=list)
    redis: RedisServer | None = None
    redis_url: str = ""

    @property
    def state_dir(self) -> Path:
        """Absolute state directory."""
        return self.options.state_dir.resolve()

    @property
    def database_url(self) -> str:
        """The embedded SQLite database."""
        return f"sqlite+aiosqlite:///{self.state_dir / 'astra.db'}"

    @property
    def embedded_policy(self) -> bool:
        """Whether this stack runs its own vLLM policy server."""
        return self.options.policy_server and not self.options.policy_url

    def _ports(self) -> dict[str, int]:
        host, base = self.options.host, self.options.port_base
        names = [*SERVICES, "policy"] if self.embedded_policy else list(SERVICES)
        if base == 0:
            return {name: free_port(host) for name in names}
        ports = {name: base + offset for offset, name in enumerate(names)}
        busy = [f"{name}:{port}" for name, port in ports.items() if not _port_free(host, port)]
        if busy:
            raise StackError(
                f"ports in use ({', '.join(busy)}): is another stack running? "
                "Stop it, or pick other ports with --port-base (0 = any free ports)"
            )
        return ports

    def plan(self) -> list[Child]:
        """The processes to start, with their configuration."""
        ports = self._ports()
        host = self.options.host
        urls = {name: f"http://{host}:{port}" for name, port in ports.items()}
        policy_url = (
            self.options.policy_url.rstrip("/") if self.options.policy_url
            else f"{urls['policy']}/v1" if self.embedded_policy else ""
        )  # fmt: skip
        base_env = {**os.environ, STACK_ID_ENV: self.stack_id}
        logs = self.state_dir / "logs"
        common = {
            "ASTRA_SYNTH_DATABASE_URL": self.database_url,
            "ASTRA_SYNTH_REDIS_URL": self.redis_url,
            "ASTRA_SYNTH_ENVHOST_URL": urls["envhost"],
            "ASTRA_SYNTH_ROLLOUT_URL": urls["rollout"],
            "ASTRA_SYNTH_TRAINER_URL": urls["trainer"],
            "ASTRA_SYNTH_DATA_DIR": str(self.state_dir / "synth"),
        }
        per_service: dict[str, dict[str, str]] = {
            "synth": common,
            "envhost": {
                "ASTRA_ENVHOST_DATABASE_URL": self.database_url,
                "ASTRA_ENVHOST_PUBLIC_URL": urls["envhost"],
            },
            "rollout": {
                "ASTRA_ROLLOUT_REDIS_URL": self.redis_url,
                "ASTRA_ROLLOUT_ENVHOST_URL": urls["envhost"],
                "ASTRA_ROLLOUT_SYNTH_URL": urls["synth"],
                "ASTRA_ROLLOUT_POLICY_BASE_URL": policy_url,
                "ASTRA_ROLLOUT_POLICY_MODEL": POLICY_MODEL_NAME,
            },
            "trainer": {
                "ASTRA_TRAINER_REDIS_URL": self.redis_url,
                "ASTRA_TRAINER_POLICY_BASE_URL": policy_url,
                "ASTRA_TRAINER_MODEL_DIR": str(self.state_dir / "models"),
                "ASTRA_TRAINER_CHECKPOINT_DIR": str(self.state_dir / "checkpoints"),
            },
        }
        if self.embedded_policy:
            # Backpressure sized to the embedded CPU server (unless the caller set one).
            per_service["rollout"]["ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES"] = os.environ.get(
                "ASTRA_ROLLOUT_MAX_CONCURRENT_EPISODES", str(EMBEDDED_POLICY_EPISODES)
            )
        if self.options.allow_unsandboxed:
            per_service["envhost"] |= {
                "ASTRA_ENVHOST_SANDBOX": "none",
                "ASTRA_ENVHOST_ALLOW_UNSANDBOXED": "true",
            }
        children = []
        for name in SERVICES:
            prefix = f"ASTRA_{name.upper()}_"
            env = base_env | per_service[name]
            env |= {f"{prefix}HOST": host, f"{prefix}PORT": str(ports[name])}
            children.append(
                Child(
                    name=name,
                    command=[sys.executable, "-m", f"astra_{name}.main"],
                    env=env,
                    log_path=logs / f"{name}.log",
                    url=urls[name],
                )
            )
        if self.embedded_policy:
            children.append(self._policy_child(ports["policy"], base_env, logs))
        children.append(
            Child(
                name="synth-worker",
                command=[sys.executable, "-m", "astra_synth.worker"],
                env=base_env | common,
                log_path=logs / "synth-worker.log",
            )
        )
        return children

    def _policy_child(self, port: int, base_env: dict[str, str], logs: Path) -> Child:
        """The embedded vLLM server on the policy model (weight reloads allowed: the trainer
        pushes each new policy version into it; it listens on this host only)."""
        venv = self.options.vllm_venv
        if not (venv / "bin" / "python").exists():
            raise StackError(
                f"no vLLM environment at {venv}: build it with `bash scripts/vllm-venv.sh "
                f"{venv}` (or `make install`), or give --policy-url, or --no-policy-server"
            )
        try:
            model_dir = self.options.policy_model_dir or _default_model_dir(self.state_dir)
        except Exception as exc:
            raise StackError(f"the policy model could not be prepared: {exc}") from exc
        host = self.options.host
        command = [
            sys.executable, "-m", "astra_rollout.policy_server", "--model-dir", str(model_dir),
            "--venv", str(venv), "--host", host, "--port", str(port),
            "--served-model-name", POLICY_MODEL_NAME, "--allow-weight-reload",
            "--max-model-len", "8192",  # BFCL's tool documents alone take thousands of tokens
            "--ready-timeout-s", str(self.options.startup_timeout),
            "--log-path", str(logs / "vllm.log"),
            "--dtype", embedded_policy_dtype(base_env),
        ]  # fmt: skip
        return Child(
            name="policy",
            command=command,
            env=base_env,
            log_path=logs / "policy.log",
            url=f"http://{host}:{port}",
            health_path="/v1/models",
        )

    def start(self, report: Callable[[str], None] = lambda _: None) -> None:
        """Start Redis (unless given), migrate the database, start every child, wait for health."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.options.redis_url:
            self.redis_url = self.options.redis_url
            report(f"using Redis at {self.redis_url}")
        else:
            self.redis = RedisServer(directory=self.state_dir / "redis", persist=True)
            self.redis.start()
            self.redis_url = self.redis.url
            report(f"started Redis at {self.redis_url}")
        report("migrating the database")
        _migrate(self.database_url)
        self.children = self.plan()
        for child in self.children:
            child.process = spawn(child.command, child.env, child.log_path)
            report(f"started {child.name} (pid {child.process.pid})")
        self.write_state()
        self.wait_healthy(report)

    def wait_healthy(self, report: Callable[[str], None]) -> None:
        """Block until every service answers /healthz with 200 and a worker answers a ping."""
        deadline = time.monotonic() + self.options.startup_timeout
        pending = {c.name: c for c in self.children if c.url}
        worker_ready = False
        with httpx.Client(timeout=2.0) as client:
            while pending or not worker_ready:
                self.check_alive()
                for name, child in list(pending.items()):
                    if _get_ok(client, f"{child.url}{child.health_path}"):
                        report(f"{name} healthy at {child.url}")
                        del pending[name]
                if not worker_ready and "synth" not in pending:
                    worker_ready = _workers_answering(self.url("synth"), timeout_s=2.0) > 0
                    if worker_ready:
                        report("synth-worker answering")
                if time.monotonic() > deadline:
                    waiting = list(pending) + ([] if worker_ready else ["synth-worker"])
                    raise StackError(
                        f"not healthy after {self.options.startup_timeout:.0f}s: "
                        f"{', '.join(waiting)} (logs in {self.state_dir / 'logs'})"
                    )
                time.sleep(0.2)

    def url(self, name: str) -> str:
        """Base URL of a service."""
        for child in self.children:
            if child.name == name and child.url:
                return child.url
        raise KeyError(name)

    def check_alive(self) -> None:
        """Raise ``StackError`` naming the first child that exited, with its log's tail."""
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise StackError(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"last lines of {child.log_path}:\n{tail(child.log_path)}"
                )
        if self.redis and self.redis.process and self.redis.process.poll() is not None:
            raise StackError(f"redis-server exited with code {self.redis.process.returncode}")

    def write_state(self) -> None:
        """Record URLs and pids for ``astra status``."""
        state: dict[str, Any] = {
            "stack_id": self.stack_id,
            "runner_pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(),
            "redis_url": self.redis_url,
            "database_url": self.database_url,
            "services": {
                child.name: {
                    "url": child.url,
                    "health": child.health_path,
                    "pid": child.process.pid if child.process else None,
                    "log": str(child.log_path),
                }
                for child in self.children
            },
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after a grace period) and Redis."""
        stop_all([c.process for c in reversed(self.children) if c.process is not None])
        if self.redis is not None:
            self.redis.stop()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)


MODEL_INIT_TIMEOUT_S = 900.0
"""How long ``astra-trainer init-model`` may take (the first conversion takes ~20 s)."""


def _default_model_dir(state_dir: Path) -> Path:
    """The default policy model, converted once into the trainer's model store (~20 s) by
    the trainer's own ``astra-trainer init-model``, from this interpreter's scripts."""
    script = Path(sys.executable).parent / "astra-trainer"
    if not script.is_file():
        raise StackError(f"no {script}: install the trainer (`make install`)")
    env = {**os.environ, "ASTRA_TRAINER_MODEL_DIR": str(state_dir / "models")}
    try:
        done = subprocess.run(
            [str(script), "init-model"],
            env=env,
            capture_output=True,
            text=True,
            timeout=MODEL_INIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StackError(
            f"`astra-trainer init-model` did not finish in {MODEL_INIT_TIMEOUT_S:.0f} s"
        ) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = " ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
        raise StackError(f"`astra-trainer init-model` exited {done.returncode}: {reason}")
    return Path(lines[-1])


def _migrate(database_url: str) -> None:
    from astra_common.db.migrate import upgrade  # imported late: Alembic is slow to import

    upgrade(database_url)


def _get_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _workers_answering(synth_url: str, *, timeout_s: float) -> int:
    """How many synth workers answer a ping (0 when synth cannot say)."""

    async def ask() -> int:
        async with SynthClient(synth_url, timeout_s=timeout_s) as synth:
            return (await synth.workers()).count

    try:
        return asyncio.run(ask())
    except ServiceError:
        return 0


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The state file of a running stack, or None."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def health_report(state: dict[str, Any], timeout: float = 3.0) -> list[tuple[str, str, bool, str]]:
    """(name, url, healthy, detail) for each service of a running stack, and for Redis."""
    rows: list[tuple[str, str, bool, str]] = []
    answered: set[str] = set()
    with httpx.Client(timeout=timeout) as client:
        for name, info in state["services"].items():
            if info["url"] is None:
                continue
            try:
                response = client.get(f"{info['url']}{info.get('health', '/healthz')}")
                body = response.json()
                detail = ", ".join(f"{k}: {v}" for k, v in body.get("checks", {}).items())
                rows.append((name, info["url"], response.status_code == 200, detail or "ok"))
                answered.add(name)
            except (httpx.HTTPError, ValueError) as exc:
                rows.append((name, info["url"], False, f"unreachable: {exc}"))
        synth = state["services"].get("synth", {}).get("url")
        # Asked only of a synth that answered its health check: one that is down would be
        # asked again and again (the client retries reads), for the same answer.
        reachable = synth is not None and "synth" in answered
        count = _workers_answering(synth, timeout_s=timeout) if reachable else 0
        rows.append(("synth-worker", "(celery)", count > 0, f"{count} worker(s) answering"))
    return rows
