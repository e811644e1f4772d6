"""astra-envhost service."""
