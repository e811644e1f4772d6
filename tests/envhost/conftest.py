"""envhost fixtures (defined in envhost_support, shared with the benchmark-style tests)."""

from envhost_support import database_url, envhost_settings

__all__ = ["database_url", "envhost_settings"]
