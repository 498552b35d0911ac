"""The audit trail of rotations: security_credential_rotations, as the runbook's `-- Log rotation` step writes it.

The interval comes from the credential registry, so the row's next_rotation_due and `rotation status` can never
disagree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from rotation.core.config import Credential
from rotation.core.secret import Secret, sha256_hex

INSERT = """
INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, rotation_reason,
                                           rotated_at, next_rotation_due)
VALUES (%(type)s, %(by)s, %(hash)s, %(reason)s, COALESCE(%(at)s, now()), COALESCE(%(at)s, now()) + %(interval)s)
RETURNING rotation_id::text, rotated_at, next_rotation_due
"""
FIND = """
SELECT rotation_id::text, credential_type, rotated_at, rotated_by, previous_key_hash, rotation_reason, next_rotation_due
FROM security_credential_rotations WHERE credential_type = %s AND previous_key_hash = %s
ORDER BY rotated_at DESC LIMIT 1
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

    def as_evidence(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def log_rotation(conn: psycopg.Connection, credential: Credential, *, rotated_by: str, previous: Secret | str,
                 reason: str, at: dt.datetime | None = None) -> RotationRecord:
    """Insert the row; previous_key_hash is the SHA-256 of the retired credential (never the credential).
    `at` backdates the row (history for monitoring rehearsals); None means the database's now()."""
    previous_hash = sha256_hex(previous)
    row = conn.execute(INSERT, {"type": credential.type, "by": rotated_by, "hash": previous_hash, "reason": reason,
                                "at": at, "interval": credential.interval}).fetchone()
    conn.commit()
    assert row is not None  # INSERT ... RETURNING always returns the row
    rotation_id, rotated_at, due = row
    return RotationRecord(rotation_id, credential.type, rotated_at, rotated_by, previous_hash, reason, due)


def find_rotation(conn: psycopg.Connection, credential: Credential, previous: Secret | str) -> RotationRecord | None:
    """The logged rotation that retired this credential, if any (matched on its hash)."""
    row = conn.execute(FIND, (credential.type, sha256_hex(previous))).fetchone()
    conn.commit()
    return RotationRecord(*row) if row else None
