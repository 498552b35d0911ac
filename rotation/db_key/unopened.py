"""Values no key opens: found before the app stops, and, when the operator chooses so, left byte for byte as they are.

A value written under a key nobody has (an old backup restored, a writer configured with another key) opens with
neither the current key nor the new one. A rotation that meets one half-way has already stopped the app and moved part
of the data; so every pgcrypto value of the inventory is tried before the app stops, in both modes (the old key with
rotation_runbook.try_decrypt, which returns NULL rather than raising, so the server log holds no ERROR; the new key
only on values the old one does not open).

What is found is named (table, column, count, row ids). The operator chooses: refuse (nothing changes), or
`--leave-unreadable`: each such value is recorded here with the SHA-256 of its bytes, every pass then leaves exactly
those values as they are (the same bytes, checked again by their digest), verification counts them apart (never as
verified) and the run's verdict is INCOMPLETE, naming them.

    rotation_runbook.unreadable_value (new_key_fp, table_name, column_name, pk, value_sha256, found_at)

A value recorded here that has changed since is no longer "left": it is checked like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from rotation.core.database import NEW_KEY as NEW
from rotation.core.database import OLD_KEY as OLD
from rotation.core.database import apply_runbook_schema, connect, on_connections
from rotation.core.progress import BEAT_S, Meter, ProgressCallback
from rotation.core.secret import Secret, fingerprint

if TYPE_CHECKING:  # reencrypt and staged build their statements with is_left(): no import cycle at run time
    from rotation.db_key.reencrypt import TableSpec

TABLE = "rotation_runbook.unreadable_value"
# Each value is tried with the old key once; the new key only where the old one fails (OFFSET 0: not once per use).
FIND = """
SELECT k, sha256(v) FROM (
    SELECT t.{pk}::text AS k, t.{c} AS v, rotation_runbook.try_decrypt(t.{c}, """ + OLD + """) IS NULL AS shut
    FROM {t} t WHERE t.{c} IS NOT NULL{part} OFFSET 0
) x WHERE shut AND rotation_runbook.try_decrypt(v, """ + NEW + """) IS NULL
ORDER BY k
"""
SOURCE = ("per pgcrypto column of the inventory, every non-NULL value: rotation_runbook.try_decrypt(<value>, <old>) "
          "IS NULL AND rotation_runbook.try_decrypt(<value>, <new>) IS NULL (pgp_sym_decrypt returning NULL instead of "
          "raising: no ERROR in the server log); each found value's sha256 kept in " + TABLE + " when it is left; "
          "keys read from the session's key table (COPY FROM STDIN)")


@dataclass(frozen=True)
class Unopened:
    """The values of one column that neither key opens."""

    table: str
    pk: str
    column: str
    ids: tuple[str, ...]
    digests: tuple[bytes, ...]

    @property
    def count(self) -> int:
        return len(self.ids)

    def line(self, limit: int = 20) -> str:
        more = ", ..." if self.count > limit else ""
        return (f"{self.table}.{self.column}: {self.count:,} value{'s' if self.count != 1 else ''} no key opens "
                f"({self.pk}={', '.join(self.ids[:limit])}{more})")

    def as_evidence(self) -> dict[str, object]:
        return {"table": self.table, "column": self.column, "count": self.count, self.pk: list(self.ids)}


def ensure(conn: psycopg.Connection) -> None:
    """The table is the suite's schema's (V100__rotation_runbook.sql): created or upgraded there, nothing here."""
    apply_runbook_schema(conn)
    conn.commit()


# One of `parts` disjoint slices of a table's rows (by a hash of the row id), so that slices run on parallel
# connections: try_decrypt catches pgcrypto's error in an exception block, which PostgreSQL will not run in parallel
# itself.
PART = " AND mod(hashtext(t.{pk}::text)::bigint + 2147483648, %(parts)s) = %(part)s"


def find(dsn: str, spec: TableSpec, old_key: Secret, new_key: Secret, *, workers: int = 1,
         on_progress: ProgressCallback | None = None) -> list[Unopened]:
    """Every non-NULL value of the spec's columns that opens with neither key, column by column (each column in
    `workers` slices on as many connections). `on_progress` hears of each slice tried, in values (its share of the
    table's rows, the slices being of about equal size)."""
    tasks = [(column, part) for column in spec.columns for part in range(max(1, workers))]
    rows_total = _rows(dsn, spec) if on_progress else 0
    meter = Meter(rows_total * len(spec.columns), on_progress, beat_s=BEAT_S)

    def scan(conn: psycopg.Connection, task: tuple[str, int]) -> list[tuple[str, bytes]]:
        statement = sql.SQL(FIND.replace("{part}", PART if workers > 1 else "")).format(
            pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), c=sql.Identifier(task[0]))
        params = {"parts": workers, "part": task[1]} if workers > 1 else None
        found = [(str(k), bytes(d)) for k, d in conn.execute(statement, params)]
        meter.add(rows_total // max(1, workers))
        return found

    rows: dict[str, list[tuple[str, bytes]]] = {c: [] for c in spec.columns}
    with meter:
        scanned = on_connections(dsn, {"old": old_key, "new": new_key}, workers, tasks, scan)
    for (column, _), found in zip(tasks, scanned, strict=True):
        rows[column] += found
    meter.finish(meter.total)
    return [Unopened(spec.table, spec.pk, column, tuple(k for k, _ in ordered), tuple(d for _, d in ordered))
            for column in spec.columns if (ordered := sorted(rows[column]))]


def _rows(dsn: str, spec: TableSpec) -> int:
    with connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.table))).fetchone()
    return int(row[0]) if row else 0


