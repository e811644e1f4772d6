"""astra-synth service."""
