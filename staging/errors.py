"""The root of every error the staging stand-ins and worlds raise: `except StagingError` catches any of them."""

from __future__ import annotations


class StagingError(Exception):
    """An error of the staging environment (the throwaway PostgreSQL, the stand-ins, their contracts)."""