def keep(conn: psycopg.Connection, new_key: Secret, table: str, found: Iterable[Unopened]) -> None:
    """Record the values of `table` to leave as they are for the rotation to new_key (replacing what was recorded
    for that table before: the newest finding is what is left)."""
    ensure(conn)
    fp = fingerprint(new_key)
    with conn.transaction():
        conn.execute("DELETE FROM " + TABLE + " WHERE new_key_fp = %s AND table_name = %s", (fp, table))
        conn.cursor().executemany(
            "INSERT INTO " + TABLE + " (new_key_fp, table_name, column_name, pk, value_sha256) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(fp, u.table, u.column, pk, digest) for u in found for pk, digest in zip(u.ids, u.digests, strict=True)])


def left(conn: psycopg.Connection, new_key: Secret, spec: TableSpec) -> dict[str, tuple[str, ...]]:
    """column -> row ids recorded as left for this table and rotation (empty when none)."""
    ensure(conn)
    rows = conn.execute("SELECT column_name, array_agg(pk ORDER BY pk) FROM " + TABLE + " WHERE new_key_fp = %s AND "
                        "table_name = %s GROUP BY column_name", (fingerprint(new_key), spec.table)).fetchall()
    conn.commit()
    return {str(c): tuple(str(x) for x in ids) for c, ids in rows}


def left_values(conn: psycopg.Connection, new_key: Secret, spec: TableSpec) -> dict[tuple[str, str], bytes]:
    """(row id, column) -> the SHA-256 of the bytes recorded as left for this table and rotation."""
    ensure(conn)
    rows = conn.execute("SELECT pk, column_name, value_sha256 FROM " + TABLE + " WHERE new_key_fp = %s AND "
                        "table_name = %s", (fingerprint(new_key), spec.table)).fetchall()
    conn.commit()
    return {(str(pk), str(c)): bytes(d) for pk, c, d in rows}


def still_left(left: dict[tuple[str, str], bytes], pk: object, column: str, value: bytes) -> bool:
    """This value is one recorded as left, its bytes unchanged (Fernet values, compared in this process)."""
    recorded = left.get((str(pk), column))
    return recorded is not None and hashlib.sha256(value).digest() == recorded


def find_fernet(conn: psycopg.Connection, spec: TableSpec, old_key: Secret, new_key: Secret,
                opens: Callable[[Secret, bytes], bool], tokens: Iterable[tuple[object, str, bytes]]) -> list[Unopened]:
    """The Fernet values (row id, column, token) that open with neither key, as the app derives its Fernet keys."""
    found: dict[str, list[tuple[str, bytes]]] = {}
    for pk, column, token in tokens:
        if not opens(old_key, token) and not opens(new_key, token):
            found.setdefault(column, []).append((str(pk), hashlib.sha256(token).digest()))
    return [Unopened(spec.table, spec.pk, column, tuple(k for k, _ in rows), tuple(d for _, d in rows))
            for column, rows in found.items()]


def left_lines(conn: psycopg.Connection, new_key: Secret, specs: Iterable[TableSpec]) -> list[str]:
    """`table.column: n values left as found (pk=...)` for every column with values left by this rotation."""
    lines = []
    for spec in specs:
        for column, ids in sorted(left(conn, new_key, spec).items()):
            lines.append(Unopened(spec.table, spec.pk, column, ids, ()).line().replace(
                "no key opens", "no key opens, left byte for byte as found"))
    return lines


def is_left(spec: TableSpec, column: str, new_key_fp: str, alias: str = "t") -> sql.Composed:
    """SQL: the value of `alias`.column is one recorded as left for this rotation, its bytes unchanged."""
    return sql.SQL("EXISTS (SELECT 1 FROM rotation_runbook.unreadable_value u WHERE u.new_key_fp = {fp} AND "
                   "u.table_name = {table} AND u.column_name = {column} AND u.pk = {a}.{pk}::text AND "
                   "u.value_sha256 = sha256({a}.{c}))").format(
        fp=sql.Literal(new_key_fp), table=sql.Literal(spec.table), column=sql.Literal(column),
        a=sql.Identifier(alias), pk=sql.Identifier(spec.pk), c=sql.Identifier(column))


def left_fp(conn: psycopg.Connection, new_key: Secret, spec: TableSpec) -> str | None:
    """The new key's fingerprint when this table has values left by the rotation to it (the statements then leave
    them), else None (the statements stay as they are without any)."""
    return fingerprint(new_key) if left(conn, new_key, spec) else None
