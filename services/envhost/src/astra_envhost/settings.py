"""envhost configuration (env prefix ``ASTRA_ENVHOST_``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from astra_common.settings import ServiceSettings


class EnvhostSettings(ServiceSettings):
    """How the environment host runs."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_ENVHOST_")

    port: int = 8101
    """TCP port the HTTP server listens on."""

    database_url: str = "sqlite+aiosqlite:///.astra/astra.db"
    """Database holding the environment registry and episodes (SQLAlchemy async URL)."""

    public_url: str = ""
    """URL at which this replica is reachable by clients; episode MCP URLs start with it.
    Empty means http://{host}:{port}."""

    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Extra Host header values MCP accepts (DNS-rebinding protection), comma-separated,
    e.g. envhost,envhost:8080."""

    trust_forwarded_headers: bool = False
    """Build the MCP URLs handed out (POST /v1/episodes, episode listings) from a request's
    X-Forwarded-Host and X-Forwarded-Proto, so clients that came through the gateway get the
    gateway's address; requests without them still get public_url. Turn on only where every
    request comes through a trusted gateway (as in compose): a client could set them."""

    sandbox: Literal["bubblewrap", "none"] = "bubblewrap"
    """Isolation for synthesized tool code: bubblewrap, or none (development only)."""

    allow_unsandboxed: bool = False
    """Permit sandbox=none. Only for development: synthesized code is untrusted."""

    max_episodes: int = Field(default=10_000, ge=1)
    """Open episodes this replica holds at most; more are refused with 503."""

    episode_idle_timeout_s: float = Field(default=1800.0, gt=0)
    """An episode with no activity for this long is closed (state expired)."""

    client_idle_timeout_s: float = Field(default=300.0, gt=0)
    """MCP clients of /envs/{id}/mcp are reclaimed after this long without a request: their
    session and the episode it opened are closed (state expired). Clients that never end their
    session, such as the MCP Inspector, are cleaned up this way. REST-created episodes keep
    episode_idle_timeout_s."""

    max_sandbox_workers: int = Field(default=512, ge=1)
    """Live sandbox worker processes (one per episode that has called a synthesized tool) this
    replica runs at most. At the cap, the least recently used idle worker is stopped (its
    episode's tool state is reset and its next call says so); when every worker is in a call,
    a new one is refused with a tool error."""

    tool_timeout_s: float = Field(default=10.0, gt=0)
    """Wall-clock limit of one sandboxed tool call."""

    tool_cpu_s: int = Field(default=10, ge=1)
    """CPU seconds a sandbox worker may use in all (RLIMIT_CPU)."""

    tool_memory_mb: int = Field(default=256, ge=32)
    """Address-space limit of a sandbox worker, in MiB (RLIMIT_AS)."""

    tool_output_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest tool result accepted from the sandbox; larger ones are a tool error."""

    max_concurrent_executions: int = Field(default=4, ge=1)
    """One-off executions (POST /v1/executions) running at once, each in a sandbox of its own;
    more wait for a free slot."""

    tool_call_fast_path: bool = True
    """Answer sessionless tools/call requests on /episodes/{id}/mcp in a direct ASGI path that
    makes the MCP SDK's checks in precompiled form and gives the SDK's reply (one call through
    the app: 29 µs instead of 118 µs, see performance.md); off: every request goes through the
    SDK. The path also stays off, with a warning, on an MCP SDK version it was not tested
    against."""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    def base_url(self) -> str:
        """The public base URL of this replica."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
