"""Generating and judging secrets against a credential's strength policy (from the deployment configuration)."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable

from rotation.core.config import StrengthPolicy
from rotation.core.errors import RotationError
from rotation.core.secret import Secret

MIN_KEY_LENGTH = 32  # the app refuses a DB_ENCRYPTION_KEY shorter than this


class WeakSecretError(RotationError, ValueError):
    """A credential fails the strength policy. The message never contains the credential."""


def generate_key(nbytes: int = 32) -> Secret:
    """A new key from the OS CSPRNG, url-safe, as the runbook's `secrets.token_urlsafe(32)` (43 characters)."""
    if nbytes < 32:
        raise WeakSecretError(f"a key needs at least 32 random bytes, {nbytes} were asked for")
    while True:  # about 1 in 7,000 draws lacks three character classes; draw again rather than fail a policy check
        key = secrets.token_urlsafe(nbytes)
        if character_classes(key) >= 3:
            return Secret(key)


def character_classes(value: str) -> int:
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    count = sum(any(c in cls for c in value) for cls in classes)
    return count + any(not c.isalnum() for c in value)


def strength_problems(value: Secret, policy: StrengthPolicy) -> list[str]:
    """What the value lacks under the policy, described without the value."""
    text = value.reveal()
    problems = []
    if len(text) < policy.min_length:
        problems.append(f"{len(text)} characters; at least {policy.min_length} are required")
    if len(set(text)) < policy.min_distinct:
        problems.append(f"{len(set(text))} different characters; at least {policy.min_distinct} are required")
    if character_classes(text) < policy.min_classes:
        problems.append(f"{character_classes(text)} character classes; at least {policy.min_classes} are required "
                        "(lower case, upper case, digits, other)")
    if policy.pattern is not None and not re.fullmatch(policy.pattern, text):
        problems.append(f"does not have the expected form ({policy.pattern})")
    return problems


def check_strength(value: Secret, policy: StrengthPolicy, *, name: str, current: Secret | None = None,
                   others: Iterable[Secret] = ()) -> None:
    """Raise WeakSecretError naming the credential (never its value) when the new value fails its policy, equals the
    current one, or is already used by another credential."""
    problems = strength_problems(value, policy)
    if current is not None and value == current:
        problems.append("it is the current value, unchanged")
    if any(value == other for other in others):
        problems.append("another credential already uses this value")
    if problems:
        raise WeakSecretError(f"{name} ({value.fingerprint}) is refused: " + "; ".join(problems))
