"""Scoring a BFCL episode with BFCL's own ``multi_turn_checker``."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from astra_envhost.bfcl import upstream
from astra_envhost.bfcl.calls import format_call, is_identifier, json_safe

MAX_DETAIL_CHARS = 2_000
"""Strings in ``BfclScore.details`` are cut to this length (instance states can be huge)."""


@dataclass(frozen=True)
class BfclScore:
    """BFCL's verdict on one episode: ``valid`` is BFCL's pass/fail (the accuracy unit)."""

    valid: bool
    error_type: str | None = None
    error_message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def score_bfcl(
    config: Mapping[str, Any], calls_by_turn: Sequence[Sequence[tuple[str, Mapping[str, Any]]]]
) -> BfclScore:
    """Check an episode's executed calls, turn by turn, with BFCL's ``multi_turn_checker``.

    ``calls_by_turn[k]`` holds the calls made on user turn ``k`` as ``(name, arguments)``;
    they are written as BFCL's decoders write them (``cd(folder='x')``) and the checker
    replays them and the ground truth on fresh instances, comparing states and outputs after
    every turn that has a ground truth. As in BFCL, fewer turns than the entry has means
    ``multi_turn:force_terminated``. Calls of names the entry does not offer are left out
    (BFCL would ``eval`` them). Never raises for bad model output: the reason is reported.

    Thread-safe: the checker runs under ``upstream.UPSTREAM_LOCK`` (one check at a time per
    process), with a fresh model name; its cached instances are deleted afterwards.
    """
    try:
        decoded = _decode(config, calls_by_turn)
    except (TypeError, ValueError) as exc:
        return BfclScore(False, "astra:bad_calls", str(exc))
    ground_truth = config["ground_truth"]
    if len(decoded) != len(ground_truth):
        return BfclScore(
            False,
            "multi_turn:force_terminated",
            f"the episode played {len(decoded)} of {len(ground_truth)} turns",
        )
    entry = {
        "id": config["entry_id"],
        "initial_config": copy.deepcopy(config["initial_config"]),
        "involved_classes": list(config["involved_classes"]),
    }
    model_name = f"astra_bfcl_{uuid.uuid4().hex}"
    try:
        with upstream.upstream_guard():
            try:
                result = upstream.multi_turn_checker()(
                    decoded, copy.deepcopy(ground_truth), entry, config["category"], model_name
                )
            finally:
                upstream.drop_cached_instances(model_name + "_")
    except Exception as exc:  # the checker asserts and indexes; a bad episode must not crash
        return BfclScore(False, "astra:checker_error", f"{type(exc).__name__}: {exc}")
    if result.get("valid"):
        return BfclScore(True)
    # BFCL nests most of its evidence under "details"; the state checker adds more beside it.
    details = dict(result.get("details") or {})
    details.update(
        (key, value) for key, value in result.items() if key not in _SUMMARY_KEYS | {"details"}
    )
    try:
        safe_details = _trimmed(json_safe_details(details))
    except ValueError as exc:
        safe_details = {"unprintable": str(exc)}
    return BfclScore(
        False,
        str(result.get("error_type", "multi_turn:unknown")),
        str(result.get("error_message", "")),
        safe_details,
    )


_SUMMARY_KEYS = {"valid", "error_type", "error_message"}


def _decode(
    config: Mapping[str, Any], calls_by_turn: Sequence[Sequence[tuple[str, Mapping[str, Any]]]]
) -> list[list[list[str]]]:
    """Our calls as BFCL's decoded model results: turns → steps → call strings.

    A turn's calls form one step (BFCL concatenates a turn's steps before comparing, so the
    split into steps does not matter); a turn with no calls has no step, as BFCL records it.
    """
    offered = set(config["functions"]) | {
        name for names in config.get("missed_function", {}).values() for name in names
    }
    decoded: list[list[list[str]]] = []
    for turn_calls in calls_by_turn:
        step = [
            format_call(name, arguments)
            for name, arguments in turn_calls
            if is_identifier(name) and name in offered
        ]
        decoded.append([step] if step else [])
    return decoded


def json_safe_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Checker details (instance states hold BFCL objects) as JSON data."""
    safe = json_safe(details)
    return safe if isinstance(safe, dict) else {"details": safe}


def _trimmed(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_DETAIL_CHARS else value[:MAX_DETAIL_CHARS] + "…"
    if isinstance(value, dict):
        return {key: _trimmed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trimmed(item) for item in value]
    return value
