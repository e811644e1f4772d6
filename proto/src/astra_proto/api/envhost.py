"""The envhost service's REST contracts: request and answer bodies of its routes."""

from __future__ import annotations

from pydantic import BaseModel

CONTRACTS: dict[str, type[BaseModel]] = {}
"""Every contract of this module whose JSON Schema is published, by model name."""
