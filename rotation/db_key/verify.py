"""Verification that proves the population, not a count.

Before re-encryption every value's plaintext is digested in the database (HMAC-SHA-256 keyed with the new key, so the
digests reveal nothing to whoever lacks the key), and so is every row's set of other columns (SHA-256 of their
text). Afterwards every row of the whole table is checked: non-NULL values decrypt with the new key
to the same digest, none of the others decrypts with the old key, NULLs stay NULL, no row appears or disappears
unseen, and nothing but ciphertext changed. Every failure is named by table, column, count and row ids.

Keys come from the session's key table (rotation.core.database), loaded here as 'old' and 'new'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from rotation.core.database import NEW_KEY as NEW
from rotation.core.database import OLD_KEY as OLD
from rotation.core.database import key_ref, load_keys, on_connections
from rotation.core.progress import BEAT_S, Meter, ProgressCallback
from rotation.core.secret import Secret
from rotation.db_key import unopened
from rotation.db_key.reencrypt import (
    DIGEST_SETTINGS,
    SAMPLE_SIZE,
    ReencryptionError,
    TableSpec,
    digest_array,
    other_columns_digest,
    with_others,
)

SNAPSHOT = """
INSERT INTO rotation_runbook.row_digest (job_id, pk, other, digests)
SELECT %(job)s, x.{pk}::text, {digest}, {values}
FROM {t} x
ON CONFLICT DO NOTHING
"""

# The old key is tried only on values the new key does not verify: a PGP symmetric message opens only under the
# passphrase its S2K key was derived from (a wrong one fails pgcrypto's check bytes, then the MDC), so a value that
# decrypts under the new key to its digest cannot open under the old one. The completeness sweep, after the start,
# still tries the old key on every value. OFFSET 0 keeps each row's decryption from being computed once per count.
CHECK_COLUMN = """
SELECT
    count(*) FILTER (WHERE digest IS NOT NULL) AS values_before,
    count(*) FILTER (WHERE digest IS NULL AND NOT is_left) AS nulls_before,
    count(*) FILTER (WHERE digest IS NULL AND row_found AND value IS NULL) AS nulls_kept,
    count(*) FILTER (WHERE verified) AS verified_new,
    count(*) FILTER (WHERE value IS NOT NULL AND NOT verified
                     AND rotation_runbook.try_decrypt(value, """ + OLD + """) IS NOT NULL) AS readable_old,
    count(*) FILTER (WHERE digest IS NULL AND is_left) AS left_as_found
