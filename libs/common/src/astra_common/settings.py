"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` to ``ASTRA_<SERVICE>_``."""

    model_config = SettingsConfigDict(
        extra="forbid", use_attribute_docstrings=True, validate_default=True
    )

    host: str = "127.0.0.1"
    """Interface the HTTP server binds to."""

    port: int = 8080
    """TCP port the HTTP server listens on."""

    environment: Literal["development", "production"] = "development"
    """Deployment mode; production refuses to start without an API token."""

    api_token: SecretStr | None = None
    """Bearer token required on write endpoints (and MCP, where the service serves it)."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of the service and its HTTP server."""

    max_request_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest HTTP request body accepted, in bytes; a larger one is answered 413 as soon as
    that many bytes have arrived."""

    @model_validator(mode="after")
    def _production_needs_token(self) -> Self:
        if self.environment == "production" and not (
            self.api_token and self.api_token.get_secret_value()
        ):
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(f"{prefix}API_TOKEN must be set when environment is production")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {self.port}")
        return self


def settings_error_message(exc: Exception) -> str:
    """One readable line for a settings validation failure (for CLI start-up errors)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for error in errors():
            location = ".".join(str(part) for part in error.get("loc", ())) or "settings"
            parts.append(f"{location}: {error.get('msg', 'invalid')}")
        return "invalid configuration: " + "; ".join(parts)
    return f"invalid configuration: {exc}"
