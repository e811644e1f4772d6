"""Publishing a policy version: weights to the policy server, then the ``astra:policy`` pointer.

Order matters. Rollout workers stamp trajectories with the pointer's version, so the pointer
moves only after the server holds the new weights; otherwise trajectories sampled by the old
weights would carry the new version and pass the staleness bound wrongly.

Weight push: vLLM reloads full weights in place from a checkpoint folder when asked over
HTTP (``POST /collective_rpc`` with ``reload_weights`` and ``weights_path``; the server must
run with ``VLLM_SERVER_DEV_MODE=1``, and see the same filesystem), then drops its prefix cache
(``POST /reset_prefix_cache``). No restart, no NCCL, no CUDA requirement in the call path.
See docs/trainer.md for what was verified on CPU. Readers of the pointer use
``astra_common.policy_pointer.read_policy_pointer``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
from redis.asyncio import Redis

from astra_proto import POLICY_KEY, PolicyPointer

logger = logging.getLogger(__name__)


class WeightPushError(RuntimeError):
    """The policy server did not take the new weights; the message says what it answered."""


class VLLMWeightReload:
    """Makes a running vLLM server load a checkpoint folder's weights in place."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, api_key: str | None = None):
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def push(self, checkpoint: Path) -> None:
        """Reload the server's weights from ``checkpoint`` (an absolute path); raises
        ``WeightPushError``."""
        body = {
            "method": "reload_weights",
            "kwargs": {"weights_path": str(checkpoint)},
            "timeout": self.timeout_s,
        }
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout_s, headers=self._headers
        ) as client:
            try:
                reply = await client.post("/collective_rpc", json=body)
            except httpx.HTTPError as exc:
                raise WeightPushError(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
            if reply.status_code == 404:
                raise WeightPushError(
                    f"{self.base_url}/collective_rpc not found: start vLLM with "
                    "VLLM_SERVER_DEV_MODE=1 to allow in-place weight reloads"
                )
            if reply.status_code >= 400:
                raise WeightPushError(
                    f"{self.base_url} refused the reload ({reply.status_code}): {reply.text[:500]}"
                )
            # Cached KV blocks were computed by the old weights.
            reset = await client.post("/reset_prefix_cache")
            if reset.status_code >= 400:
                raise WeightPushError(
                    f"{self.base_url} did not reset its prefix cache ({reset.status_code})"
                )
        logger.info("policy server %s reloaded weights from %s", self.base_url, checkpoint)


async def publish_policy(
    redis: Redis,
    *,
    version: int,
    checkpoint: Path,
    base_model: str,
    served_model: str | None,
    push: VLLMWeightReload | None,
) -> PolicyPointer:
    """Push ``checkpoint`` to the policy server (if one is set), then point ``astra:policy`` at it.

    ``checkpoint`` must be absolute. Raises ``WeightPushError`` without touching the pointer
    when the push fails.
    """
    if push is not None:
        await push.push(checkpoint)
    pointer = PolicyPointer(
        version=version,
        checkpoint_uri=checkpoint.as_uri(),
        base_model=base_model,
        served_model=served_model,
    )
    await redis.set(POLICY_KEY, pointer.model_dump_json())
    return pointer