FROM (
    SELECT d.digest, t.{pk} IS NOT NULL AS row_found, t.{c} AS value, COALESCE({is_left}, false) AS is_left,
           COALESCE(d.digest IS NOT NULL
                    AND hmac(rotation_runbook.try_decrypt(t.{c}, """ + NEW + "), " + NEW + """, 'sha256') = d.digest,
                    false) AS verified
    FROM (SELECT pk, digests[{i}] AS digest FROM rotation_runbook.row_digest WHERE job_id = %(job)s) d
    LEFT JOIN {t} t ON t.{pk}::text = d.pk
    WHERE true {part}
    OFFSET 0
) v
"""

FAILURES = """
SELECT why, count(*), (array_agg(pk ORDER BY pk))[1:%(limit)s]
FROM (
    SELECT d.pk,
        CASE WHEN t.{pk} IS NULL THEN 'row missing'
             WHEN d.digest IS NULL AND t.{c} IS NOT NULL AND {was_left}
                 THEN 'left as found (no key opened it), since changed'
             WHEN d.digest IS NULL AND t.{c} IS NOT NULL THEN 'was NULL, now has a value'
             WHEN d.digest IS NOT NULL AND t.{c} IS NULL THEN 'value became NULL'
             WHEN rotation_runbook.try_decrypt(t.{c}, """ + OLD + """) IS NOT NULL THEN 'still under the old key'
             WHEN rotation_runbook.try_decrypt(t.{c}, """ + NEW + """) IS NULL THEN 'under neither key'
             ELSE 'plaintext changed' END AS why
    FROM (SELECT pk, digests[{i}] AS digest FROM rotation_runbook.row_digest WHERE job_id = %(job)s) d
    LEFT JOIN {t} t ON t.{pk}::text = d.pk
    WHERE NOT (
        (t.{pk} IS NOT NULL AND d.digest IS NULL AND t.{c} IS NULL)
        OR (t.{pk} IS NOT NULL AND d.digest IS NULL AND COALESCE({is_left}, false))
        OR (t.{pk} IS NOT NULL AND d.digest IS NOT NULL
            AND hmac(rotation_runbook.try_decrypt(t.{c}, """ + NEW + "), " + NEW + """, 'sha256') = d.digest
            AND rotation_runbook.try_decrypt(t.{c}, """ + OLD + """) IS NULL))
) f
GROUP BY why ORDER BY why
"""

# Rows of the table the snapshot does not know (written after it), and rows whose other columns changed.
ROWS_UNKNOWN = """
SELECT count(*), (array_agg(x.{pk}::text ORDER BY x.{pk}))[1:%(limit)s] FROM {t} x
WHERE NOT EXISTS (SELECT 1 FROM rotation_runbook.row_digest d WHERE d.job_id = %(job)s AND d.pk = x.{pk}::text)
"""
ROWS_CHANGED = """
SELECT count(*), (array_agg(d.pk ORDER BY d.pk))[1:%(limit)s]
FROM rotation_runbook.row_digest d JOIN {t} x ON x.{pk}::text = d.pk
WHERE d.job_id = %(job)s AND d.other IS DISTINCT FROM {digest}
"""


@dataclass(frozen=True)
class ColumnCheck:
    column: str
    values_before: int
    nulls_before: int
    nulls_kept: int
    verified_new: int
    readable_old: int
    left: int = 0  # values no key opens, left byte for byte as found (rotation.db_key.unopened): never verified

    @property
    def ok(self) -> bool:
        return (self.verified_new == self.values_before and self.readable_old == 0
                and self.nulls_kept == self.nulls_before)


@dataclass(frozen=True)
class Finding:
    """`count` values (or rows) of `table.column` failed for the same reason; `ids` are the first of them."""

    table: str
    pk: str
    column: str | None  # None: the row as a whole
    why: str
    count: int
    ids: tuple[str, ...]

    def line(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        more = ", ..." if self.count > len(self.ids) else ""
        noun = "value" if self.column else "row"
        return (f"{where}: {self.count:,} {noun}{'s' if self.count != 1 else ''} {self.why} "
                f"({self.pk}={', '.join(self.ids)}{more})")


@dataclass(frozen=True)
class PopulationCheck:
    table: str
    rows_before: int
    rows_after: int
    columns: tuple[ColumnCheck, ...]
    findings: tuple[Finding, ...] = field(default=())

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
    def values_left(self) -> int:
        return sum(c.left for c in self.columns)

    @property
    def failures(self) -> tuple[Finding, ...]:
        return self.findings

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.columns) and not self.findings

    def summary(self) -> str:
        return (f"{self.values_verified:,} of {self.values_total:,} values in {self.table} decrypt with the new key to "
                f"their original plaintext; {self.readable_old:,} decrypt with the old key; "
                f"{sum(c.nulls_kept for c in self.columns):,} of {sum(c.nulls_before for c in self.columns):,} NULLs "
                f"kept; rows {self.rows_before:,} in the snapshot, {self.rows_after:,} in the table"
                + (f"; {self.values_left:,} values no key opens left as found (not verified)" if self.values_left
                   else ""))

    def failure_lines(self) -> list[str]:
        return [f.line() for f in self.findings]


NO_PART = sql.SQL("")  # the whole column: CHECK_COLUMN's {part} left empty


def _fmt(statement: str, spec: TableSpec, column: str = "", part: sql.Composable = NO_PART,
         left: str | None = None) -> sql.Composed:
    """The statement for this table (and column: {i} is its place in the digest array, 1-based, as in the job).
    `left`: the new key's fingerprint when values of the table were left as found (rotation.db_key.unopened)."""
    is_left = (unopened.is_left(spec, column, left, "t") if left is not None and column else sql.SQL("false"))
    was_left = (sql.SQL("EXISTS (SELECT 1 FROM rotation_runbook.unreadable_value u WHERE u.new_key_fp = {} AND "
                        "u.table_name = {} AND u.column_name = {} AND u.pk = d.pk)").format(
        sql.Literal(left), sql.Literal(spec.table), sql.Literal(column)) if left is not None and column
                else sql.SQL("false"))
    digest = other_columns_digest(spec, "x") if "{digest}" in statement else sql.SQL("")
    values = digest_array(sql.SQL("pgp_sym_decrypt(x.{}, " + OLD + ")").format(sql.Identifier(c))
                          for c in spec.columns) if "{values}" in statement else sql.SQL("")
    return sql.SQL(statement).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
                                     c=sql.Identifier(column or spec.pk), i=sql.Literal(digest_index(spec, column)),
                                     digest=digest, values=values, part=part, is_left=is_left,
                                     was_left=was_left)


def digest_index(spec: TableSpec, column: str) -> int:
    """Where a column's digest sits in row_digest.digests: its place in the spec (the job's `columns`), 1-based."""
    return spec.columns.index(column) + 1 if column else 0


def snapshot(conn: psycopg.Connection, spec: TableSpec, job_id: int, old_key: Secret, new_key: Secret) -> int:
    """Record the keyed digest of every value (NULL for NULL) and of every row's other columns before re-encryption,
    once per job and atomically: a resumed job keeps the snapshot taken before its first batch."""
    load_keys(conn, {"old": old_key, "new": new_key})
    with conn.transaction():
        taken = conn.execute("SELECT snapshot_taken FROM rotation_runbook.reencrypt_job WHERE job_id = %s FOR UPDATE",
                             (job_id,)).fetchone()
        if taken and not taken[0]:
            spec = with_others(conn, spec)
            for setting in DIGEST_SETTINGS:
                conn.execute(setting)
            try:
                with conn.transaction():
                    conn.execute(_fmt(SNAPSHOT, spec), {"job": job_id})
            except psycopg.errors.ExternalRoutineInvocationException:  # pgcrypto: a value the old key cannot open
                raise ReencryptionError(_unreadable(conn, spec)) from None
            conn.execute("UPDATE rotation_runbook.reencrypt_job SET snapshot_taken = true WHERE job_id = %s", (job_id,))
    return snapshot_size(conn, job_id)


UNREADABLE = """
SELECT count(*), (array_agg(x.{pk}::text ORDER BY x.{pk}))[1:10] FROM {t} x
WHERE x.{c} IS NOT NULL AND rotation_runbook.try_decrypt(x.{c}, """ + OLD + """) IS NULL
"""


def _unreadable(conn: psycopg.Connection, spec: TableSpec) -> str:
    """Name the values the old key cannot open, column by column (the snapshot stopped on the first of them)."""
    found = []
    for column in spec.columns:
        row = conn.execute(_fmt(UNREADABLE, spec, column)).fetchone() or (0, [])
        if row[0]:
            ids = ", ".join(str(i) for i in row[1] or ())
            found.append(f"{spec.table}.{column}: {int(row[0]):,} value{'s' if row[0] != 1 else ''} the old key "
                         f"cannot decrypt ({spec.pk}={ids})")
    return (f"the digest snapshot of {spec.table} stopped: {'; '.join(found)}. Nothing was re-encrypted; find the key "
            "those values are under before running the rotation again")


def snapshot_size(conn: psycopg.Connection, job_id: int) -> int:
    """How many value digests the job's snapshot holds (row digests not counted)."""
    row = conn.execute("SELECT COALESCE(sum(cardinality(digests)), 0) FROM rotation_runbook.row_digest "
                       "WHERE job_id = %s", (job_id,)).fetchone()
    return int(row[0]) if row else 0


# One of `parts` disjoint slices of a column's digests, so that the slices can be checked on parallel connections.
PART = sql.SQL(" AND mod(hashtext(d.pk)::bigint + 2147483648, %(parts)s) = %(part)s")


def _checked(counts: tuple[int, ...]) -> int:
    """The snapshot's entries a CHECK_COLUMN row accounts for: values, NULLs, and values left as found."""
    return counts[0] + counts[1] + counts[5]


def column_counts(dsn: str, spec: TableSpec, job_id: int, keys: dict[str, Secret], workers: int,
                  left: str | None = None, meter: Meter | None = None) -> dict[str, tuple[int, ...]]:
    """CHECK_COLUMN's six counts per column, each column in `workers` slices on as many connections."""
    tasks = [(column, part) for column in spec.columns for part in range(workers)]

    def count(conn: psycopg.Connection, task: tuple[str, int]) -> tuple[int, ...]:
        query = _fmt(CHECK_COLUMN, spec, task[0], PART, left)
        row = conn.execute(query, {"job": job_id, "parts": workers, "part": task[1]}).fetchone()
        counts = tuple(int(n) for n in row or (0, 0, 0, 0, 0, 0))
        if meter:
            meter.add(_checked(counts))
        return counts

    totals: dict[str, tuple[int, ...]] = {c: (0, 0, 0, 0, 0, 0) for c in spec.columns}
    for (column, _), counts in zip(tasks, on_connections(dsn, keys, workers, tasks, count), strict=True):
        totals[column] = tuple(a + b for a, b in zip(totals[column], counts, strict=True))
    return totals


def verify(conn: psycopg.Connection, spec: TableSpec, job_id: int, old_key: Secret, new_key: Secret,
           *, failure_limit: int = 10, dsn: str | None = None, workers: int = 1,
           on_progress: ProgressCallback | None = None) -> PopulationCheck:
    """Every value and row of the whole table against the job's snapshot (read only). Given the DSN, the per-value
    checks run on `workers` connections. `on_progress` hears of the values checked (snapshot entries: one per row
    and column)."""
    left = unopened.left_fp(conn, new_key, spec)
    load_keys(conn, {"old": old_key, "new": new_key})
    meter = Meter(snapshot_size(conn, job_id) if on_progress else 0, on_progress, beat_s=BEAT_S)
    conn.commit()  # the checks below run in a transaction of their own
    with meter:
        parallel = (column_counts(dsn, spec, job_id, {"old": old_key, "new": new_key}, workers, left, meter)
                    if dsn else {})
        return _verify_counts(conn, spec, job_id, failure_limit, parallel, left, meter)


def _verify_counts(conn: psycopg.Connection, spec: TableSpec, job_id: int, failure_limit: int,
                   parallel: dict[str, tuple[int, ...]], left: str | None, meter: Meter) -> PopulationCheck:
    """verify's counts per column (those not counted in parallel counted here) and its findings."""
    params = {"job": job_id, "limit": failure_limit}
    columns: list[ColumnCheck] = []
    findings: list[Finding] = []
    with conn.transaction():
        for setting in DIGEST_SETTINGS:
            conn.execute(setting)
        for column in spec.columns:
            counts = parallel.get(column)
            if counts is None:
                counts = tuple(int(n) for n in conn.execute(_fmt(CHECK_COLUMN, spec, column, left=left),
                                                            params).fetchone() or (0, 0, 0, 0, 0, 0))
                meter.add(_checked(counts))
            columns.append(ColumnCheck(column, *counts))
            if columns[-1].ok:  # every value accounted for: naming failures would decrypt everything again
                continue
            findings += [Finding(spec.table, spec.pk, column, str(why), int(n), tuple(str(i) for i in ids or ()))
                         for why, n, ids in conn.execute(_fmt(FAILURES, spec, column, left=left),
                                                         params).fetchall()]
        findings += row_findings(conn, spec, job_id, failure_limit)
        rows_before = _count(conn, "SELECT count(*) FROM rotation_runbook.row_digest WHERE job_id = %s", (job_id,))
        rows_after = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.table)))
    conn.commit()
    meter.finish()
    return PopulationCheck(spec.table, rows_before, rows_after, tuple(columns), tuple(findings))


