"""The GRPO loop: stream → groups → batch → optimizer step → checkpoint → publish → ack.

Exactly-once training across crashes, by construction:

1. entries are acknowledged (with the consumer group's done-mark) only after the checkpoint
   holding their update has been renamed into place and the policy published;
2. on start, the runner takes over every entry still pending in the group (``XAUTOCLAIM``
   from idle 0: this runner is the group's only trainer), acknowledges those whose records
   the newest checkpoints list as trained (a crash between rename and ack), and trains the
   rest; entries that were buffered, or in the step that died, are simply read again;
3. an entry dropped by the filter (no reward variance, stale, unusable) is acknowledged at
   once: it will never be trained, so there is nothing to lose.

Redis faults do not end a run: every Redis call is retried with backoff (each failure logged)
until Redis has kept failing for ``redis_give_up_s``. A read whose reply was lost leaves its
entries pending for this consumer, so after a failed read the runner reads its own pending
entries again and takes those it does not hold.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from astra_common.retry import is_transient, retry_transient
from astra_common.streams import Delivery, StreamConsumer
from astra_proto import Trajectory
from astra_proto.api.trainer import RunStatus
from astra_trainer.grpo.batching import Dropped, Group, GroupBuffer, Member
from astra_trainer.grpo.checkpoint import OPTIMIZER_FILE, CheckpointState, CheckpointStore
from astra_trainer.grpo.config import GRPOConfig
from astra_trainer.grpo.encoding import EncodedTrajectory, EncodingError, encode_trajectory
from astra_trainer.grpo.step import PolicyLogprobs, StepStats, grpo_step
from astra_trainer.models import ModelStore
from astra_trainer.publish import VLLMWeightReload, publish_policy
from astra_trainer.run_files import (
    CONFIG_FILE,
    append_metrics,
    write_json_atomic,
    write_status,
)

if TYPE_CHECKING:
    from astra_trainer.grpo.parallel import DataParallel

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
RECLAIM_LIMIT = 100_000

T = TypeVar("T")


class RedisUnavailableError(RuntimeError):
    """Redis kept failing past the run's ``redis_give_up_s``; the message says what failed."""


