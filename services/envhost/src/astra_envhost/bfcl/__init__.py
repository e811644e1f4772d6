"""BFCL v3 multi-turn as an environment pack: specs, an in-process backend, BFCL's scoring.

- ``load_bfcl_environments`` / ``bfcl_environments``: one builtin ``EnvironmentSpec`` per
  entry of ``multi_turn_{base,miss_func,miss_param,long_context}``;
- ``BfclBackend``: the entry's executable classes, fresh per episode (an ``EpisodeBackend``);
- ``score_bfcl``: BFCL's ``multi_turn_checker`` on the calls an episode executed.

See docs/bfcl.md.
"""

from astra_envhost.bfcl.backend import BfclBackend, parse_ground_truth_call
from astra_envhost.bfcl.loader import (
    BACKEND_NAME,
    available_functions,
    bfcl_config,
    bfcl_environments,
    load_bfcl_environments,
    spec_entry_id,
    tools_for_turn,
    turn_text,
)
from astra_envhost.bfcl.scoring import BfclScore, score_bfcl
from astra_envhost.bfcl.upstream import CATEGORIES, bfcl_version

__all__ = [
    "BACKEND_NAME",
    "CATEGORIES",
    "BfclBackend",
    "BfclScore",
    "available_functions",
    "bfcl_config",
    "bfcl_environments",
    "bfcl_version",
    "load_bfcl_environments",
    "parse_ground_truth_call",
    "score_bfcl",
    "spec_entry_id",
    "tools_for_turn",
    "turn_text",
]
