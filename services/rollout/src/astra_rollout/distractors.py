"""Irrelevant-tool mixing: distractor tools drawn from other environments by similarity bands.

For an episode of environment E (the task), the **pool** is every synthetic tool of every
indexed environment whose domain differs from E's (so E itself is excluded too) and whose
name is not one of E's tool names; tools with the same document (name, description,
parameter names) in several environments are one candidate. Builtin environments' tools are
not indexed: envhost serves only synthetic tools as distractors.

Scores (docs/method.md C, "per-tool min-max normalised"):

1. every task tool t and candidate c are embedded (`embeddings.tool_text`: name, description,
   parameter names; unit-length MiniLM vectors) and compared by cosine similarity s(t, c);
2. for each task tool t, s(t, ·) is min-max normalised **over the pool of this episode**:
   n(t, c) = (s(t, c) - min_c s(t, c)) / (max_c s(t, c) - min_c s(t, c)), so for every task
   tool its nearest candidate scores 1 and its farthest 0 (a pool where s(t, ·) is constant,
   e.g. a single candidate, keeps the raw cosine clipped to [0, 1]);
3. a candidate's score is the max over task tools: score(c) = max_t n(t, c).

Each band (default: high [0.85, 1], mid [0.4, 0.85), low [0, 0.4)) then contributes up to K
candidates drawn uniformly at random from those whose score falls in it, with a generator
seeded by (seed, environment id): the same arguments give the same distractors. A drawn
document's environment (when several carry it) is drawn by the same generator, and a name
already offered is skipped, since an episode's tool names must be unique.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from astra_proto import DistractorRef, EnvironmentSpec, ToolSpec
from astra_proto.api.rollout import RegistryQuery
from astra_rollout.embeddings import DEFAULT_EMBEDDING_MODEL, ToolEmbedder, tool_text
from astra_rollout.registry_client import EnvironmentSource

MAX_DISTRACTORS = 64
"""The most distractors an episode request may carry (``EpisodeRequest.distractors``)."""
FETCH_CONCURRENCY = 16


class SimilarityBand(BaseModel):
    """Scores from ``lower`` (inclusive) to ``upper`` (exclusive; an upper of 1 includes 1)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    name: str = Field(min_length=1)
    """Label of the band (reported with each distractor)."""
    lower: float = Field(ge=0.0, le=1.0)
    """Lowest normalised score in the band."""
    upper: float = Field(ge=0.0, le=1.0)
    """Score the band stops below (1.0: up to and including 1)."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.lower >= self.upper:
            raise ValueError(f"band {self.name!r}: lower must be below upper")
        return self

    def contains(self, score: float) -> bool:
        """Whether ``score`` falls in the band."""
        return self.lower <= score < self.upper or score == self.upper == 1.0


DEFAULT_BANDS = (
    SimilarityBand(name="high", lower=0.85, upper=1.0),
    SimilarityBand(name="mid", lower=0.4, upper=0.85),
    SimilarityBand(name="low", lower=0.0, upper=0.4),
)


class DistractorSettings(BaseModel):
    """How distractor tools are chosen for an episode."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Whether episodes get distractors at all."""
    model: str = DEFAULT_EMBEDDING_MODEL
    """Embedding model: the bundled all-MiniLM-L6-v2 by name, or a sentence-transformers folder
    (fixed when the index is built; a different value here is refused)."""
    k_per_band: int = Field(default=2, ge=0, le=MAX_DISTRACTORS)
    """K: the most distractors drawn from each band."""
    bands: list[SimilarityBand] = Field(default_factory=lambda: list(DEFAULT_BANDS))
    """Similarity bands over the normalised score; a candidate counts in the first that
    contains it."""

    @model_validator(mode="after")
    def _fits_an_episode(self) -> Self:
        names = [band.name for band in self.bands]
        if len(names) != len(set(names)):
            raise ValueError("band names must be unique")
        if self.k_per_band * len(self.bands) > MAX_DISTRACTORS:
            raise ValueError(
                f"k_per_band x bands = {self.k_per_band * len(self.bands)} exceeds the "
                f"{MAX_DISTRACTORS} distractors an episode may carry"
            )
        return self


