"""The astra CLI and local runner."""
