"""Verification certificates: every reference call replayed on the packaged environment.

The caller supplies ``execute(tool_name, arguments)``, which runs one call on the environment
as it will be served (the synth worker calls envhost; tests use envhost's sandbox directly).
A call that raises is recorded as a failed replay (output ``{"error": ...}``): a verifier
that errors rejects, it never passes by default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from astra_proto import EnvironmentSpec, ReferenceCall, ReplayRecord, VerificationCertificate
from astra_proto.base import sha256_hex
from astra_synth.procedural.answers import holds_answer

VERIFIER_VERSION = "astra-procedural-certificate/1"

Execute = Callable[[str, dict[str, Any]], Any]
AsyncExecute = Callable[[str, dict[str, Any]], Awaitable[Any]]


def reference_calls(spec: EnvironmentSpec) -> list[ReferenceCall]:
    """Every reference call of the spec, tool by tool, in order."""
    return [call for tool in spec.tools for call in tool.reference_calls]


def build_certificate(
    spec: EnvironmentSpec, execute: Execute, *, verified_at: datetime | None = None
) -> VerificationCertificate:
    """Replay every reference call through ``execute``; passed when each output holds its
    expected answer (and there was at least one call to replay)."""
    records = []
    for call in reference_calls(spec):
        try:
            output = execute(call.tool_name, dict(call.arguments))
        except Exception as exc:  # the environment failed: recorded, and the replay fails
            records.append(_failed(call, exc))
        else:
            records.append(replay_record(call, output))
    return _certificate(spec, records, verified_at)


async def abuild_certificate(
    spec: EnvironmentSpec, execute: AsyncExecute, *, verified_at: datetime | None = None
) -> VerificationCertificate:
    """``build_certificate`` with an async ``execute``."""
    records = []
    for call in reference_calls(spec):
        try:
            output = await execute(call.tool_name, dict(call.arguments))
        except Exception as exc:
            records.append(_failed(call, exc))
        else:
            records.append(replay_record(call, output))
    return _certificate(spec, records, verified_at)


def certificate_from_outcomes(
    spec: EnvironmentSpec,
    outcomes: Sequence[tuple[Any, str | None]],
    *,
    verified_at: datetime | None = None,
) -> VerificationCertificate:
    """The certificate of a replay that already ran: ``outcomes`` holds ``(output, error)``
    for each of ``reference_calls(spec)``, in order (a batch run through envhost)."""
    calls = reference_calls(spec)
    if len(outcomes) != len(calls):
        raise ValueError(f"{len(outcomes)} outcomes for {len(calls)} reference calls")
    records = [
        _failed(call, RuntimeError(error)) if error is not None else replay_record(call, output)
        for call, (output, error) in zip(calls, outcomes, strict=True)
    ]
    return _certificate(spec, records, verified_at)


def replay_record(call: ReferenceCall, output: Any) -> ReplayRecord:
    """The record of one replayed call: its output, the output's hash, whether it holds the
    expected answer (a call with no expected answer only has to run)."""
    found = call.expected_answer is None or holds_answer(output, call.expected_answer)
    return ReplayRecord(
        call=call, output=output, output_sha256=sha256_hex(output), answer_found=found
    )


def verify_certificate(spec: EnvironmentSpec, execute: Execute) -> list[str]:
    """Replay the spec's reference calls again and compare with its certificate; returns the
    mismatches (empty: the certificate holds)."""
    if spec.certificate is None:
        return ["the spec carries no certificate"]
    return _compare(spec, build_certificate(spec, execute))


async def averify_certificate(spec: EnvironmentSpec, execute: AsyncExecute) -> list[str]:
    """``verify_certificate`` with an async ``execute``."""
    if spec.certificate is None:
        return ["the spec carries no certificate"]
    return _compare(spec, await abuild_certificate(spec, execute))


def certificate_mismatches(spec: EnvironmentSpec, fresh: VerificationCertificate) -> list[str]:
    """How a fresh replay (``certificate_from_outcomes``) differs from the spec's certificate;
    empty when the certificate holds."""
    if spec.certificate is None:
        return ["the spec carries no certificate"]
    return _compare(spec, fresh)


def attach_certificate(
    spec: EnvironmentSpec, certificate: VerificationCertificate
) -> EnvironmentSpec:
    """The spec with its certificate (same id: the certificate is not part of the hash)."""
    data = spec.model_dump(mode="json", exclude={"certificate"})
    return EnvironmentSpec.model_validate({**data, "certificate": certificate.model_dump()})


def _failed(call: ReferenceCall, exc: Exception) -> ReplayRecord:
    output = {"error": f"{type(exc).__name__}: {exc}"}
    return ReplayRecord(
        call=call, output=output, output_sha256=sha256_hex(output), answer_found=False
    )


def _certificate(
    spec: EnvironmentSpec, records: list[ReplayRecord], verified_at: datetime | None
) -> VerificationCertificate:
    return VerificationCertificate(
        env_id=spec.id,
        replays=records,
        passed=bool(records) and all(r.answer_found for r in records),
        verifier_version=VERIFIER_VERSION,
        verified_at=verified_at or datetime.now(UTC),
    )


def _compare(spec: EnvironmentSpec, fresh: VerificationCertificate) -> list[str]:
    stored = spec.certificate
    assert stored is not None
    problems = []
    if stored.env_id != spec.id:
        problems.append(f"the certificate is for {stored.env_id}, not {spec.id}")
    if [r.call for r in stored.replays] != [r.call for r in fresh.replays]:
        problems.append("the certificate's calls are not the spec's reference calls")
    for index, (old, new) in enumerate(zip(stored.replays, fresh.replays, strict=False)):
        where = f"call {index} ({new.call.tool_name}, {new.call.sub_question_id})"
        if old.output_sha256 != sha256_hex(old.output):
            problems.append(f"{where}: the recorded output does not match its recorded hash")
        if old.output_sha256 != new.output_sha256:
            problems.append(
                f"{where}: output hash {new.output_sha256[:12]} differs from the "
                f"certificate's {old.output_sha256[:12]}"
            )
        if not new.answer_found:
            problems.append(f"{where}: the output no longer holds {new.call.expected_answer!r}")
        if old.answer_found != new.answer_found:
            problems.append(f"{where}: the certificate says answer_found={old.answer_found}")
    if stored.passed != fresh.passed:
        problems.append(f"the certificate says passed={stored.passed}, the replay {fresh.passed}")
    return problems
