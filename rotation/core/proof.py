"""How procedures prove what they did: the evidence they record and the checks that fail.

Procedures record through the `Evidence` protocol (the pytest plugin's recorder implements it; `NoEvidence` for
library callers that keep none). A check that does not hold raises `CheckFailed` with a message saying what was
expected and what was found, by fingerprint and count, never a secret. Steps never `assert` on their own.
"""

from __future__ import annotations

from typing import Protocol

from rotation.core.secret import Secret


class Evidence(Protocol):
    def record(self, name: str, value: object, *, source: str | None = None) -> None: ...

    def population(self, label: str, verified: int, total: int, *, source: str | None = None) -> None: ...

    def register_secret(self, secret: Secret | str) -> None: ...

    def attach(self, name: str, text: str) -> None: ...


class NoEvidence:
    """For callers of the library that keep no evidence."""

    def record(self, name: str, value: object, *, source: str | None = None) -> None:
        return None

    def population(self, label: str, verified: int, total: int, *, source: str | None = None) -> None:
        return None

    def register_secret(self, secret: Secret | str) -> None:
        return None

    def attach(self, name: str, text: str) -> None:
        return None


class CheckFailed(Exception):
    """A check of the procedure did not hold. The message never contains a secret."""


def require(condition: bool, message: str) -> None:
    """Raise CheckFailed(message) unless the condition holds."""
    if not condition:
        raise CheckFailed(message)
