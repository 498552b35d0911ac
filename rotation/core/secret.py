"""Secrets in memory, and their fingerprints outside it.

A `Secret` is not a string: `str()`, `repr()`, f-strings and `%` formatting all give `<secret sha256:...>`, so a
secret that slips into a message, a log line, an assertion or a traceback shows only its fingerprint. The value
comes out only through `reveal()`, called at the edges where a provider SDK, an HTTP header, an SMTP login or a
file write needs it. psycopg sends a Secret as a text parameter (see rotation.core.database).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, NoReturn


def sha256_hex(value: str | Secret) -> str:
    """SHA-256 of a credential: what `security_credential_rotations.previous_key_hash` stores, per the schema."""
    text = value.reveal() if isinstance(value, Secret) else value
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(value: str | Secret) -> str:
    """A short, non-reversible name for a secret, safe for logs, evidence and state files."""
    return "sha256:" + sha256_hex(value)[:16]


class Secret:
    """A credential. Compare, hash and measure it freely; `reveal()` only where the value itself must go."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str | Secret) -> None:
        text = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(text, str):
            raise TypeError(f"a Secret holds a str, not {type(text).__name__}")
        object.__setattr__(self, "_value", text)

    def reveal(self) -> str:
        return self._value

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._value)

    def __repr__(self) -> str:
        return f"<secret {self.fingerprint}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other.reveal().encode())
        if isinstance(other, str):
            raise TypeError("compare a Secret with a Secret, not a str: wrap the other value in Secret()")
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is never pickled or serialised")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


def secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


def reveal(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value
