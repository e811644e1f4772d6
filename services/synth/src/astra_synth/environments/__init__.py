"""The sources of environment-synthesis jobs: each adapts one generator (``procedural``, the
LLM pipeline, BFCL through envhost) to the ``EnvironmentSource`` protocol of ``source``."""
