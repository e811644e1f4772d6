"""The procedural environment source: multi-hop tool environments without an LLM.

A seeded knowledge graph per domain (``world``), walked into sub-question DAGs of the four
scenario types (``walks``, ``tasks``), packaged as tools whose code embeds the slice of the
world they need (``tools``), with held-out splits (``splits``) and verification
certificates (``certificate``). See docs/procedural.md.
"""

from astra_synth.procedural.certificate import (
    VERIFIER_VERSION,
    abuild_certificate,
    attach_certificate,
    averify_certificate,
    build_certificate,
    certificate_from_outcomes,
    certificate_mismatches,
    reference_calls,
    verify_certificate,
)
from astra_synth.procedural.domains import DOMAINS
from astra_synth.procedural.generate import generate_environments, generation_rate
from astra_synth.procedural.splits import (
    GENERATOR,
    SPLITS,
    composition_signature,
    entity_partition,
    is_heldout_composition,
)

__all__ = [
    "DOMAINS",
    "GENERATOR",
    "SPLITS",
    "VERIFIER_VERSION",
    "abuild_certificate",
    "attach_certificate",
    "averify_certificate",
    "build_certificate",
    "certificate_from_outcomes",
    "certificate_mismatches",
    "composition_signature",
    "entity_partition",
    "generate_environments",
    "generation_rate",
    "is_heldout_composition",
    "reference_calls",
    "verify_certificate",
]
