"""``BfclBackend``: one BFCL multi-turn episode on fresh, private instances of its classes."""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping
from typing import Any

from astra_envhost.backends import ToolExecutionError
from astra_envhost.bfcl import upstream
from astra_envhost.bfcl.calls import is_identifier, json_safe, parse_call
from astra_envhost.bfcl.loader import available_functions
from astra_envhost.bfcl.scoring import BfclScore, score_bfcl

MAX_PRECISION = 1_000
"""Largest ``precision`` MathAPI may be asked for: mpmath and decimal take time without bound."""

MAX_POWER_DIGITS = 4_000
"""Largest integer ``MathAPI.power`` result (in decimal digits) that is computed at all."""


class BfclBackend:
    """The executable BFCL backends of one entry, isolated from every other episode.

    The involved classes are instantiated fresh and loaded with a deep copy of the entry's
    initial config (BFCL's long-context mode for that category); the loaded instances are then
    deep-copied again, so that nothing they hold is shared with module-level fixtures.
    Calls go straight to the instance methods, never through BFCL's ``eval``-based helpers
    or their module-global instance cache.

    Turns: the episode starts on turn 0; ``begin_turn(k)`` moves it to user turn ``k``.
    Only the tools offered on the current turn can be called (withheld functions come back
    on their turn, as in BFCL's prompts); ``enforce_turn_tools=False`` lets any function of
    the entry run on any turn, as BFCL's executor does (it runs whatever the model writes).
    Every call that reached a method is recorded, failed ones included, so that ``score()``
    replays exactly what the episode executed.
    """

    def __init__(self, config: Mapping[str, Any], *, enforce_turn_tools: bool = True) -> None:
        self.config = config
        self.enforce_turn_tools = enforce_turn_tools
        self.entry_id = str(config["entry_id"])
        self._turn = 0
        self._calls: list[list[tuple[str, dict[str, Any]]]] = [[]]
        self._methods: dict[str, Any] = {}
        self._closed = False
        with upstream.upstream_guard():
            for class_name in config["involved_classes"]:
                instance = upstream.backend_class(class_name)()
                if not upstream.is_stateless(class_name):
                    scenario = copy.deepcopy(config["initial_config"].get(class_name, {}))
                    instance._load_scenario(scenario, long_context=bool(config["long_context"]))
                self._bind(copy.deepcopy(instance))
        self._all_functions = available_functions(config, len(config["turns"]) - 1)
        missing = set(self._all_functions) - self._methods.keys()
        if missing:
            raise ValueError(f"BFCL entry {self.entry_id}: no method for {sorted(missing)}")

    def _bind(self, instance: Any) -> None:
        for name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
            if not name.startswith("_"):
                self._methods[name] = method

    @property
    def turn(self) -> int:
        """The user turn being played (0-based)."""
        return self._turn

    def begin_turn(self, turn: int) -> None:
        """Move to user turn ``turn``; turns only go forward, one or more at a time."""
        n_turns = len(self.config["turns"])
        if not self._turn <= turn < n_turns:
            raise ValueError(f"cannot go from turn {self._turn} to turn {turn} of {n_turns}")
        while self._turn < turn:
            self._turn += 1
            self._calls.append([])

    def tool_names(self) -> list[str]:
        """The tools offered on the current turn."""
        return available_functions(self.config, self._turn)

    @property
    def calls_by_turn(self) -> list[list[tuple[str, dict[str, Any]]]]:
        """The executed calls of every turn begun so far (copies)."""
        return copy.deepcopy(self._calls)

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Run one call on this episode's instances; its output as JSON data."""
        if self._closed:
            raise ToolExecutionError("the episode is closed")
        if tool_name not in self._all_functions:
            raise ToolExecutionError(f"unknown tool {tool_name!r}")
        if self.enforce_turn_tools and tool_name not in self.tool_names():
            raise ToolExecutionError(f"tool {tool_name!r} is not available on this turn")
        if not isinstance(arguments, dict):
            raise ToolExecutionError(f"arguments of {tool_name} must be an object")
        odd = [key for key in arguments if not isinstance(key, str) or not is_identifier(key)]
        if odd:  # no Python parameter has such a name; refused so it is never replayed
            raise ToolExecutionError(f"{tool_name} has no parameters named {odd}")
        _check_limits(tool_name, arguments)
        recorded = copy.deepcopy(arguments)
        method = self._methods[tool_name]
        with upstream.upstream_guard():
            self._calls[self._turn].append((tool_name, recorded))
            try:
                output = method(**copy.deepcopy(arguments))
            except TypeError as exc:
                raise ToolExecutionError(f"bad arguments for {tool_name}: {exc}") from exc
            except Exception as exc:
                raise ToolExecutionError(
                    f"{tool_name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                # Inside the guard: mpmath numbers print in the precision they were made at.
                return json_safe(output)
            except ValueError as exc:
                raise ToolExecutionError(f"{tool_name} returned an unusable result: {exc}") from exc

    def score(self) -> BfclScore:
        """BFCL's verdict on the calls executed so far (invalid unless every turn was begun)."""
        return score_bfcl(self.config, self._calls)

    async def close(self) -> None:
        """Drop the instances. Idempotent."""
        self._closed = True
        self._methods.clear()


def _check_limits(tool_name: str, arguments: Mapping[str, Any]) -> None:
    """Refuse the few MathAPI inputs that would stall the process (and the checker's replay).

    Refused calls are not recorded, so scoring never replays them either.
    """
    precision = arguments.get("precision")
    if (
        tool_name in {"logarithm", "square_root"}
        and isinstance(precision, int | float)
        and precision > MAX_PRECISION
    ):
        raise ToolExecutionError(f"precision must be at most {MAX_PRECISION}")
    if tool_name == "power":
        base, exponent = arguments.get("base"), arguments.get("exponent")
        if (
            isinstance(base, int)
            and isinstance(exponent, int)
            and abs(base) > 1
            and exponent * math.log10(abs(base)) > MAX_POWER_DIGITS
        ):
            raise ToolExecutionError(f"the result would have more than {MAX_POWER_DIGITS} digits")


def parse_ground_truth_call(call: str, involved_classes: list[str]) -> tuple[str, dict[str, Any]]:
    """A ground-truth call string as ``(name, keyword arguments)``, positional ones named
    after the backend method's signature. Never evaluates code."""

    def signature_of(name: str) -> inspect.Signature:
        for class_name in involved_classes:
            method = getattr(upstream.backend_class(class_name), name, None)
            if method is not None and not name.startswith("_"):
                return inspect.signature(method)
        raise ValueError(f"no BFCL function named {name!r} in {involved_classes}")

    return parse_call(call, signature_of)
