"""User tasks: chain-conditioned and server-only tasks, augmentation that keeps language and
intent, and thresholds on question quality, scenario realism and tool-use necessity."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from astra_proto import StageProgress, sha256_hex
from astra_proto.api.synth import AugmentKind, ToolServer, Toolset, TrajectorySettings
from astra_synth.llm import ChatModel, LLMError, LLMUnavailable, LLMUsage
from astra_synth.llm_pipeline.ask import StageReply, Unparseable
from astra_synth.trajectories.asker import Asker
from astra_synth.trajectories.chains import ChainChecker, tool_documents
from astra_synth.trajectories.graph import build_graph, propose_chains
from astra_synth.trajectories.models import (
    ProgressFn,
    RejectionSink,
    SynthTask,
    TaskSynthesis,
    ignore_rejection,
    report,
)
from astra_synth.trajectories.walks import sample_chains

SYSTEM_SERVER_TASKS = (
    "You write realistic requests a user of this tool server would send, each needing at "
    "least one of its tools, with the concrete values the calls need. "
    'Reply with JSON only: {"tasks": ["...", "..."]}'
)
AUGMENT_INSTRUCTIONS: dict[str, str] = {
    "diverse": "Rephrase it with different wording and a different scenario.",
    "complex": "Make it more demanding (more constraints or steps) with the same tools.",
    "persona": "Rewrite it as a specific person (job, situation, tone) would write it.",
}
SYSTEM_AUGMENT = (
    "You rewrite a user request as instructed. Keep its language (never translate), keep its "
    "intent and the values it gives, and keep it solvable with the same tools. "
    'Reply with JSON only: {"task": "..."}'
)
SYSTEM_TASK_QUALITY = (
    "You grade a user request for a tool-using assistant, each from 1 (bad) to 5 (excellent): "
    "question_quality (clear, specific, answerable), realism (a real user would ask it), "
    "tool_necessity (it cannot be answered without the tools). When an original request is "
    "given, also say whether the request keeps its intent and its language. Reply with JSON "
    'only: {"question_quality": 1-5, "realism": 1-5, "tool_necessity": 1-5, '
    '"keeps_intent": true|false|null, "same_language": true|false|null}'
)

Score = Literal[1, 2, 3, 4, 5]


class TasksReply(StageReply):
    tasks: list[str]


class AugmentReply(StageReply):
    task: str


class QualityReply(StageReply):
    question_quality: Score
    realism: Score
    tool_necessity: Score
    keeps_intent: bool | None = None
    same_language: bool | None = None


def task_id(server: str, question: str, origin: str) -> str:
    """Stable id of a task (same text, server and origin -> same id)."""
    return "task_" + sha256_hex({"server": server, "q": question, "origin": origin})[:16]


class TaskWriter:
    """Writes, augments and grades tasks; drops are counted in ``rejected`` by reason."""

    def __init__(
        self,
        asker: Asker,
        settings: TrajectorySettings,
        on_reject: RejectionSink = ignore_rejection,
    ) -> None:
        self.asker = asker
        self.settings = settings
        self.rejected: Counter[str] = Counter()
        self.on_reject = on_reject

    async def server_tasks(self, server: ToolServer) -> list[SynthTask]:
        """Tasks written from the server's description and tools alone."""
        count = self.settings.server_tasks_per_server
        if count == 0:
            return []
        payload = {
            "server": server.name,
            "description": server.description,
            "tools": tool_documents(server),
            "count": count,
        }
        try:
            reply = await self.asker.ask("server_tasks", SYSTEM_SERVER_TASKS, payload, TasksReply)
        except (Unparseable, LLMError) as exc:
            self._count_failure("server_tasks", exc, f"{server.name}: {count} server tasks")
            return []
        return [
            SynthTask(
                id=task_id(server.name, q, "server"),
                server=server.name,
                question=q.strip(),
                origin="server",
            )
            for q in reply.tasks[:count]
            if q.strip()
        ]

    async def augment(
        self, task: SynthTask, server: ToolServer, kind: AugmentKind
    ) -> SynthTask | None:
        """A rewritten task of ``kind``, or None when the LLM's reply was unusable."""
        tools = task.chain if task.chain else None
        payload = {
            "task": task.question,
            "instruction": AUGMENT_INSTRUCTIONS[kind],
            "tools": tool_documents(server, tools),
        }
        try:
            reply = await self.asker.ask(f"augment_{kind}", SYSTEM_AUGMENT, payload, AugmentReply)
        except (Unparseable, LLMError) as exc:
            self._count_failure(f"augment_{kind}", exc, f"{kind} rewrite of {task.question!r}")
            return None
        question = reply.task.strip()
        if not question or question == task.question:
            self._drop(
                "augment_unchanged",
                f"{kind} rewrite of {task.question!r}",
                "the rewrite is empty or the same task",
                reply.task,
            )
            return None
        origin = f"augment:{kind}"
        return SynthTask(
            id=task_id(server.name, question, origin),
            server=server.name,
            question=question,
            chain=task.chain,
            origin=origin,
            parent_id=task.id,
        )

    async def grade(
        self, task: SynthTask, server: ToolServer, original: str | None
    ) -> SynthTask | None:
        """The task with its scores when it passes every threshold, else None (counted)."""
        payload = {
            "task": task.question,
            "original": original,
            "tools": tool_documents(server, task.chain) if task.chain else tool_documents(server),
        }
        try:
            reply = await self.asker.ask(
                "task_quality", SYSTEM_TASK_QUALITY, payload, QualityReply, judge=True
            )
        except (Unparseable, LLMError) as exc:
            self._count_failure("task_quality", exc, task.question)
            return None
        s = self.settings
        checks = [
            (reply.question_quality >= s.min_question_quality, "task_low_quality"),
            (reply.realism >= s.min_realism, "task_low_realism"),
            (reply.tool_necessity >= s.min_tool_necessity, "task_low_necessity"),
        ]
        if original is not None:
            checks += [
                (reply.keeps_intent is True, "augment_changed_intent"),
                (reply.same_language is True, "augment_changed_language"),
            ]
        for passed, reason in checks:
            if not passed:
                grades = reply.model_dump(exclude_none=True)
                self._drop(reason, task.question, f"graded {grades}")
                return None
        scores = {
            "question_quality": float(reply.question_quality),
            "realism": float(reply.realism),
            "tool_necessity": float(reply.tool_necessity),
        }
        return task.model_copy(update={"scores": scores})

    def _count_failure(self, stage: str, exc: Exception, item: str) -> None:
        if isinstance(exc, LLMUnavailable):
            raise exc
        kind = "llm_malformed" if isinstance(exc, Unparseable) else "llm_error"
        excerpt = exc.reply if isinstance(exc, Unparseable) else None
        self._drop(f"{kind}:{stage}", item, f"{type(exc).__name__}: {exc}", excerpt)

    def _drop(self, reason: str, item: str, message: str, excerpt: str | None = None) -> None:
        self.rejected[reason] += 1
        self.on_reject("tasks", reason, item=item, message=message, excerpt=excerpt)


