"""Distractor selection with the real all-MiniLM-L6-v2 on procedural environments, and the
selected distractors offered and counted by a real envhost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from http_support import running
from mcp import Client

from astra.redis_server import free_port
from astra_common.clients.synth import SynthClient
from astra_common.db import Database
from astra_envhost.app import create_app as create_envhost
from astra_envhost.settings import EnvhostSettings
from astra_proto import EnvironmentSpec, Episode, RewardBreakdown
from astra_proto.api.rollout import DistractorOptions as BatchDistractors
from astra_rollout.distractors import (
    DistractorSettings,
    SimilarityBand,
    ToolEntry,
    ToolIndex,
)
from astra_rollout.embeddings import EmbeddingError, ToolEmbedder, tool_text
from astra_rollout.registry_client import SynthRegistry
from astra_synth.app import create_app as create_synth
from astra_synth.procedural import DOMAINS, generate_environments
from astra_synth.settings import SynthSettings

pytestmark = pytest.mark.slow

ENVS = generate_environments(40, seed=11)  # 8 of each of the 5 domains


@pytest.fixture(scope="module")
def embedder() -> ToolEmbedder:
    return ToolEmbedder()  # the bundled all-MiniLM-L6-v2, loaded once for the module


@pytest.fixture(scope="module")
def index(embedder: ToolEmbedder) -> ToolIndex:
    built = ToolIndex(embedder)
    assert built.add_environments(ENVS) == sum(len(env.tools) for env in ENVS)
    return built


def by_id() -> dict[str, EnvironmentSpec]:
    return {env.id: env for env in ENVS}


def test_the_pool_spans_every_domain() -> None:
    assert {env.domain for env in ENVS} == set(DOMAINS)
    assert len(DOMAINS) >= 4


def test_bands_k_and_same_domain_exclusion(index: ToolIndex) -> None:
    settings = DistractorSettings(k_per_band=2)
    envs = by_id()
    for env in ENVS[:10]:
        chosen = index.select_scored(env, settings, seed=5)
        assert chosen, env.domain
        bands = {band.name: band for band in settings.bands}
        for distractor in chosen:
            assert bands[distractor.band].contains(distractor.score)
            source = envs[distractor.ref.env_id]
            assert source.domain != env.domain
            assert distractor.ref.tool_name in source.tool_names()
        assert all(count <= 2 for count in Counter(d.band for d in chosen).values())
        names = [d.ref.tool_name for d in chosen]
        assert len(names) == len(set(names))
        assert not set(names) & set(env.tool_names())


def test_scores_are_min_max_normalised_per_task_tool(
    index: ToolIndex, embedder: ToolEmbedder
) -> None:
    env = ENVS[3]
    wide = DistractorSettings(k_per_band=21)  # 63: every candidate of every band
    chosen = index.select_scored(env, wide, seed=0)
    envs = by_id()
    scores = {
        tool_text(next(t.spec for t in envs[d.ref.env_id].tools if t.spec.name == d.ref.tool_name)):
        d.score
        for d in chosen
    }  # fmt: skip
    # Recompute from the embeddings: for each task tool, (s - min) / (max - min) over the pool.
    pool = {
        tool_text(tool.spec): tool.spec.name
        for other in ENVS
        if other.domain != env.domain
        for tool in other.tools
        if tool.spec.name not in env.tool_names()
    }
    texts = sorted(pool)
    cosine = embedder.embed([tool_text(s) for s in env.tool_specs()]) @ embedder.embed(texts).T
    low, high = cosine.min(axis=1, keepdims=True), cosine.max(axis=1, keepdims=True)
    expected = dict(zip(texts, ((cosine - low) / (high - low)).max(axis=0), strict=True))
    assert max(scores.values()) == pytest.approx(1.0)
    for text, score in scores.items():
        assert score == pytest.approx(float(expected[text]), abs=1e-5)
    assert len(set(pool.values())) == len(pool)  # here each name has one document
    for band in wide.bands:  # each band gives min(K, its members), each once
        members = [text for text in texts if band.contains(float(expected[text]))]
        drawn = [d for d in chosen if d.band == band.name]
        assert len(drawn) == min(wide.k_per_band, len(members)), band.name


def test_each_band_holds_what_its_bounds_say(index: ToolIndex) -> None:
    bands = [
        SimilarityBand(name="top", lower=0.5, upper=1.0),
        SimilarityBand(name="bottom", lower=0.0, upper=0.5),
    ]
    chosen = index.select_scored(ENVS[0], DistractorSettings(k_per_band=30, bands=bands), 1)
    assert {d.band for d in chosen} == {"top", "bottom"}
    assert all((d.score >= 0.5) == (d.band == "top") for d in chosen)


def test_same_seed_same_draw_and_seeds_vary_it(index: ToolIndex) -> None:
    settings = DistractorSettings(k_per_band=2)
    env = ENVS[7]
    first = index.select_scored(env, settings, seed=42)
    assert index.select_scored(env, settings, seed=42) == first
    rebuilt = ToolIndex(index.embedder)
    rebuilt.add_environments(reversed(ENVS))  # insertion order does not matter
    assert rebuilt.select_scored(env, settings, seed=42) == first
    draws = {
        tuple((d.ref.env_id, d.ref.tool_name) for d in index.select_scored(env, settings, seed))
        for seed in range(8)
    }
    assert len(draws) > 1


def test_k_zero_disabled_and_empty_pools(index: ToolIndex, embedder: ToolEmbedder) -> None:
    env = ENVS[0]
    assert index.select_scored(env, DistractorSettings(k_per_band=0), 0) == []
    assert index.select_scored(env, DistractorSettings(enabled=False), 0) == []
    assert ToolIndex(embedder).select_scored(env, DistractorSettings(), 0) == []
    same_domain_only = ToolIndex(embedder)
    same_domain_only.add_environments(e for e in ENVS if e.domain == env.domain)
    assert same_domain_only.select_scored(env, DistractorSettings(), 0) == []


def test_a_single_candidate_keeps_its_raw_similarity(embedder: ToolEmbedder) -> None:
    env, other = ENVS[0], next(e for e in ENVS if e.domain != ENVS[0].domain)
    single = ToolIndex(embedder)
    single.add([ToolEntry(other.id, other.domain, other.tools[0].spec)])
    [chosen] = single.select_scored(env, DistractorSettings(k_per_band=1), 0)
    task = embedder.embed([tool_text(s) for s in env.tool_specs()])
    cosine = task @ embedder.embed([tool_text(other.tools[0].spec)]).T
    assert chosen.score == pytest.approx(float(np.clip(cosine, 0, 1).max()), abs=1e-5)


def test_embeddings_are_cached_by_content(embedder: ToolEmbedder) -> None:
    texts = [tool_text(tool.spec) for tool in ENVS[1].tools]
    first = embedder.embed(texts)
    before = embedder.cached
    assert np.array_equal(embedder.embed(list(reversed(texts)))[::-1], first)
    assert embedder.cached == before
    assert np.linalg.norm(first, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_bad_settings_and_models_are_clear_errors(index: ToolIndex, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceeds the 64 distractors"):
        DistractorSettings(k_per_band=22)
    with pytest.raises(ValueError, match="lower must be below upper"):
        SimilarityBand(name="x", lower=0.5, upper=0.5)
    with pytest.raises(ValueError, match="not 'other-model'"):
        index.select_scored(ENVS[0], DistractorSettings(model="other-model"), 0)
    with pytest.raises(EmbeddingError, match="nor a sentence-transformers model folder"):
        ToolEmbedder(tmp_path / "nothing").embed(["x"])


async def test_batch_options_and_async_select(index: ToolIndex) -> None:
    env = ENVS[2]
    refs = await index.for_batch(env, BatchDistractors(enabled=True, per_band=1, seed=3))
    assert refs == await index.select(env, DistractorSettings(k_per_band=1), seed=3)
    assert 0 < len(refs) <= 3
    assert await index.for_batch(env, BatchDistractors(enabled=False)) == []


async def register(database_url: str, specs: list[EnvironmentSpec]) -> None:
    async with Database(database_url) as database, database.transaction() as repos:
        for spec in specs:
            await repos.environments.register(spec)


@pytest.mark.integration
async def test_index_from_the_synth_registry(
    embedder: ToolEmbedder, database_url: str, redis_url: str
) -> None:
    await register(database_url, ENVS[:10])
    settings = SynthSettings(database_url=database_url, redis_url=redis_url, port=free_port())
    async with (
        running(create_synth(settings), settings.port) as url,
        SynthClient(url) as synth,
    ):
        fresh = ToolIndex(embedder)
        added = await fresh.update_from(SynthRegistry(synth))
        assert added == sum(len(env.tools) for env in ENVS[:10])
        assert fresh.environments == 10
        assert await fresh.update_from(SynthRegistry(synth)) == 0  # nothing new


@pytest.mark.integration
async def test_envhost_offers_the_distractors_and_counts_their_calls(
    index: ToolIndex, database_url: str, envhost_settings: Callable[..., EnvhostSettings]
) -> None:
    task = ENVS[4]
    refs = await index.select(task, DistractorSettings(k_per_band=1), seed=9)
    assert refs
    await register(database_url, ENVS)
    settings = envhost_settings()
    async with (
        running(create_envhost(settings), settings.port) as base,
        httpx.AsyncClient(base_url=base, timeout=30.0) as http,
    ):
        body = {"env_id": task.id, "distractors": [r.model_dump() for r in refs]}
        created = await http.post("/v1/episodes", json=body)
        assert created.status_code == 201, created.text
        episode = Episode.model_validate(created.json())
        assert sorted(episode.distractor_tools) == sorted(r.tool_name for r in refs)

        ref = refs[0]
        source = next(t for t in by_id()[ref.env_id].tools if t.spec.name == ref.tool_name)
        assert source.reference_calls
        async with Client(episode.mcp_url) as client:
            offered = {tool.name for tool in (await client.list_tools()).tools}
            assert offered == set(task.tool_names()) | {r.tool_name for r in refs}
            result = await client.call_tool(ref.tool_name, source.reference_calls[0].arguments)
            assert not result.is_error

        scored = await http.post(f"/v1/episodes/{episode.id}/score", json={})
        reward = RewardBreakdown.model_validate(scored.json())
        assert (reward.n_calls, reward.n_solved, reward.f1) == (1, 0, 0.0)
        log = Episode.model_validate((await http.get(f"/v1/episodes/{episode.id}")).json())
        assert [(c.tool_name, c.distractor) for c in log.calls] == [(ref.tool_name, True)]
