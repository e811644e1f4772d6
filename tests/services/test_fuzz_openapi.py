"""Schema-driven fuzzing of every service's OpenAPI document (schemathesis + hypothesis).

What is fuzzed how: the four services run wired together over real HTTP (``fuzz_support``)
with real Redis, a real database (a SQLite file; synth and envhost, which keep one, also on
PostgreSQL), bubblewrap sandboxes and bearer tokens. For every
operation each service's ``/v1/openapi.json`` lists, schemathesis generates requests that fit
the schema (positive) and requests that break it (negative); each is sent with the token, and
every response must be below 500, at most ``MAX_RESPONSE_BYTES`` long, and conform to the
declared schema (status body, content type). Examples per operation are few and the run is
derandomized (same requests each time), so it stays within minutes on two cores; no operation
is skipped, and one that yields no request fails the test. Valid requests that would start
heavy work start it where it fails fast: synthesis jobs queue on Redis with no worker running,
rollout's policy server is a dead port, the trainer runs one training process at a time and
each run is stopped as soon as it is reported. A negative run may find nothing to break in an
operation (no inputs, or only free-form strings): that is the one case of no requests allowed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
import schemathesis
from fuzz_support import SERVICES, TOKEN, Stack, running_stack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from astra_common.db.migrate import upgrade_async

EXAMPLES_PER_OPERATION = 50
"""Generated requests per operation and generation mode."""

MAX_RESPONSE_BYTES = 1024 * 1024
"""No answer to a fuzzed request may be longer (error bodies must not copy large inputs)."""

REQUEST_TIMEOUT_S = 60.0

AUTH = {"Authorization": f"Bearer {TOKEN}"}
"""Sent with every request, in place of any credentials schemathesis generates."""

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow, pytest.mark.integration]


@contextmanager
def stack_on(database_url: str, redis_url: str, redis_db: int, data_dir: Path) -> Iterator[Stack]:
    """The four services with real dependencies on ``database_url`` (migrated here).

    They use a Redis database of their own (queued jobs, published trajectories), emptied
    afterwards, so no other test's worker or consumer sees what fuzzing left behind.
    """
    asyncio.run(upgrade_async(database_url))
    fuzz_redis_url = f"{redis_url.rsplit('/', 1)[0]}/{redis_db}"
    try:
        with running_stack(fuzz_redis_url, database_url, data_dir) as running:
            yield running
    finally:
        client = redis.Redis.from_url(fuzz_redis_url)
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def sqlite_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack on a SQLite file (as ``astra up`` runs it)."""
    data_dir = tmp_path_factory.mktemp("fuzz-sqlite")
    database_url = f"sqlite+aiosqlite:///{data_dir / 'astra.db'}"
    with stack_on(database_url, redis_url, 13, data_dir) as stack:
        yield stack


@pytest.fixture(scope="module")
def postgresql_stack(
    redis_url: str, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The stack on a fresh PostgreSQL database (as compose runs it), dropped afterwards."""
    name = f"astra_fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        with stack_on(f"{base}/{name}", redis_url, 12, tmp_path_factory.mktemp("fuzz-pg")) as stack:
            yield stack
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class FuzzReport:
    """What one service's fuzz run sent and what went wrong."""

    calls: dict[str, int] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, label: str, problem: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(f"{label}: {problem}")


def _describe(case: Any, response: requests.Response) -> str:
    body = response.text[:300].replace("\n", " ")
    query = f" query={case.query}" if case.query else ""
    return f"{response.status_code} for {case.method} {case.formatted_path}{query}: {body}"


def _stop_started_run(
    base_url: str, session: requests.Session, response: requests.Response
) -> None:
    """A trainer run that a valid request started is stopped at once (it would load a model)."""
    run_id = response.json().get("run_id")
    if run_id:
        session.post(f"{base_url}/v1/runs/{run_id}/stop", timeout=REQUEST_TIMEOUT_S)


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    report: FuzzReport,
) -> None:
    """Send ``EXAMPLES_PER_OPERATION`` generated requests of one kind and check each answer."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"
    report.calls.setdefault(label, 0)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        report.calls[label] += 1
        # The generated credentials are replaced by the real token: fuzz past the auth check.
        case.headers = {**(case.headers or {}), **AUTH}
        try:
            response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            report.add(label, f"no response: {type(exc).__name__}: {exc}")
            return
        report.statuses[response.status_code] += 1
        if operation.path.startswith("/v1/runs/") and response.status_code == 202:
            _stop_started_run(base_url, session, response)
        if response.status_code >= 500:
            report.add(label, _describe(case, response))
        if len(response.content) > MAX_RESPONSE_BYTES:
            report.add(label, f"{len(response.content)} byte answer: {_describe(case, response)}")
        try:
            case.validate_response(
                response, checks=[response_schema_conformance, content_type_conformance]
            )
        except (Exception, BaseExceptionGroup) as exc:  # a group naming every failed check
            first = " ".join(str(exc).split())[:300]
            report.add(label, f"non-conforming answer {_describe(case, response)} | {first}")

    try:
        send()
    except Unsatisfiable:
        # Nothing in the schema can be broken (no inputs, or free-form strings only).
        if mode is not GenerationMode.NEGATIVE:
            report.add(label, "no valid request could be generated")
    except Exception as exc:  # a strategy that cannot generate is a finding, not a skip
        report.add(label, f"fuzzing stopped: {type(exc).__name__}: {exc}")


# Rollout and the trainer keep no database: they are fuzzed once.
RUNS = [
    *(pytest.param(service, "sqlite", id=f"{service}-sqlite") for service in SERVICES),
    *(
        pytest.param(service, "postgresql", id=f"{service}-postgresql", marks=pytest.mark.postgres)
        for service in ("synth", "envhost")
    ),
]


@pytest.mark.parametrize(("service", "database"), RUNS)
def test_fuzzed_requests_get_no_server_errors(
    service: str, database: str, request: pytest.FixtureRequest
) -> None:
    stack: Stack = request.getfixturevalue(f"{database}_stack")
    base_url = stack.urls[service]
    session = requests.Session()
    session.headers.update(AUTH)
    document = session.get(f"{base_url}/v1/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
    schema = schemathesis.openapi.from_dict(document)
    report = FuzzReport()
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            report.add("schema", f"an operation could not be loaded: {result.err()}")
    declared = sum(
        1
        for path_item in document["paths"].values()
        for method in path_item
        if method in {"get", "put", "post", "delete", "patch"}
    )
    assert len(operations) == declared, report.problems or "not every operation was loaded"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, base_url, session, report)
    sent = sum(report.calls.values())
    print(f"{service} on {database}: {sent} requests, statuses {dict(report.statuses)}")
    unexercised = [label for label, count in report.calls.items() if count == 0]
    assert not report.problems, "\n".join(report.problems)
    assert len(report.calls) == 2 * declared
    # A negative strategy may find nothing to break in an operation without inputs.
    assert all(label.endswith("(negative)") for label in unexercised), unexercised
