"""Environment specs: a task, its sub-question DAG, the tools that answer it, and proof it works."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from astra_proto.base import ContractModel, sha256_hex
from astra_proto.tools import ReferenceCall, SyntheticTool, ToolSpec

ENV_ID_PREFIX = "env_"

ENV_ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
"""An environment id as a request names one: 1-64 letters, digits, '_', '.', '-', not starting
with a dot, so it is always one URL path segment."""

EnvironmentId = Annotated[str, Field(pattern=ENV_ID_PATTERN)]
"""An environment id in a request (``ENV_ID_PATTERN``)."""


class ScenarioType(StrEnum):
    """The topology of an instance's sub-questions (docs/method.md B1)."""

    SINGLE_HOP = "single_hop"
    PARALLEL_SINGLE_HOP = "parallel_single_hop"
    MULTI_HOP = "multi_hop"
    PARALLEL_MULTI_HOP = "parallel_multi_hop"


class SubQuestion(ContractModel):
    """One node of the sub-question DAG."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    question: str = Field(min_length=1)
    answer: str = Field(description="The sub-answer, compared after normalisation.")
    depends_on: list[str] = Field(default_factory=list, description="Ids whose answers it needs.")
    tool_name: str | None = Field(
        default=None, description="The tool that answers it; None only for a no-tool leaf."
    )


class BuiltinBackend(ContractModel):
    """A trusted, in-process environment kind (e.g. an imported benchmark's executable backend)."""

    name: str = Field(description="Registered backend kind, e.g. 'bfcl'.")
    config: dict[str, Any] = Field(default_factory=dict, description="Backend-specific state.")


class Provenance(ContractModel):
    """Where a spec came from. Not part of the content hash."""

    source: str = Field(description="'procedural', 'qa', 'knowledge', 'bfcl', ...")
    job_id: str | None = None
    seed: int | None = None
    generator: str | None = Field(default=None, description="Generator or LLM model name.")
    created_at: datetime | None = None


class ReplayRecord(ContractModel):
    """One reference call replayed on the packaged environment."""

    call: ReferenceCall
    output: Any = Field(description="The tool's structured output.")
    output_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    answer_found: bool = Field(description="Whether the expected sub-answer matched the output.")


class VerificationCertificate(ContractModel):
    """Reference calls replayed on the final environment, reproducible from the spec alone."""

    env_id: str
    replays: list[ReplayRecord]
    passed: bool
    verifier_version: str
    verified_at: datetime


class EnvironmentSpec(ContractModel):
    """An isolated, deterministic, rule-verifiable environment.

    ``id`` is content-addressed: ``env_`` + the first 32 hex digits of the SHA-256 of the
    canonical JSON of every field except ``id``, ``provenance`` and ``certificate``, fields at
    their default value left out (at every depth). Specs are immutable once registered; a
    changed spec is a new environment.
    """

    id: str = Field(default="", description="Content hash; computed when left empty.")
    kind: Literal["synthetic", "builtin"] = "synthetic"
    task: str = Field(min_length=1, description="The user's question q0 (first user turn).")
    followup_turns: list[str] = Field(
        default_factory=list, description="Further user turns, for multi-turn tasks."
    )
    answer: str = Field(default="", description="The reference final answer a0.")
    domain: str = Field(min_length=1)
    scenario_type: ScenarioType | None = None
    split: str = Field(default="train", description="'train' or a held-out split name.")
    sub_questions: list[SubQuestion] = Field(default_factory=list)
    tools: list[SyntheticTool] = Field(default_factory=list)
    builtin: BuiltinBackend | None = None
    builtin_tools: list[ToolSpec] = Field(
        default_factory=list, description="Tool documents of a builtin backend."
    )
    provenance: Provenance | None = None
    certificate: VerificationCertificate | None = None

    @model_validator(mode="after")
    def _check(self) -> EnvironmentSpec:
        self._check_kind()
        self._check_dag()
        expected = self.content_id()
        if not self.id:
            self.id = expected
        elif self.id != expected:
            raise ValueError(f"id {self.id!r} does not match the spec's content hash {expected!r}")
        if self.certificate is not None and self.certificate.env_id != self.id:
            raise ValueError("certificate.env_id does not match the spec id")
        return self

    def _check_kind(self) -> None:
        if self.kind == "builtin":
            if self.builtin is None or self.tools:
                raise ValueError("builtin environments need 'builtin' and no synthetic tools")
        elif self.builtin is not None or self.builtin_tools:
            raise ValueError("synthetic environments carry no builtin backend")
        names = self.tool_names()
        if len(names) != len(set(names)):
            raise ValueError("tool names must be unique within an environment")

    def _check_dag(self) -> None:
        ids = [q.id for q in self.sub_questions]
        if len(ids) != len(set(ids)):
            raise ValueError("sub-question ids must be unique")
        known, tools = set(ids), set(self.tool_names())
        for question in self.sub_questions:
            missing = [dep for dep in question.depends_on if dep not in known]
            if missing:
                raise ValueError(f"sub-question {question.id!r} depends on unknown {missing}")
            if question.tool_name is not None and question.tool_name not in tools:
                raise ValueError(
                    f"sub-question {question.id!r} names unknown tool {question.tool_name!r}"
                )
        self.topological_order()  # raises on a cycle
        dependents = {dep for q in self.sub_questions for dep in q.depends_on}
        for question in self.sub_questions:
            if question.tool_name is None and question.id in dependents:
                raise ValueError(
                    f"sub-question {question.id!r} needs no tool, so it must be a leaf"
                )

    def tool_names(self) -> list[str]:
        """Names of every tool the environment offers."""
        return [t.spec.name for t in self.tools] + [t.name for t in self.builtin_tools]

    def tool_specs(self) -> list[ToolSpec]:
        """The tool documents the environment offers, synthetic or builtin."""
        return [t.spec for t in self.tools] + list(self.builtin_tools)

    def topological_order(self) -> list[SubQuestion]:
        """Sub-questions with every dependency before its dependents; raises on a cycle.

        Depth-first in list order, with an explicit stack: an inbound spec may chain thousands
        of hops, and a ``RecursionError`` would escape validation as a crash.
        """
        by_id = {q.id: q for q in self.sub_questions}
        order: list[SubQuestion] = []
        done: set[str] = set()
        for root in self.sub_questions:
            if root.id in done:
                continue
            path, on_path = [root.id], {root.id}
            pending = [iter(root.depends_on)]
            while pending:
                for dep in pending[-1]:
                    if dep in done:
                        continue
                    if dep in on_path:
                        cycle = [*path[path.index(dep) :], dep]
                        raise ValueError(f"sub-question dependencies form a cycle: {cycle}")
                    path.append(dep)
                    on_path.add(dep)
                    pending.append(iter(by_id[dep].depends_on))
                    break
                else:  # every dependency of path[-1] is done
                    node_id = path.pop()
                    on_path.discard(node_id)
                    pending.pop()
                    done.add(node_id)
                    order.append(by_id[node_id])
        return order

    @property
    def hops(self) -> int:
        """Length of the longest dependency chain (1 for independent sub-questions)."""
        depth: dict[str, int] = {}
        for question in self.topological_order():
            depth[question.id] = 1 + max((depth[d] for d in question.depends_on), default=0)
        return max(depth.values(), default=0)

    def content_id(self) -> str:
        """The content-addressed id of this spec."""
        # Defaults are left out so that adding a field with a default to a contract model
        # keeps the ids (and so the validity) of every spec already stored.
        content = self.model_dump(
            mode="json", exclude={"id", "provenance", "certificate"}, exclude_defaults=True
        )
        return ENV_ID_PREFIX + sha256_hex(content)[:32]
