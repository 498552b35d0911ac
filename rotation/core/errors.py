"""The root of every error the rotation library raises: `except RotationError` catches any of them, and only them.

Each error keeps the built-in base it had (a ValueError for bad input, a RuntimeError for a failed action, ...), so
callers that catch those still work. `rotation.core.signals.Interrupted` is no error (a signal, a KeyboardInterrupt)."""

from __future__ import annotations


class RotationError(Exception):
    """An error of the rotation library (never carries a secret in its message)."""
