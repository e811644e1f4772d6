"""The astra CLI and the local runner that starts the whole stack on one machine."""

__version__ = "0.1.0"
