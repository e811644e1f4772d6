"""astra-rollout service."""
