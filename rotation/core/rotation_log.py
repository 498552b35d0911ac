"""The audit trail of rotations: security_credential_rotations, as the runbook's `-- Log rotation` step writes it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from rotation.core.keys import sha256_hex

CREDENTIAL_TYPES = ("db_encryption_key", "whatsapp_token", "twilio_token", "smtp_password")
ROTATION_INTERVAL = dt.timedelta(days=90)

INSERT = """
INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, rotation_reason,
                                           next_rotation_due)
VALUES (%(type)s, %(by)s, %(hash)s, %(reason)s, now() + %(interval)s)
RETURNING rotation_id::text, rotated_at, next_rotation_due
"""


@dataclass(frozen=True)
class RotationRecord:
    rotation_id: str
    credential_type: str
    rotated_at: dt.datetime
    rotated_by: str
    previous_key_hash: str | None
    rotation_reason: str | None
    next_rotation_due: dt.datetime | None


def log_rotation(conn: psycopg.Connection, credential_type: str, *, rotated_by: str, previous_secret: str,
                 reason: str, interval: dt.timedelta = ROTATION_INTERVAL) -> RotationRecord:
    """Insert the row; previous_key_hash is the SHA-256 of the retired credential (never the credential)."""
    if credential_type not in CREDENTIAL_TYPES:
        raise ValueError(f"unknown credential type {credential_type!r}; expected one of {', '.join(CREDENTIAL_TYPES)}")
    previous_hash = sha256_hex(previous_secret)
    rotation_id, at, due = conn.execute(INSERT, {"type": credential_type, "by": rotated_by, "hash": previous_hash,
                                                 "reason": reason, "interval": interval}).fetchone()
    conn.commit()
    return RotationRecord(rotation_id, credential_type, at, rotated_by, previous_hash, reason, due)


def find_rotation(conn: psycopg.Connection, credential_type: str, previous_secret: str) -> RotationRecord | None:
    """The logged rotation that retired this credential, if any (matched on its hash)."""
    row = conn.execute(
        "SELECT rotation_id::text, credential_type, rotated_at, rotated_by, previous_key_hash, rotation_reason, "
        "next_rotation_due FROM security_credential_rotations WHERE credential_type = %s AND previous_key_hash = %s "
        "ORDER BY rotated_at DESC LIMIT 1", (credential_type, sha256_hex(previous_secret))).fetchone()
    conn.commit()
    return RotationRecord(*row) if row else None
