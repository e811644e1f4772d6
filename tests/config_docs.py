"""Generate (``write``) or verify (``check``) docs/configuration.md from the settings classes
of every service (a development tool: the CLI imports no service package).

python tests/config_docs.py write docs/configuration.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic_settings import BaseSettings

from astra_envhost.gateway import GatewaySettings
from astra_envhost.settings import EnvhostSettings
from astra_rollout.settings import RolloutSettings
from astra_synth.settings import SynthSettings
from astra_trainer.settings import TrainerSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "synth (API and Celery workers)": SynthSettings,
    "envhost": EnvhostSettings,
    "envhost gateway (astra-envhost-gateway)": GatewaySettings,
    "rollout": RolloutSettings,
    "trainer": TrainerSettings,
}

HEADER = """# Configuration

Every service reads its settings from environment variables with its own prefix
(`ASTRA_SYNTH_`, `ASTRA_ENVHOST_`, `ASTRA_ROLLOUT_`, `ASTRA_TRAINER_`; the envhost gateway
`ASTRA_GATEWAY_`). Invalid values stop
the service at start-up with one line naming the variable. In `production`, a service
refuses to start without an API token.

This page is generated from the settings classes (`make docs-config`); a test fails when
it is out of date.

The local runner (`astra up`) sets the URLs, ports and paths below for you; `REDIS_URL`
makes it use an existing Redis instead of starting one, and `ASTRA_HOME` moves its state
directory (default `.astra/`). The migration tool `astra-db` reads `ASTRA_DATABASE_URL`.
"""


def _default(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—" if value is None else f"`{value!r}`" if value == [] else "`''`"
    return f"`{value}`"


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{arg}`" for arg in args)
    if origin in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if annotation is type(None):
        return "unset"
    return str(getattr(annotation, "__name__", annotation))


def render() -> str:
    """The whole page."""
    parts = [HEADER]
    for title, settings_type in SETTINGS.items():
        prefix = settings_type.model_config.get("env_prefix", "")
        parts.append(
            f"\n## {title}\n\n| variable | type | default | meaning |\n|---|---|---|---|\n"
        )
        for name, field in settings_type.model_fields.items():
            annotation = _type_name(field.annotation)
            description = " ".join((field.description or "").split()).replace("|", "\\|")
            default = field.get_default(call_default_factory=True)
            parts.append(
                f"| `{prefix}{name.upper()}` | {annotation} | {_default(default)} | "
                f"{description} |\n"
            )
    return "".join(parts)


def undocumented_fields() -> list[str]:
    """Settings fields without a docstring."""
    return [
        f"{settings_type.__name__}.{name}"
        for settings_type in SETTINGS.values()
        for name, field in settings_type.model_fields.items()
        if not field.description
    ]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``write PATH`` regenerates the page; ``check PATH`` exits 1 when it is stale."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("write", "check"):
        print("usage: python tests/config_docs.py {write|check} PATH", file=sys.stderr)
        return 2
    path = Path(args[1])
    if args[0] == "write":
        path.write_text(render())
        print(f"wrote {path}")
        return 0
    if not path.is_file() or path.read_text() != render():
        print(f"{path} is out of date; run `make docs-config`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
