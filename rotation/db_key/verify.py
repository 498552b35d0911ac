"""Verification that proves the population, not a count.

Before re-encryption every value's plaintext is digested in the database (HMAC-SHA-256 keyed with the new key, so the
digests reveal nothing to whoever lacks the key). Afterwards every row and column is checked: non-NULL values decrypt
with the new key to the same digest, none decrypts with the old key, NULLs stay NULL, no row appears or disappears.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from rotation.core.secret import Secret
from rotation.db_key.reencrypt import TableSpec

SNAPSHOT = """
INSERT INTO rotation_runbook.plaintext_digest (job_id, pk, column_name, digest)
SELECT %(job)s, x.{pk}::text, {name}, hmac(pgp_sym_decrypt(x.{c}, %(old)s), %(new)s, 'sha256')
FROM {t} x
ON CONFLICT DO NOTHING
"""

CHECK_COLUMN = """
SELECT
    count(*) FILTER (WHERE d.digest IS NOT NULL) AS values_before,
    count(*) FILTER (WHERE d.digest IS NULL) AS nulls_before,
    count(*) FILTER (WHERE d.digest IS NULL AND t.{pk} IS NOT NULL AND t.{c} IS NULL) AS nulls_kept,
    count(*) FILTER (WHERE d.digest IS NOT NULL
        AND hmac(rotation_runbook.try_decrypt(t.{c}, %(new)s), %(new)s, 'sha256') = d.digest) AS verified_new,
    count(*) FILTER (WHERE t.{c} IS NOT NULL AND rotation_runbook.try_decrypt(t.{c}, %(old)s) IS NOT NULL)
        AS readable_old
FROM rotation_runbook.plaintext_digest d
LEFT JOIN {t} t ON t.{pk}::text = d.pk
WHERE d.job_id = %(job)s AND d.column_name = {name}
"""

FAILURES = """
SELECT d.pk, {name},
    CASE WHEN t.{pk} IS NULL THEN 'row missing'
         WHEN d.digest IS NULL AND t.{c} IS NOT NULL THEN 'was NULL, now has a value'
         WHEN d.digest IS NOT NULL AND t.{c} IS NULL THEN 'value became NULL'
         WHEN rotation_runbook.try_decrypt(t.{c}, %(old)s) IS NOT NULL THEN 'still under the old key'
         WHEN rotation_runbook.try_decrypt(t.{c}, %(new)s) IS NULL THEN 'under neither key'
         ELSE 'plaintext changed' END
FROM rotation_runbook.plaintext_digest d
LEFT JOIN {t} t ON t.{pk}::text = d.pk
WHERE d.job_id = %(job)s AND d.column_name = {name}
  AND NOT (
    (t.{pk} IS NOT NULL AND d.digest IS NULL AND t.{c} IS NULL)
    OR (t.{pk} IS NOT NULL AND d.digest IS NOT NULL
        AND hmac(rotation_runbook.try_decrypt(t.{c}, %(new)s), %(new)s, 'sha256') = d.digest
        AND rotation_runbook.try_decrypt(t.{c}, %(old)s) IS NULL))
