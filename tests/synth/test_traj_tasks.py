"""The chain/task pipeline with a scripted LLM (test double): proposals, graph, walks, chain
checks (arguments, votes, back-translation), server tasks, augmentation and grading, with
malformed and adversarial replies dropped and counted."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from scripted_chat import Script, ScriptedChat
from test_traj_graph import WEATHER

from astra_proto import StageProgress
from astra_proto.api.synth import Toolset, TrajectorySettings
from astra_synth.llm import LLMRequestRejected, LLMUnavailable, LLMUsage
from astra_synth.trajectories.models import Chain
from astra_synth.trajectories.user_tasks import synthesize_tasks
from astra_synth.trajectories.walks import unbound_arguments

TOOLSET = Toolset(id="weather-ts", servers=[WEATHER], created_at=datetime(2026, 1, 1, tzinfo=UTC))


def names(payload: dict[str, Any]) -> list[str]:
    return [t["name"] for t in payload["chain"]]


def propose(payload: dict[str, Any]) -> dict[str, Any]:
    return {"proposals": [
        {"task": "Forecast for Paris", "chain": ["find_city", "get_forecast"]},
        {"task": "Alerts in Oslo", "chain": ["find_city", "get_alerts", "get_alert"]},
        {"task": "Forecast then alerts", "chain": ["find_city", "get_forecast", "get_alerts"]},
        {"task": "Uses a tool that does not exist", "chain": ["find_city", "teleport"]},
    ]}  # fmt: skip


def coherence(payload: dict[str, Any]) -> dict[str, Any]:
    # adversarial: a chain ending at get_forecast is judged incoherent by 2 of 3 votes
    incoherent = names(payload)[-1] == "get_forecast" and payload.get("sample", 0) < 2
    return {"coherent": not incoherent, "reason": "scripted"}


def chain_to_query(payload: dict[str, Any]) -> dict[str, Any]:
    return {"query": "Please do: " + ", then ".join(names(payload))}


def query_to_chain(payload: dict[str, Any]) -> dict[str, Any]:
    chain = payload["query"].removeprefix("Please do: ").split(", then ")
    if "get_alert" in chain:  # adversarial: the back-translation loses a step
        chain = chain[:-1]
    return {"chain": chain}


def augment(payload: dict[str, Any]) -> str | dict[str, Any]:
    instruction = payload["instruction"]
    if instruction.startswith("Make it more demanding"):
        return "Sure! Here is a harder version: ..."  # malformed: not JSON
    if instruction.startswith("Rewrite it as a specific person"):
        return {"task": payload["task"]}  # unchanged
    return {"task": payload["task"] + " (reworded)"}


def quality(payload: dict[str, Any]) -> dict[str, Any]:
    task = payload["task"]
    realism = 2 if "moon" in task else 5
    original = payload["original"]
    return {"question_quality": 5, "realism": realism, "tool_necessity": 4,
            "keeps_intent": None if original is None else "Oslo" not in task,
            "same_language": None if original is None else True}  # fmt: skip


SCRIPT: dict[str, Script] = {
    "propose": propose,
    "coherence": coherence,
    "chain_to_query": chain_to_query,
    "query_to_chain": query_to_chain,
    "server_tasks": lambda p: {"tasks": ["Weather on the moon?", "Is it raining in Oslo?"]},
    "augment": augment,
    "task_quality": quality,
}


async def test_pipeline_keeps_only_what_passes_every_check() -> None:
    llm = ScriptedChat(dict(SCRIPT))
    updates: list[StageProgress] = []
    records: list[tuple[str, str, str | None, str | None]] = []

    def on_reject(
        stage: str,
        reason: str,
        *,
        item: str | None = None,
        message: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        records.append((stage, reason, item, message))

    settings = TrajectorySettings(walks_per_server=12, seed=3)
    usage = LLMUsage()
    result = await synthesize_tasks(
        TOOLSET,
        llm=llm,
        settings=settings,
        progress=updates.append,
        on_reject=on_reject,
        usage=usage,
    )

    (graph,) = result.graphs
    assert all(e.target != "teleport" for e in graph.edges)
    assert result.rejected["proposal_unknown_tool"] == 1
    # every sampled chain is accounted for: kept or dropped for one reason
    chain_drops = sum(
        n for reason, n in result.rejected.items()
        if reason.startswith("chain_")
    )  # fmt: skip
    assert result.chains_sampled == len(result.chains_kept) + chain_drops > 0
    assert result.rejected.get("chain_incoherent", 0) > 0
    assert result.rejected.get("chain_backtranslation_mismatch", 0) > 0
    for chain in result.chains_kept:
        assert unbound_arguments(chain, WEATHER) == []
        assert chain.tools[-1] != "get_forecast"
        assert "get_alert" not in chain.tools
        assert 2 <= len(chain.tools) <= 5
    # votes: 3 per chain that passed the argument check
    voted = [p for s, p in llm.requests if s == "coherence"]
    assert len(voted) == 3 * (
        result.chains_sampled - result.rejected.get("chain_unbound_argument", 0)
    )

    questions = {t.question: t for t in result.tasks}
    assert "Weather on the moon?" not in questions  # realism 2 < 4
    assert "Is it raining in Oslo?" in questions
    assert "Is it raining in Oslo? (reworded)" not in questions  # changed intent (scripted)
    origins = {t.origin for t in result.tasks}
    assert origins <= {"chain", "server", "augment:diverse"}
    assert "augment:diverse" in origins
    bases = [t for t in result.tasks if t.origin in ("chain", "server")]
    assert result.rejected["llm_malformed:augment_complex"] == len(bases) + 1  # + the moon task
    assert result.rejected["augment_unchanged"] == len(bases) + 1
    assert result.rejected["task_low_realism"] == 2  # the moon task and its rewording
    assert result.rejected["augment_changed_intent"] == 1
    for task in result.tasks:
        assert min(task.scores.values()) >= 4
        if task.origin == "augment:diverse":
            parent = next(t for t in result.tasks if t.id == task.parent_id)
            assert task.question == parent.question + " (reworded)"
            assert task.chain == parent.chain
    chain_tasks = [t for t in result.tasks if t.origin == "chain"]
    assert sorted(tuple(t.chain or []) for t in chain_tasks) == sorted(
        tuple(c.tools) for c in result.chains_kept
    )
    assert {u.stage for u in updates} == {"proposals", "graph", "chains", "tasks"}
    # Counts stay consistent at every update: nothing is done or dropped beyond the total.
    for update in updates:
        assert update.total is not None
        assert update.done + sum(update.rejected.values()) <= update.total, update
    final = {u.stage: u for u in updates}
    for name in ("chains", "tasks"):  # every item of these stages ends kept or rejected
        assert final[name].done + sum(final[name].rejected.values()) == final[name].total
    assert final["chains"].done == len(result.chains_kept)
    assert final["tasks"].done == len(result.tasks)
    assert final["proposals"].rejected == {"proposal_unknown_tool": 1}
    # Each drop is told with its item and reason, once: as many records as counted drops.
    assert Counter(reason for _, reason, _, _ in records) == Counter(result.rejected)
    stages = {reason: stage for stage, reason, _, _ in records}
    assert stages["proposal_unknown_tool"] == "proposals"
    assert stages["chain_incoherent"] == "chains"
    assert stages["task_low_realism"] == "tasks"
    assert any(
        reason == "task_low_realism" and item == "Weather on the moon?"
        for _, reason, item, _ in records
    )
    assert set(usage.by_stage) >= {"propose_chains", "coherence", "server_tasks", "task_quality"}


async def test_malformed_replies_everywhere_yield_nothing_but_counts() -> None:
    def garbage(payload: dict[str, Any]) -> str:
        return '{"unexpected": "shape"}'

    llm = ScriptedChat(dict.fromkeys(SCRIPT, garbage))
    result = await synthesize_tasks(TOOLSET, llm=llm, settings=TrajectorySettings())
    assert result.tasks == []
    assert result.chains_kept == []
    assert result.rejected["proposal_malformed"] == 1
    assert result.rejected["llm_malformed:server_tasks"] == 1
    # without proposals the graph holds the schema links only, and walks still run
    (graph,) = result.graphs
    assert all(e.from_llm == 0 and e.from_schema == 1 for e in graph.edges)
    assert result.rejected.get("llm_malformed:coherence", 0) == result.chains_sampled


async def test_a_rejected_request_drops_an_item_but_an_unavailable_llm_ends_the_job() -> None:
    script = dict(SCRIPT)
    script["server_tasks"] = lambda p: LLMRequestRejected("prompt too long")
    result = await synthesize_tasks(TOOLSET, llm=ScriptedChat(script))
    assert result.rejected["llm_error:server_tasks"] == 1
    assert result.tasks  # the chain tasks survive

    script["propose"] = lambda p: LLMUnavailable("connection refused after 3 tries")
    with pytest.raises(LLMUnavailable, match="connection refused"):
        await synthesize_tasks(TOOLSET, llm=ScriptedChat(script))


def test_settings_refuse_inverted_lengths() -> None:
    with pytest.raises(ValueError, match="min_chain_length"):
        TrajectorySettings(min_chain_length=4, max_chain_length=2)
    assert Chain(server="s", tools=["a"]).tools == ["a"]
