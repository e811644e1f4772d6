"""Episodes: fresh, isolated states of environments, their tool calls and their scores."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator

from astra_common.db import Database
from astra_envhost.argument_shapes import argument_shape
from astra_envhost.backends import EpisodeRuntime, ToolExecutionError
from astra_envhost.journal import CallRecorded, EpisodeCreated, EpisodeJournal
from astra_envhost.registry import (
    EnvironmentRegistry,
    LoadedEnvironment,
    UnknownEnvironment,
    argument_errors,
    compile_validator,
)
from astra_proto import (
    EnvironmentSpec,
    Episode,
    EpisodeRequest,
    EpisodeState,
    RewardBreakdown,
    SyntheticTool,
    ToolCallRecord,
    ToolSpec,
)

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 2000


class EpisodeError(Exception):
    """A request about an episode cannot be served; the message says why."""


class CapacityError(EpisodeError):
    """Too many open episodes on this replica."""


class EpisodeNotFound(EpisodeError):
    """No such episode here; ``owner_url`` names the replica holding it, when another does."""

    def __init__(self, message: str, owner_url: str | None = None) -> None:
        super().__init__(message)
        self.owner_url = owner_url


class InvalidRequest(EpisodeError):
    """The request contradicts the environment (unknown distractor, name clash, ...)."""


@dataclass(frozen=True)
class EnvironmentKind:
    """How episodes of one kind of environment run and are scored."""

    create_runtime: Callable[[EnvironmentSpec, list[SyntheticTool]], EpisodeRuntime]
    score: Callable[
        [EnvironmentSpec, list[ToolCallRecord], str | None, EpisodeRuntime], RewardBreakdown
    ]


def kind_key(spec: EnvironmentSpec) -> str:
    """``synthetic``, or the builtin backend's name."""
    return spec.builtin.name if spec.builtin is not None else "synthetic"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LiveEpisode:
    """An open episode held by this replica."""

    id: str
    environment: LoadedEnvironment
    seed: int
    mcp_url: str
    runtime: EpisodeRuntime
    tools: dict[str, ToolSpec]
    validators: dict[str, Draft202012Validator]
    distractors: set[str]
    idle_timeout: float = 1800.0
    """Seconds without activity after which the episode is expired."""
    created_at: datetime = field(default_factory=utc_now)
    last_active_at: datetime = field(default_factory=utc_now)
    turn: int = 0
    state: EpisodeState = EpisodeState.OPEN
    reward: RewardBreakdown | None = None
    calls: list[ToolCallRecord] = field(default_factory=list)

    @property
    def spec(self) -> EnvironmentSpec:
        return self.environment.spec

    def offers(self, tool_name: str) -> bool:
        """Whether ``tool_name`` is among ``offered_tools()``."""
        return tool_name in self.tools and (
            tool_name in self.distractors or tool_name in self.runtime.available(self.turn)
        )

    def offered_tools(self) -> list[ToolSpec]:
        """Tools offered at the current turn; distractors are always offered."""
        available = set(self.runtime.available(self.turn)) | self.distractors
        return [tool for name, tool in self.tools.items() if name in available]

    def to_model(self, with_calls: bool = True) -> Episode:
        return Episode(
            id=self.id,
            env_id=self.spec.id,
            seed=self.seed,
            state=self.state,
            mcp_url=self.mcp_url,
            tools=list(self.tools.values()),
            distractor_tools=sorted(self.distractors),
            turn=self.turn,
            calls=list(self.calls) if with_calls else [],
            reward=self.reward,
            created_at=self.created_at,
            last_active_at=self.last_active_at,
        )