def stream_redis_client(config: GRPOConfig) -> Redis:
    """The Redis client of a GRPO run.

    Its socket timeout is the read's block time plus ``redis_timeout_s``: a blocking
    ``XREADGROUP`` is answered only after up to ``block_ms``, so a timeout near the block time
    (redis-py's default is 5 s) cuts off reads on a loaded machine ("Timeout reading from").
    It retries nothing itself: the runner retries, and knows what a lost read reply means.
    """
    return Redis.from_url(
        config.redis_url,
        socket_timeout=config.block_ms / 1000 + config.redis_timeout_s,
        socket_connect_timeout=config.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass(slots=True)
class _Item:
    """A buffered trajectory: its delivery (to ack) and its training view."""

    delivery: Delivery[Trajectory]
    encoded: EncodedTrajectory


def load_policy(
    config: GRPOConfig,
    model_store: ModelStore,
    checkpoints: CheckpointStore,
    parallel: DataParallel | None = None,
) -> tuple[Path, int, PreTrainedModel, torch.optim.Optimizer, Any]:
    """The base model's folder, and the newest checkpoint's (or the base model's, as version
    0) version, model, AdamW optimizer and tokenizer. Every rank loads the same files; with
    ``parallel`` the model moves to the rank's device and is wrapped for DDP; a single process
    trains on the GPU when there is one."""
    torch.manual_seed(config.seed)
    # Absolute: the policy pointer holds it as a file URI (the model dir may be relative).
    base_folder = model_store.resolve(config.base_model).resolve()
    latest = checkpoints.latest()
    source = base_folder if latest is None else checkpoints.folder(latest.version)
    version = 0 if latest is None else latest.version
    tokenizer = AutoTokenizer.from_pretrained(source)
    # float32 master weights: bf16 loses most small updates.
    if config.lora_rank > 0:
        from astra_trainer.grpo.lora import add_adapter, load_adapter  # peft: ~5-20 s import

        # A LoRA checkpoint's weights are merged; resume from the base and the saved adapter.
        base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
        model: Any = (
            add_adapter(base, config.lora_rank, config.lora_alpha)
            if latest is None
            else load_adapter(base, source)
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if config.gradient_checkpointing:
        model.config.use_cache = False
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    if parallel is not None:
        model.to(parallel.device)
        parallel.wrap(PolicyLogprobs(model))
    elif torch.cuda.is_available():
        model.to("cuda")
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    optimizer_file = source / OPTIMIZER_FILE
    if latest is not None and optimizer_file.is_file():
        optimizer.load_state_dict(
            torch.load(optimizer_file, weights_only=True, map_location=model.device)
        )
    logger.info("GRPO starts at policy version %d from %s", version, source)
    return base_folder, version, model, optimizer, tokenizer


def run_worker(config: GRPOConfig, model_store: ModelStore, parallel: DataParallel) -> int:
    """A rank > 0 of a data-parallel run: take the steps rank 0 sends until it says stop.

    Returns how many steps it took. It writes nothing: rank 0 checkpoints, and all ranks hold
    the same weights after every step.
    """
    from astra_trainer.grpo.parallel import decode_groups

    if parallel.is_main:
        raise ValueError("rank 0 runs GRPORunner")
    checkpoints = CheckpointStore(
        config.run_dir.resolve() / CHECKPOINT_DIR, keep=config.keep_checkpoints
    )
    _, version, model, optimizer, _ = load_policy(config, model_store, checkpoints, parallel)
    steps = 0
    while True:
        message = parallel.receive()
        if message["command"] == "stop":
            logger.info(
                "rank %d: %d steps from version %d, stopping", parallel.rank, steps, version
            )
            return steps
        if message["command"] == "step":
            grpo_step(
                model,
                optimizer,
                decode_groups(message["groups"]),
                clip_low=config.clip_low,
                clip_high=config.clip_high,
                max_grad_norm=config.max_grad_norm,
                micro_batch_size=config.micro_batch_size,
                pad_token_id=int(message["pad_token_id"]),
                parallel=parallel,
            )
            steps += 1


class GRPORunner:
    """Trains one policy from one consumer group until stopped or ``max_steps`` is reached."""

    def __init__(
        self,
        config: GRPOConfig,
        redis: Redis,
        model_store: ModelStore,
        parallel: DataParallel | None = None,
    ) -> None:
        """``parallel``: this process is rank 0 of a data-parallel run (see ``parallel``)."""
        if parallel is not None and not parallel.is_main:
            raise ValueError("only rank 0 runs the GRPO loop; other ranks run run_worker")
        self.config = config
        self.parallel = parallel
        self.redis = redis
        self.model_store = model_store
        self.run_dir = config.run_dir.resolve()
        self.checkpoints = CheckpointStore(
            self.run_dir / CHECKPOINT_DIR, keep=config.keep_checkpoints
        )
        self.consumer = StreamConsumer(
            redis, config.stream, config.group, config.consumer_name, Trajectory
        )
        self.buffer: GroupBuffer[_Item] = GroupBuffer(
            group_size=config.group_size,
            batch_groups=config.batch_groups,
            buffer_groups=config.buffer_groups,
            delta=config.reward_std_delta,
            max_staleness=config.max_staleness,
            group_timeout_s=config.group_timeout_s,
        )
        self.push = (
            VLLMWeightReload(config.policy_server_url, timeout_s=config.push_timeout_s)
            if config.policy_server_url
            else None
        )
        self.status = RunStatus(
            run_id=self.run_dir.name, kind="grpo", state="pending", pid=os.getpid()
        )
        self.version = 0
        self.steps_done = 0
        self.rejected: dict[str, int] = {}
        self.truncated = 0
        """Trajectories trained on their first ``max_tokens`` tokens only (a running count)."""
        self._model: PreTrainedModel | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._tokenizer: Any = None
        self._base_folder: Path | None = None

    # -- start-up ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the newest checkpoint (weights and optimizer) or the base model as version 0."""
        self._base_folder, self.version, self._model, self._optimizer, self._tokenizer = (
            load_policy(self.config, self.model_store, self.checkpoints, self.parallel)
        )

    async def recover(self) -> None:
        """Take over pending entries: ack the ones already trained, buffer the others."""
        start_id = "$" if self.config.group_start == "new" else "0"
        await self._redis("create the consumer group", lambda: self.consumer.ensure_group(start_id))
        trained = self.checkpoints.trained_record_ids()
        # One pass over the whole pending list (XAUTOCLAIM follows its cursor).
        deliveries = await self._redis(
            "take over pending entries",
            lambda: self.consumer.reclaim(min_idle_ms=0, count=RECLAIM_LIMIT),
        )
        done = [d for d in deliveries if d.record_id in trained]
        if done:
            await self._ack(done)
            append_metrics(self.run_dir, {"event": "recovered_trained", "records": len(done)})
        await self._accept([d for d in deliveries if d.record_id not in trained])
        # Idempotent: also repairs a crash between checkpoint and pointer update.
        await self._publish(self.version)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> RunStatus:
        """Train until ``stop`` is set or ``max_steps`` steps are done; returns the final status."""
        stop = stop or asyncio.Event()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.run_dir / CONFIG_FILE, {"kind": "grpo", **self.config.model_dump(mode="json")}
        )
        self.status.state = "running"
        self.status.policy_version = self.version
        write_status(self.run_dir, self.status)
        try:
            if self._model is None:
                await asyncio.to_thread(self.load)
            self.status.policy_version = self.version
            await self.recover()
            while not stop.is_set():
                if self.config.max_steps is not None and self.steps_done >= self.config.max_steps:
                    break
                if self.buffer.wants_more():
                    await self._read()
                await self._ack_dropped(self.buffer.expire())
                if not await self._train_ready() and not self.buffer.wants_more():
                    await asyncio.sleep(0.05)  # cannot happen with a full buffer; no spin
                if self.parallel is not None:
                    await asyncio.to_thread(
                        self.parallel.send_heartbeat_if_due, self.config.heartbeat_s
                    )
        except BaseException as exc:
            self.status.state = "failed"
            self.status.error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "GRPO run %s failed: %s", self.run_dir.name, self.status.error, exc_info=exc
            )
            write_status(self.run_dir, self.status)
            # No stop for the other ranks: they may be inside a collective of the failed step.
            # This process exits non-zero, and torch.distributed.run then ends them.
            raise
        if self.parallel is not None:
            await asyncio.to_thread(self.parallel.send_stop)
        self.status.state = "finished" if not stop.is_set() else "stopped"
        write_status(self.run_dir, self.status)
        return self.status

    async def _redis(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Await a Redis call, retrying transient faults until ``redis_give_up_s``."""
        try:
            return await retry_transient(
                operation,
                what=f"GRPO run {self.run_dir.name}: {what}",
                give_up_after_s=self.config.redis_give_up_s,
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise RedisUnavailableError(
                f"could not {what}: Redis kept failing for {self.config.redis_give_up_s:g} s "
                f"(redis_give_up_s); last error {type(exc).__name__}: {exc}"
            ) from exc

    async def _ack(self, items: list[Delivery[Trajectory]] | list[str]) -> None:
        # Acks are idempotent (XACK + done-mark in one MULTI): a retry after a lost reply is safe.
        await self._redis("acknowledge entries", lambda: self.consumer.ack(items))

    async def _read(self) -> None:
        """Read new entries; after a failed read, also the entries its lost reply held."""
        lost_reply = False

        async def read() -> list[Delivery[Trajectory]]:
            nonlocal lost_reply
            try:
                return await self.consumer.read(
                    count=self.config.read_count, block_ms=self.config.block_ms
                )
            except Exception as exc:
                lost_reply = lost_reply or is_transient(exc)
                raise

        await self._accept(await self._redis("read the stream", read))
        if lost_reply:
            held = {m.item.delivery.entry_id for m in self.buffer.members()}
            again = await self._redis(
                "read pending entries again",
                lambda: self.consumer.read_own_pending(exclude=held),
            )
            if again:
                logger.warning(
                    "%d entries delivered by a read whose reply was lost were read again",
                    len(again),
                )
            await self._accept(again)

    async def _accept(self, deliveries: list[Delivery[Trajectory]]) -> None:
        assert self._tokenizer is not None
        for delivery in deliveries:
            trajectory = delivery.payload
            try:
                encoded = encode_trajectory(
                    trajectory,
                    self._tokenizer,
                    self.config.max_tokens,
                    overlong=self.config.overlong,
                )
            except EncodingError as exc:
                logger.warning("dropping trajectory %s: %s", trajectory.id, exc)
                reason = "unusable"
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
                await self._ack([delivery])
                continue
            if encoded.truncated_from is not None:
                self.truncated += 1
                logger.info(
                    "trajectory %s: %d tokens, trained on its first max_tokens=%d",
                    trajectory.id,
                    encoded.truncated_from,
                    self.config.max_tokens,
                )
            member = Member(
                encoded.record_id, encoded.reward, encoded.policy_version, _Item(delivery, encoded)
            )
            await self._ack_dropped(self.buffer.add(encoded.group_id, member))

    async def _ack_dropped(self, dropped: list[Dropped[_Item]]) -> None:
        for drop in dropped:
            if drop.reason == "duplicate":
                # Another entry of the same record is held: ack this one without a done-mark.
                await self._ack([m.item.delivery.entry_id for m in drop.members])
            else:
                self.rejected[drop.reason] = self.rejected.get(drop.reason, 0) + len(drop.members)
                await self._ack([m.item.delivery for m in drop.members])

    async def _train_ready(self) -> bool:
        batch, stale = self.buffer.take_batch(self.version)
        await self._ack_dropped(stale)
        if not batch:
            return False
        await self._train(batch)
        return True

    async def _train(self, batch: list[Group[_Item]]) -> None:
        assert self._model is not None
        assert self._optimizer is not None
        records = [m.record_id for g in batch for m in g.members]
        append_metrics(
            self.run_dir, {"event": "step_started", "version": self.version + 1, "records": records}
        )
        groups = [[m.item.encoded for m in g.members] for g in batch]
        stats = await asyncio.to_thread(self._step, groups)
        new_version = self.version + 1
        state = CheckpointState(
            version=new_version,
            base_model=self.config.base_model,
            record_ids=records,
            loss=stats.loss,
        )
        folder = await asyncio.to_thread(
            self.checkpoints.save,
            self._model,
            self._tokenizer,
            self._optimizer if self.config.save_optimizer else None,
            state,
        )
        await self._publish(new_version, folder)
        await self._ack([m.item.delivery for g in batch for m in g.members])
        self.version = new_version
        self.steps_done += 1
        await self._record(stats, batch, folder)

    def _step(self, groups: list[list[EncodedTrajectory]]) -> StepStats:
        assert self._model is not None
        assert self._optimizer is not None
        pad_token_id = self._tokenizer.pad_token_id or 0
        if self.parallel is not None:
            self.parallel.send_step(groups, pad_token_id)
        return grpo_step(
            self._model,
            self._optimizer,
            groups,
            clip_low=self.config.clip_low,
            clip_high=self.config.clip_high,
            max_grad_norm=self.config.max_grad_norm,
            micro_batch_size=self.config.micro_batch_size,
            pad_token_id=pad_token_id,
            parallel=self.parallel,
        )

    async def _publish(self, version: int, folder: Path | None = None) -> None:
        if folder is None:
            folder = self._base_folder if version == 0 else self.checkpoints.folder(version)
        checkpoint = folder
        assert checkpoint is not None
        # Publishing again is harmless (the same weights, the same pointer): retried whole.
        await self._redis(
            "publish the policy",
            lambda: publish_policy(
                self.redis,
                version=version,
                checkpoint=checkpoint,
                base_model=self.config.base_model,
                served_model=self.config.served_model,
                # Version 0 too: the server may still serve other weights than the run's base
                # (e.g. the model before SFT), and trajectories must come from what they claim.
                push=self.push,
            ),
        )

    async def _record(self, stats: StepStats, batch: list[Group[_Item]], folder: Path) -> None:
        members = [m.item.encoded for g in batch for m in g.members]
        rewards = [t.reward for t in members]
        try:
            lag = await self._redis("read the group's lag", self.consumer.lag)
        except LookupError:
            lag = None
        record: dict[str, Any] = {
            "event": "step",
            "step": self.steps_done,
            "policy_version": self.version,
            "loss": stats.loss,
            "reward_mean": statistics.fmean(rewards),
            "reward_std": statistics.pstdev(rewards),
            "batch_fill_ratio": self.buffer.stats.fill_ratio,
            "groups_complete": self.buffer.stats.complete_groups,
            "groups_valid": self.buffer.stats.valid_groups,
            "turns_mean": statistics.fmean(t.turns for t in members),
            "calls_mean": statistics.fmean(t.calls for t in members),
            "sequences": stats.sequences,
            "tokens": stats.tokens,
            "policy_tokens": stats.policy_tokens,
            "padded_tokens": stats.padded_tokens,
            "tokens_per_second": stats.tokens_per_second,
            "step_seconds": stats.seconds,
            "clip_fraction": stats.clip_fraction,
            "ratio_mean": stats.ratio_mean,
            "grad_norm": stats.grad_norm,
            "stream_lag": lag,
            "rejected": dict(self.rejected),
            "truncated": self.truncated,
            "checkpoint": str(folder),
            "records": [t.record_id for t in members],
        }
        append_metrics(self.run_dir, record)
        self.status.step = self.steps_done
        self.status.policy_version = self.version
        self.status.checkpoint = str(folder)
        write_status(self.run_dir, self.status)
        logger.info(
            "step %d: version %d, loss %.4f, reward %.3f±%.3f, %.0f tok/s",
            self.steps_done,
            self.version,
            stats.loss,
            record["reward_mean"],
            record["reward_std"],
            stats.tokens_per_second,
        )
