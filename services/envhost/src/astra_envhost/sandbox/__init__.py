"""Sandboxed execution of synthesized (untrusted) tool code: one worker process per episode.

``SandboxBackend`` is the ``EpisodeBackend`` of envhost; ``check_sandbox_available`` is the
start-up check. See docs/sandbox.md for the isolation it provides and its limits.
"""

from astra_envhost.sandbox.backend import SandboxBackend
from astra_envhost.sandbox.check import SandboxUnavailableError, check_sandbox_available
from astra_envhost.sandbox.command import find_bwrap
from astra_envhost.sandbox.limits import SandboxLimits, SandboxMode

__all__ = [
    "SandboxBackend",
    "SandboxLimits",
    "SandboxMode",
    "SandboxUnavailableError",
    "check_sandbox_available",
    "find_bwrap",
]