def row_findings(conn: psycopg.Connection, spec: TableSpec, job_id: int, failure_limit: int = 10) -> list[Finding]:
    """Rows the job's digests do not know, and rows whose other columns changed (inside the caller's transaction,
    DIGEST_SETTINGS applied)."""
    params = {"job": job_id, "limit": failure_limit}
    spec = with_others(conn, spec)
    findings = []
    for query, why in ((ROWS_UNKNOWN, "written after the digest snapshot, not re-encrypted by this rotation: run "
                                      "the rotation again to take them up"),
                       (ROWS_CHANGED, "changed in columns other than the encrypted ones")):
        row = conn.execute(_fmt(query, spec), params).fetchone()
        if row and row[0]:
            findings.append(Finding(spec.table, spec.pk, None, why, int(row[0]), tuple(str(i) for i in row[1] or ())))
    return findings


def _count(conn: psycopg.Connection, query: str | sql.Composed, params: tuple[object, ...] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


# --- after the digests are gone: what a re-check can still prove ------------------------------------------------------

def forget_digests(conn: psycopg.Connection, job_ids: list[int]) -> int:
    """After a verified rotation: keep each job's count of proven values, delete its per-value digests."""
    with conn.transaction():
        conn.execute("UPDATE rotation_runbook.reencrypt_job j SET verified_values = (SELECT COALESCE(sum("
                     "cardinality(array_remove(d.digests, NULL))), 0) FROM rotation_runbook.row_digest d "
                     "WHERE d.job_id = j.job_id), verified_at = now(), digests_removed_at = now() "
                     "WHERE job_id = ANY(%s) AND digests_removed_at IS NULL", (job_ids,))
        gone = conn.execute("DELETE FROM rotation_runbook.row_digest WHERE job_id = ANY(%s)", (job_ids,))
    return gone.rowcount


@dataclass(frozen=True)
class CleanedJob:
    job_id: int
    verified_values: int
    verified_at: str
    digests_removed_at: str


def cleaned_job(conn: psycopg.Connection, job_id: int) -> CleanedJob | None:
    """The job's record of its verification, when its digests were removed after a verified rotation."""
    row = conn.execute("SELECT verified_values, verified_at::text, digests_removed_at::text FROM "
                       "rotation_runbook.reencrypt_job WHERE job_id = %s AND digests_removed_at IS NOT NULL",
                       (job_id,)).fetchone()
    conn.commit()
    return CleanedJob(job_id, int(row[0] or 0), str(row[1]), str(row[2])) if row else None


# --- values a key opens: the old key after a rotation, the current key before one ------------------------------------

# Each value is tried once: PostgreSQL does not share an expression between two aggregates, and OFFSET 0 keeps the
# subquery from being flattened into them.
READABLE = """
SELECT count(value), count(*) FILTER (WHERE opens), (array_agg(rid::text ORDER BY rid) FILTER (WHERE opens))[1:5]
FROM (SELECT {c} AS value, {pk} AS rid,
             rotation_runbook.try_decrypt({c}, """ + key_ref("k") + """) IS NOT NULL AS opens
      FROM {t} OFFSET 0) v
"""
SAMPLE = """
SELECT count({c}), (SELECT bool_or(rotation_runbook.try_decrypt(v, """ + key_ref("k") + """) IS NOT NULL)
                    FROM (SELECT {c} AS v FROM {t} WHERE {c} IS NOT NULL ORDER BY {pk}
                          LIMIT """ + str(SAMPLE_SIZE) + """) first)
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
    load_keys(conn, {"k": key})
    values, opened, examples = {}, {}, {}
    for column in spec.columns:
        row = conn.execute(_fmt(READABLE, spec, column)).fetchone() or (0, 0, None)
        values[column], opened[column], examples[column] = int(row[0]), int(row[1]), tuple(row[2] or ())
    conn.commit()
    return KeyReach(spec.table, spec.pk, values, opened, examples)


def sample_opens(conn: psycopg.Connection, spec: TableSpec, key: Secret) -> dict[str, tuple[int, bool | None]]:
    """Per column: (non-NULL values, whether the key opens any of the first SAMPLE_SIZE of them; None for an empty
    column). Cheap, and enough to tell the right key from a wrong one; a value under a key nobody has among them is
    found (and refused or left, --leave-unreadable) by rotation.db_key.unopened before the app stops."""
    load_keys(conn, {"k": key})
    found = {}
    for column in spec.columns:
        row = conn.execute(_fmt(SAMPLE, spec, column)).fetchone() or (0, None)
        found[column] = (int(row[0]), None if row[1] is None else bool(row[1]))
    conn.commit()
    return found