class EpisodeManager:
    """Creates, serves, scores and expires the episodes of one envhost replica."""

    def __init__(
        self,
        *,
        database: Database,
        registry: EnvironmentRegistry,
        kinds: Mapping[str, EnvironmentKind],
        base_url: str,
        max_episodes: int = 10_000,
        idle_timeout: float = 1800.0,
        client_idle_timeout: float = 300.0,
        journal_interval: float = 0.5,
    ) -> None:
        """``idle_timeout`` expires REST-created episodes, ``client_idle_timeout`` those that
        MCP clients open on ``/envs/{id}/mcp`` (clients may leave without a word)."""
        self.database = database
        self.registry = registry
        self.kinds = kinds
        self.base_url = base_url.rstrip("/")
        self.max_episodes = max_episodes
        self.idle_timeout = idle_timeout
        self.client_idle_timeout = client_idle_timeout
        self.journal = EpisodeJournal(database, interval=journal_interval)
        self.live: dict[str, LiveEpisode] = {}
        self._reaper: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the journal and the idle reaper."""
        self.journal.start()
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="episode-reaper")

    async def stop(self) -> None:
        """Close every open episode and flush the journal."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for episode_id in list(self.live):
            await self.close(episode_id, EpisodeState.CLOSED)
        await self.journal.stop()

    # -- episodes ---------------------------------------------------------------------------

    def mcp_url(self, episode_id: str, base_url: str | None = None) -> str:
        """The MCP URL of an episode, at this replica or at ``base_url`` (a gateway)."""
        return f"{(base_url or self.base_url).rstrip('/')}/episodes/{episode_id}/mcp"

    async def create(
        self, request: EpisodeRequest, episode_id: str | None = None, *, for_client: bool = False
    ) -> LiveEpisode:
        """Open a fresh episode; ``CapacityError``, ``InvalidRequest`` or ``UnknownEnvironment``.

        ``for_client``: opened for an MCP client of ``/envs/{id}/mcp``, expired after
        ``client_idle_timeout`` rather than ``idle_timeout``.
        """
        if len(self.live) >= self.max_episodes:
            raise CapacityError(
                f"this envhost holds {len(self.live)} open episodes (the maximum); "
                "close finished episodes or add replicas"
            )
        environment = await self.registry.get(request.env_id)
        spec = environment.spec
        kind = self.kinds.get(kind_key(spec))
        if kind is None:
            raise InvalidRequest(f"environment kind {kind_key(spec)!r} is not served here")
        tools = {tool.name: tool for tool in spec.tool_specs()}
        validators = dict(environment.validators)
        distractor_tools = await self._distractor_tools(request, tools)
        for tool in distractor_tools:
            tools[tool.spec.name] = tool.spec
            validators[tool.spec.name] = compile_validator(tool.spec)
        runtime = kind.create_runtime(spec, distractor_tools)
        episode = LiveEpisode(
            id=episode_id or f"ep_{uuid.uuid4().hex}",
            environment=environment,
            seed=request.seed,
            mcp_url="",
            runtime=runtime,
            tools=tools,
            validators=validators,
            distractors={tool.spec.name for tool in distractor_tools},
            idle_timeout=self.client_idle_timeout if for_client else self.idle_timeout,
        )
        episode.mcp_url = self.mcp_url(episode.id)
        self.live[episode.id] = episode
        self.journal.add(EpisodeCreated(episode.to_model(), self.base_url))
        return episode

    async def first_turn_tools(self, env_id: str) -> list[ToolSpec]:
        """The tools a fresh episode of ``env_id`` offers, without opening one.

        ``UnknownEnvironment`` or ``InvalidRequest`` (a kind not served here).
        """
        spec = (await self.registry.get(env_id)).spec
        kind = self.kinds.get(kind_key(spec))
        if kind is None:
            raise InvalidRequest(f"environment kind {kind_key(spec)!r} is not served here")
        runtime = kind.create_runtime(spec, [])  # backends start nothing before a call
        try:
            available = set(runtime.available(0))
        finally:
            await runtime.close()
        return [tool for tool in spec.tool_specs() if tool.name in available]

    async def _distractor_tools(
        self, request: EpisodeRequest, own: Mapping[str, ToolSpec]
    ) -> list[SyntheticTool]:
        chosen: list[SyntheticTool] = []
        for ref in request.distractors:
            try:
                other = (await self.registry.get(ref.env_id)).spec
            except UnknownEnvironment as exc:
                raise InvalidRequest(f"distractor {ref.tool_name!r}: {exc}") from None
            match = [tool for tool in other.tools if tool.spec.name == ref.tool_name]
            if not match:
                raise InvalidRequest(
                    f"distractor {ref.tool_name!r} is not a synthetic tool of {ref.env_id!r}"
                )
            if ref.tool_name in own or any(t.spec.name == ref.tool_name for t in chosen):
                raise InvalidRequest(
                    f"distractor {ref.tool_name!r} clashes with a tool the episode already has"
                )
            chosen.append(match[0])
        return chosen

    async def get(self, episode_id: str) -> LiveEpisode:
        """The open episode ``episode_id`` held here; ``EpisodeNotFound`` (with the owner)."""
        episode = self.live.get(episode_id)
        if episode is not None:
            return episode
        owner: str | None = None
        with contextlib.suppress(Exception):
            async with self.database.transaction() as repos:
                owner = await repos.episodes.owner_url(episode_id)
        if owner and owner.rstrip("/") != self.base_url:
            raise EpisodeNotFound(
                f"episode {episode_id!r} is held by the envhost at {owner}; "
                f"connect to {owner.rstrip('/')}/episodes/{episode_id}/mcp",
                owner_url=owner,
            )
        raise EpisodeNotFound(f"episode {episode_id!r} is not open (closed, expired or unknown)")

    async def stored(self, episode_id: str) -> Episode:
        """The episode as a model: live state when open here, else the database record.

        ``EpisodeNotFound`` with ``owner_url`` when another replica holds it open (its live
        call log is there, the database copy may lag behind).
        """
        episode = self.live.get(episode_id)
        if episode is not None:
            return episode.to_model()
        await self.journal.flush()
        try:
            async with self.database.transaction() as repos:
                record = await repos.episodes.get(episode_id)
                owner = await repos.episodes.owner_url(episode_id)
        except LookupError:
            raise EpisodeNotFound(f"no episode {episode_id!r}") from None
        if record.state is EpisodeState.OPEN and owner and owner.rstrip("/") != self.base_url:
            raise EpisodeNotFound(f"episode {episode_id!r} is open on {owner}", owner_url=owner)
        return record

    async def call_tool(
        self, episode: LiveEpisode, tool_name: str, arguments: dict[str, Any] | None
    ) -> ToolCallRecord:
        """Run one tool call and record it; failures come back as records with ``error``."""
        if episode.state is not EpisodeState.OPEN:
            raise EpisodeNotFound(f"episode {episode.id!r} is {episode.state.value}")
        arguments = arguments or {}
        started = time.perf_counter()
        result: Any = None
        error: str | None = None
        if not episode.offers(tool_name):
            offered = sorted(tool.name for tool in episode.offered_tools())
            error = f"unknown tool {tool_name!r}; this episode offers: {', '.join(offered)}"
        else:
            validator = episode.validators[tool_name]
            shape = argument_shape(validator)
            if shape is not None and shape.accepts(arguments):
                problems = []
            else:
                problems = argument_errors(validator, arguments)
            if problems:
                error = f"invalid arguments for {tool_name}: " + "; ".join(problems)
            else:
                try:
                    result = await episode.runtime.by_tool[tool_name].call(tool_name, arguments)
                except ToolExecutionError as exc:
                    error = str(exc)[:ERROR_TEXT_LIMIT] or type(exc).__name__
                except Exception as exc:  # a backend bug must not take the episode down
                    log.exception(
                        "tool %s of episode %s failed unexpectedly", tool_name, episode.id
                    )
                    error = f"internal error: {type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        record = ToolCallRecord(
            seq=len(episode.calls),
            tool_name=tool_name,
            arguments=arguments,
            result=result,
            error=error,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            turn=episode.turn,
            distractor=tool_name in episode.distractors,
            at=utc_now(),
        )
        episode.calls.append(record)
        episode.last_active_at = record.at
        self.journal.add(CallRecorded(episode.id, record))
        return record

    async def advance_turn(self, episode: LiveEpisode) -> int:
        """Move to the next user turn (multi-turn tasks); returns the new turn."""
        last = len(episode.spec.followup_turns)
        if episode.turn >= last:
            raise InvalidRequest(f"episode {episode.id!r} is at its last turn ({last})")
        episode.turn += 1
        episode.runtime.begin_turn(episode.turn)
        episode.last_active_at = utc_now()
        episode_id, turn = episode.id, episode.turn

        async def store(repos: Any) -> None:
            await repos.episodes.set_turn(episode_id, turn)

        self.journal.add(store)
        return episode.turn

    async def score(self, episode: LiveEpisode, final_answer: str | None) -> RewardBreakdown:
        """Score the episode with its environment's verifier; it stays open for reading."""
        kind = self.kinds[kind_key(episode.spec)]
        reward = await asyncio.to_thread(
            kind.score, episode.spec, list(episode.calls), final_answer, episode.runtime
        )
        episode.reward = reward
        episode.state = EpisodeState.SCORED
        episode_id = episode.id

        async def store(repos: Any) -> None:
            await repos.episodes.set_reward(episode_id, reward)
            await repos.episodes.set_state(episode_id, EpisodeState.SCORED)

        self.journal.add(store)
        return reward

    async def close(self, episode_id: str, state: EpisodeState = EpisodeState.CLOSED) -> bool:
        """Release an episode's runtime; False when it was not open here."""
        episode = self.live.pop(episode_id, None)
        if episode is None:
            return False
        await episode.runtime.close()
        final = state if episode.state is EpisodeState.OPEN else episode.state

        async def store(repos: Any) -> None:
            await repos.episodes.set_state(episode_id, final)

        self.journal.add(store)
        return True

    async def reap_idle(self) -> int:
        """Expire episodes idle for longer than their timeout; returns how many."""
        now = utc_now()
        idle = [
            e.id
            for e in self.live.values()
            if e.last_active_at < now - timedelta(seconds=e.idle_timeout)
        ]
        for episode_id in idle:
            await self.close(episode_id, EpisodeState.EXPIRED)
        return len(idle)

    async def _reap_forever(self) -> None:
        period = max(0.05, min(30.0, self.idle_timeout / 4, self.client_idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            try:
                reaped = await self.reap_idle()
                if reaped:
                    log.info("expired %d idle episodes", reaped)
            except Exception:
                log.exception("reaping idle episodes failed")
