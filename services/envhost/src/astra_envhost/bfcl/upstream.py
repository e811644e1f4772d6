"""The one place that touches ``bfcl_eval``: its data files, backend classes and checker.

``bfcl_eval`` ships no type information, so everything it provides is reached here through
``importlib`` and handed on with types. Its multi-turn backends keep a little state at module
level (mpmath's and decimal's precision, the long-context fixtures that TravelAPI shares by
reference); ``upstream_guard`` fences that state so that episodes and checks cannot leak into
each other.
"""

from __future__ import annotations

import copy
import decimal
import functools
import importlib
import importlib.metadata
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

DISTRIBUTION = "bfcl-eval"
CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
"""The BFCL v3 multi-turn categories (200 entries each), in BFCL's order."""

_CONSTANTS = "bfcl_eval.constants"
_FUNC_SOURCE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
_CHECKER = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker"
_UTILS = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils"

UPSTREAM_LOCK = threading.RLock()
"""Held around every use of the upstream classes: their module-level state is shared."""


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


@functools.cache
def bfcl_version() -> str:
    """The installed ``bfcl-eval`` version (recorded in every spec and score)."""
    return importlib.metadata.version(DISTRIBUTION)


@functools.cache
def _data_dir() -> Path:
    prompt_path = _module(f"{_CONSTANTS}.eval_config").PROMPT_PATH
    return Path(prompt_path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_entries(category: str) -> list[dict[str, Any]]:
    """The raw test entries of one category, as stored upstream (one fresh copy per call)."""
    return _read_jsonl(_data_dir() / f"{_version_prefix()}_{category}.json")


def read_ground_truth(category: str) -> dict[str, list[list[str]]]:
    """Entry id → ground-truth call strings per turn."""
    rows = _read_jsonl(_data_dir() / "possible_answer" / f"{_version_prefix()}_{category}.json")
    return {row["id"]: row["ground_truth"] for row in rows}


def _version_prefix() -> str:
    return str(_module(f"{_CONSTANTS}.category_mapping").VERSION_PREFIX)


@functools.cache
def _function_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    mapping = _module(f"{_CONSTANTS}.executable_backend_config").MULTI_TURN_FUNC_DOC_FILE_MAPPING
    return tuple(_read_jsonl(_data_dir() / "multi_turn_func_doc" / mapping[class_name]))


def function_docs(class_name: str) -> list[dict[str, Any]]:
    """BFCL's function documents of one backend class, in file order (deep copies)."""
    return copy.deepcopy(list(_function_docs(class_name)))


def missed_function_prompt() -> str:
    """The user message BFCL sends on the turn that brings withheld functions back (FC mode)."""
    prompts = _module(f"{_CONSTANTS}.default_prompts")
    return str(prompts.DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC)


def is_stateless(class_name: str) -> bool:
    """Whether BFCL skips ``_load_scenario`` for this class (MathAPI)."""
    stateless = _module(f"{_CONSTANTS}.executable_backend_config").STATELESS_CLASSES
    return class_name in stateless


def backend_class(class_name: str) -> type[Any]:
    """The executable backend class named ``class_name`` (e.g. ``GorillaFileSystem``)."""
    paths = _module(f"{_CONSTANTS}.executable_backend_config").CLASS_FILE_PATH_MAPPING
    if class_name not in paths or not str(paths[class_name]).startswith(_FUNC_SOURCE):
        raise ValueError(f"unknown BFCL backend class {class_name!r}")
    cls = getattr(_module(paths[class_name]), class_name)
    if not isinstance(cls, type):
        raise TypeError(f"{paths[class_name]}.{class_name} is not a class")
    return cls


def multi_turn_checker() -> Callable[..., dict[str, Any]]:
    """BFCL's ``multi_turn_checker(decoded_results, ground_truth, entry, category, model)``."""
    checker: Callable[..., dict[str, Any]] = _module(_CHECKER).multi_turn_checker
    return checker


def drop_cached_instances(prefix: str) -> int:
    """Delete the backend instances the checker cached in module globals under ``prefix``."""
    cache = vars(_module(_UTILS))
    stale = [key for key in cache if key.startswith(prefix)]
    for key in stale:
        del cache[key]
    return len(stale)


@contextmanager
def upstream_guard() -> Iterator[None]:
    """Run upstream code under the lock, restoring the module-level state it may change.

    - mpmath's working precision (``MathAPI.logarithm`` sets ``mpmath.mp.dps``);
    - the thread's decimal context (``MathAPI.square_root`` sets ``getcontext().prec``);
    - the long-context fixtures: ``TravelAPI`` puts their dicts into its state by reference
      and ``VehicleControlAPI`` writes into one, so a booking in one episode would show in
      every later one.
    """
    mpmath = _module("mpmath")
    long_context = _module(f"{_FUNC_SOURCE}.long_context")
    with UPSTREAM_LOCK, decimal.localcontext():
        saved_dps = mpmath.mp.dps
        fixtures = {
            name: copy.deepcopy(value)
            for name, value in vars(long_context).items()
            if name.isupper() and isinstance(value, dict)
        }
        try:
            yield
        finally:
            mpmath.mp.dps = saved_dps
            for name, saved in fixtures.items():
                current = getattr(long_context, name)
                current.clear()
                current.update(saved)
