"""Generating, judging and fingerprinting secrets. Outside memory a secret appears only as its fingerprint."""

from __future__ import annotations

import hashlib
import secrets
import string

MIN_KEY_LENGTH = 32


class WeakSecretError(ValueError):
    """A credential fails the strength policy. The message never contains the credential."""


def generate_key(nbytes: int = 32) -> str:
    """A new key from the OS CSPRNG, url-safe, as the runbook's `secrets.token_urlsafe(32)` (43 characters)."""
    if nbytes < 32:
        raise WeakSecretError(f"a key needs at least 32 random bytes, {nbytes} were asked for")
    while True:  # about 1 in 7,000 draws lacks three character classes; draw again rather than fail a policy check
        key = secrets.token_urlsafe(nbytes)
        if character_classes(key) >= 3:
            return key


def sha256_hex(secret: str) -> str:
    """SHA-256 of a credential: what `security_credential_rotations.previous_key_hash` stores, per the schema."""
    return hashlib.sha256(secret.encode()).hexdigest()


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret, safe for logs, evidence and state files."""
    return "sha256:" + sha256_hex(secret)[:16]


def character_classes(secret: str) -> int:
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    count = sum(any(c in cls for c in secret) for cls in classes)
    return count + any(not c.isalnum() for c in secret)


def check_strength(secret: str, *, name: str, min_length: int = MIN_KEY_LENGTH, min_classes: int = 3) -> None:
    """Raise WeakSecretError naming the credential (never its value) when it is too short or too uniform."""
    if len(secret) < min_length:
        raise WeakSecretError(f"{name} is {len(secret)} characters; at least {min_length} are required")
    if character_classes(secret) < min_classes:
        raise WeakSecretError(
            f"{name} uses {character_classes(secret)} character classes; at least {min_classes} are required "
            "(lower, upper, digits, symbols)"
        )