async def synthesize_tasks(
    toolset: Toolset,
    *,
    llm: ChatModel,
    settings: TrajectorySettings | None = None,
    progress: ProgressFn | None = None,
    on_reject: RejectionSink = ignore_rejection,
    usage: LLMUsage | None = None,
) -> TaskSynthesis:
    """The chain/task pipeline over every server of ``toolset``: LLM chain proposals and schema
    links -> graph -> walks -> chain checks -> chain-conditioned tasks, plus server-only tasks
    -> augmentation -> grading. Drops are counted by reason and told to ``on_reject``;
    ``LLMUnavailable`` ends it. ``usage`` (optional) counts LLM calls by stage.

    Stage progress: ``proposals`` counts the chain proposals asked for (done: kept), ``graph``
    the servers, ``chains`` the sampled chains (done: kept), ``tasks`` the task candidates
    (written, rewritten or asked for; done: passed grading). In every stage, done plus
    rejected never exceeds the total."""
    settings = settings or TrajectorySettings()
    asker = Asker(
        llm,
        temperature=settings.temperature,
        judge_temperature=settings.judge_temperature,
        max_tokens=settings.max_tokens,
        usage=usage,
    )
    checker = ChainChecker(asker, settings.coherence_votes, on_reject)
    writer = TaskWriter(asker, settings, on_reject)
    result = TaskSynthesis(toolset_id=toolset.id)
    rejected: Counter[str] = Counter()
    proposal_stage = StageProgress(stage="proposals")
    graph_stage = StageProgress(stage="graph", total=len(toolset.servers))
    chain_stage = StageProgress(stage="chains", total=0)
    task_stage = StageProgress(stage="tasks", total=0)
    for server in toolset.servers:
        asked = settings.proposals_per_server
        proposal_stage.total = (proposal_stage.total or 0) + asked
        proposals, dropped = await propose_chains(server, asker, asked, on_reject)
        rejected.update(dropped)
        proposal_stage.done += len(proposals)
        proposal_stage.rejected = dict(rejected)
        report(progress, proposal_stage)
        graph = build_graph(server, proposals)
        result.graphs.append(graph)
        graph_stage.done += 1
        report(progress, graph_stage)

        base: list[SynthTask] = []
        chains = sample_chains(
            graph,
            settings.walks_per_server,
            seed=settings.seed,
            min_length=settings.min_chain_length,
            max_length=settings.max_chain_length,
            acyclic=settings.acyclic,
        )
        result.chains_sampled += len(chains)
        chain_stage.total = (chain_stage.total or 0) + len(chains)
        report(progress, chain_stage)
        for chain in chains:
            query = await checker.check(chain, server)
            chain_stage.rejected = dict(checker.rejected)
            if query is not None:
                chain_stage.done += 1
                result.chains_kept.append(chain)
                base.append(
                    SynthTask(
                        id=task_id(server.name, query, "chain"),
                        server=server.name,
                        question=query,
                        chain=chain.tools,
                        origin="chain",
                    )
                )
            report(progress, chain_stage)
        dropped_before = sum(writer.rejected.values())
        base += await writer.server_tasks(server)

        candidates: list[tuple[SynthTask, str | None]] = [(t, None) for t in base]
        for task in base:
            for kind in settings.augmentations:
                augmented = await writer.augment(task, server, kind)
                if augmented is not None:
                    candidates.append((augmented, task.question))
        # A failed request or rewrite is one candidate lost: counted in the total too.
        lost = sum(writer.rejected.values()) - dropped_before
        task_stage.total = (task_stage.total or 0) + len(candidates) + lost
        task_stage.rejected = dict(writer.rejected)
        report(progress, task_stage)
        for task, original in candidates:
            graded = await writer.grade(task, server, original)
            if graded is not None:
                task_stage.done += 1
                result.tasks.append(graded)
            task_stage.rejected = dict(writer.rejected)
            report(progress, task_stage)
    rejected.update(checker.rejected)
    rejected.update(writer.rejected)
    result.rejected = dict(sorted(rejected.items()))
    return result