ORDER BY d.pk LIMIT %(limit)s
"""


@dataclass(frozen=True)
class ColumnCheck:
    column: str
    values_before: int
    nulls_before: int
    nulls_kept: int
    verified_new: int
    readable_old: int

    @property
    def ok(self) -> bool:
        return (self.verified_new == self.values_before and self.readable_old == 0
                and self.nulls_kept == self.nulls_before)


@dataclass(frozen=True)
class PopulationCheck:
    table: str
    rows_before: int
    rows_after: int
    columns: tuple[ColumnCheck, ...]
    failures: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def values_total(self) -> int:
        return sum(c.values_before for c in self.columns)

    @property
    def values_verified(self) -> int:
        return sum(c.verified_new for c in self.columns)

    @property
    def readable_old(self) -> int:
        return sum(c.readable_old for c in self.columns)

    @property
    def ok(self) -> bool:
        return self.rows_before == self.rows_after and all(c.ok for c in self.columns) and not self.failures

    def summary(self) -> str:
        return (f"{self.values_verified:,} of {self.values_total:,} values in {self.table} decrypt with the new key to "
                f"their original plaintext; {self.readable_old:,} decrypt with the old key; "
                f"{sum(c.nulls_kept for c in self.columns):,} of {sum(c.nulls_before for c in self.columns):,} NULLs "
                f"kept; rows {self.rows_before:,} before, {self.rows_after:,} after")

    def failure_lines(self) -> list[str]:
        return [f"{pk} {column}: {why}" for pk, column, why in self.failures]


def _fmt(statement: str, spec: TableSpec, column: str) -> sql.Composed:
    return sql.SQL(statement).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
                                     c=sql.Identifier(column), name=sql.Literal(column))


def snapshot(conn: psycopg.Connection, spec: TableSpec, job_id: int, old_key: Secret, new_key: Secret) -> int:
    """Record the keyed digest of every value (NULL for NULL) before re-encryption, once per job and atomically:
    a resumed job keeps the snapshot taken before its first batch."""
    params = {"job": job_id, "old": old_key, "new": new_key}
    with conn.transaction():
        taken = conn.execute("SELECT snapshot_taken FROM rotation_runbook.reencrypt_job WHERE job_id = %s FOR UPDATE",
                             (job_id,)).fetchone()
        if taken and not taken[0]:
            for column in spec.columns:
                conn.execute(_fmt(SNAPSHOT, spec, column), params)
            conn.execute("UPDATE rotation_runbook.reencrypt_job SET snapshot_taken = true WHERE job_id = %s", (job_id,))
    return snapshot_size(conn, job_id)


def snapshot_size(conn: psycopg.Connection, job_id: int) -> int:
    row = conn.execute("SELECT count(*) FROM rotation_runbook.plaintext_digest WHERE job_id = %s", (job_id,)).fetchone()
    return int(row[0]) if row else 0


def verify(conn: psycopg.Connection, spec: TableSpec, job_id: int, old_key: Secret, new_key: Secret,
           *, failure_limit: int = 20) -> PopulationCheck:
    params = {"job": job_id, "old": old_key, "new": new_key, "limit": failure_limit}
    columns, failures = [], []
    for column in spec.columns:
        counts = conn.execute(_fmt(CHECK_COLUMN, spec, column), params).fetchone() or (0, 0, 0, 0, 0)
        columns.append(ColumnCheck(column, *(int(n) for n in counts)))
        failures += [(str(pk), str(col), str(why)) for pk, col, why in
                     conn.execute(_fmt(FAILURES, spec, column), params).fetchall()]
    rows_before = _count(conn, "SELECT count(DISTINCT pk) FROM rotation_runbook.plaintext_digest WHERE job_id = %s",
                         (job_id,))
    rows_after = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.table)))
    conn.commit()
    return PopulationCheck(spec.table, rows_before, rows_after, tuple(columns), tuple(failures))


def _count(conn: psycopg.Connection, query: str | sql.Composed, params: tuple[object, ...] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


# --- values a key opens: the old key after a rotation, the current key before one ------------------------------------

READABLE = """
SELECT count({c}), count(rotation_runbook.try_decrypt({c}, %(k)s)),
       (array_agg({pk}::text ORDER BY {pk}) FILTER (WHERE rotation_runbook.try_decrypt({c}, %(k)s) IS NOT NULL))[1:5]
FROM {t}
"""
SAMPLE = """
SELECT count({c}), (SELECT rotation_runbook.try_decrypt({c}, %(k)s) IS NOT NULL FROM {t}
                     WHERE {c} IS NOT NULL ORDER BY {pk} LIMIT 1)
FROM {t}
"""


@dataclass(frozen=True)
class KeyReach:
    """How many of a table's encrypted values one key opens, per column, with the first few row ids it opens."""

    table: str
    pk: str
    values: dict[str, int]
    opened: dict[str, int]
    examples: dict[str, tuple[str, ...]]

    @property
    def total(self) -> int:
        return sum(self.values.values())

    @property
    def total_opened(self) -> int:
        return sum(self.opened.values())

    def opened_lines(self) -> list[str]:
        """`table.column: n values (pk=a, pk=b, ...)` for every column the key opens at least one value of."""
        return [f"{self.table}.{c}: {n:,} value{'s' if n != 1 else ''} ("
                + ", ".join(f"{self.pk}={pk}" for pk in self.examples.get(c, ())) + (", ..." if n > 5 else "") + ")"
                for c, n in self.opened.items() if n]

    def as_evidence(self) -> dict[str, dict[str, int]]:
        return {f"{self.table}.{c}": {"values": self.values[c], "opened": self.opened[c]} for c in self.values}


def key_reach(conn: psycopg.Connection, spec: TableSpec, key: Secret) -> KeyReach:
    """Try the key on every non-NULL value of the spec's columns (one pass per column)."""
    values, opened, examples = {}, {}, {}
    for column in spec.columns:
        row = conn.execute(_fmt(READABLE, spec, column), {"k": key}).fetchone() or (0, 0, None)
        values[column], opened[column], examples[column] = int(row[0]), int(row[1]), tuple(row[2] or ())
    conn.commit()
    return KeyReach(spec.table, spec.pk, values, opened, examples)


def sample_opens(conn: psycopg.Connection, spec: TableSpec, key: Secret) -> dict[str, tuple[int, bool | None]]:
    """Per column: (non-NULL values, whether the key opens the first of them; None for an empty column). Cheap: one
    decryption per column, enough to tell the right key from a wrong one."""
    found = {}
    for column in spec.columns:
        row = conn.execute(_fmt(SAMPLE, spec, column), {"k": key}).fetchone() or (0, None)
        found[column] = (int(row[0]), None if row[1] is None else bool(row[1]))
    conn.commit()
    return found