class BatchDistractorOptions(Protocol):
    """The per-batch options of a batch request (``astra_proto.api.rollout.DistractorOptions``)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def per_band(self) -> int: ...
    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class ToolEntry:
    """One tool of the pool: which environment (and domain) offers it, and its document."""

    env_id: str
    domain: str
    spec: ToolSpec


@dataclass(frozen=True)
class Distractor:
    """A chosen distractor, with the band and normalised score it was drawn by."""

    ref: DistractorRef
    band: str
    score: float


class ToolIndex:
    """The pool of candidate distractors and their embeddings; build once per process.

    `add` / `add_environments` / `update_from` grow it (environments already indexed are
    skipped, so refreshing from the registry is cheap); `select` draws an episode's distractors.
    """

    def __init__(self, embedder: ToolEmbedder | None = None) -> None:
        self.embedder = embedder or ToolEmbedder()
        self._entries: list[ToolEntry] = []
        self._env_ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def environments(self) -> int:
        """How many environments have been indexed."""
        return len(self._env_ids)

    def add(self, entries: Iterable[ToolEntry]) -> int:
        """Add tools given as entries; returns how many were added."""
        added = list(entries)
        self._entries.extend(added)
        self._env_ids.update(entry.env_id for entry in added)
        return len(added)

    def add_environments(self, specs: Iterable[EnvironmentSpec]) -> int:
        """Add the synthetic tools of each environment not indexed yet; returns tools added."""
        added = 0
        for spec in specs:
            if spec.id in self._env_ids or spec.kind != "synthetic":
                self._env_ids.add(spec.id)
                continue
            added += self.add(ToolEntry(spec.id, spec.domain, tool.spec) for tool in spec.tools)
            self._env_ids.add(spec.id)
        return added

    async def update_from(
        self, source: EnvironmentSource, query: RegistryQuery | None = None
    ) -> int:
        """Index the registry's synthetic environments not indexed yet (by default all of
        them); returns tools added. Raises the source's ``RegistryError`` when it fails."""
        wanted = query or RegistryQuery(kind="synthetic", limit=100_000)
        new_ids = [i for i in await source.query(wanted) if i not in self._env_ids]
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(env_id: str) -> EnvironmentSpec:
            async with gate:
                return await source.get(env_id)

        specs = await asyncio.gather(*(fetch(env_id) for env_id in new_ids))
        return self.add_environments(specs)

    async def select(
        self, env: EnvironmentSpec, settings: DistractorSettings, seed: int
    ) -> list[DistractorRef]:
        """Distractors for an episode of ``env`` (see the module docstring); [] when disabled,
        when K is 0, or when the pool is empty. Embedding runs in a worker thread."""
        chosen = await asyncio.to_thread(self.select_scored, env, settings, seed)
        return [distractor.ref for distractor in chosen]

    async def for_batch(
        self, env: EnvironmentSpec, options: BatchDistractorOptions
    ) -> list[DistractorRef]:
        """`select` with the batch API's options (``per_band`` as K, its ``seed``); the bands
        and model are the defaults of `DistractorSettings`."""
        settings = DistractorSettings(
            enabled=options.enabled, k_per_band=options.per_band, model=self.embedder.model
        )
        return await self.select(env, settings, options.seed)

    def select_scored(
        self, env: EnvironmentSpec, settings: DistractorSettings, seed: int
    ) -> list[Distractor]:
        """`select`, synchronously, with each distractor's band and normalised score."""
        if settings.model != self.embedder.model:
            raise ValueError(
                f"this index embeds with {self.embedder.model!r}, not {settings.model!r}"
            )
        task_tools = env.tool_specs()
        taken = set(env.tool_names())
        documents = self._candidates(env, taken)
        if not settings.enabled or settings.k_per_band == 0 or not documents or not task_tools:
            return []
        texts = sorted(documents)
        scores = self._scores([tool_text(spec) for spec in task_tools], texts)
        rng = random.Random(f"{seed}:{env.id}")
        chosen: list[Distractor] = []
        banded: set[int] = set()
        for band in settings.bands:
            members = [i for i in range(len(texts)) if i not in banded and band.contains(scores[i])]
            banded.update(members)
            rng.shuffle(members)
            picked = 0
            for index in members:
                if picked == settings.k_per_band:
                    break
                entries = documents[texts[index]]
                name = entries[0].spec.name
                if name in taken:
                    continue
                entry = rng.choice(entries)
                ref = DistractorRef(env_id=entry.env_id, tool_name=name)
                chosen.append(Distractor(ref=ref, band=band.name, score=float(scores[index])))
                taken.add(name)
                picked += 1
        return chosen

    def _candidates(self, env: EnvironmentSpec, taken: set[str]) -> dict[str, list[ToolEntry]]:
        """Pool tools grouped by embedded document, each group in environment-id order."""
        documents: dict[str, list[ToolEntry]] = {}
        for entry in self._entries:
            if entry.domain == env.domain or entry.env_id == env.id or entry.spec.name in taken:
                continue
            documents.setdefault(tool_text(entry.spec), []).append(entry)
        for entries in documents.values():
            entries.sort(key=lambda entry: entry.env_id)
        return documents

    def _scores(self, task_texts: list[str], candidate_texts: list[str]) -> list[float]:
        """score(c) = max over task tools of the per-task-tool min-max normalised cosine."""
        task = self.embedder.embed(task_texts)
        pool = self.embedder.embed(candidate_texts)
        cosine = task @ pool.T  # unit vectors: dot product is cosine similarity
        low = cosine.min(axis=1, keepdims=True)
        span = cosine.max(axis=1, keepdims=True) - low
        flat = span <= 1e-6
        normalised = np.where(flat, np.clip(cosine, 0.0, 1.0), (cosine - low) / (span + flat))
        return [float(score) for score in normalised.max(axis=0)]
