"""The built-in domains: entity kinds, attributes and relations of five synthetic worlds.

One module per domain; a domain is data (see ``schema``), so adding one is adding a module.
"""

from astra_synth.procedural.domains.ecommerce import ECOMMERCE
from astra_synth.procedural.domains.finance import FINANCE
from astra_synth.procedural.domains.healthcare import HEALTHCARE
from astra_synth.procedural.domains.real_estate import REAL_ESTATE
from astra_synth.procedural.domains.travel import TRAVEL
from astra_synth.procedural.schema import Domain

DOMAINS: dict[str, Domain] = {
    d.name: d for d in (REAL_ESTATE, ECOMMERCE, HEALTHCARE, TRAVEL, FINANCE)
}
"""Every built-in domain by name."""

__all__ = ["DOMAINS", "ECOMMERCE", "FINANCE", "HEALTHCARE", "REAL_ESTATE", "TRAVEL"]
