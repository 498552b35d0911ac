"""The completeness sweep: after a rotation, no value anywhere in the app's schemas still opens with the old key.

The inventory says where the app keeps encrypted data; the sweep does not trust it. Every bytea and text-like column
(text, varchar, char, and domains over them) of every ordinary table in every schema but the system's and the suite's
own (rotation_runbook) is scanned once per table:

    PGP symmetric messages  bytea starting with a symmetric-key session key packet (0xC3 new format, 0x8C-0x8F old)
                            or text armored as "-----BEGIN PGP MESSAGE-----": tried with pgp_sym_decrypt_bytea and the
                            old key, in the database
    Fernet tokens           "gAAAAA" followed by base64url, 100 characters or more (the shortest token): tried with the
                            old key in this process, as the app derives its Fernet key

A hit anywhere fails the check, naming table, column, count and the first row ids. Tables this role may not read are
named, and fail the check too: the sweep cannot vouch for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from rotation.core.database import OLD_KEY as OLD
from rotation.core.database import load_keys, on_connections
from rotation.core.progress import BEAT_S, Meter, ProgressCallback
from rotation.core.secret import Secret
from rotation.db_key.fernet import opens

SUITE_SCHEMA = "rotation_runbook"
TEXT_TYPES = ("bytea", "text", "character varying", "character")
SCOPE = """
SELECT n.nspname, c.relname, a.attname, format_type(COALESCE(NULLIF(ty.typbasetype, 0), a.atttypid), NULL),
       has_table_privilege(c.oid, 'SELECT'),
       (SELECT array_agg(pa.attname::text ORDER BY array_position(i.indkey::int2[], pa.attnum))
          FROM pg_index i JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = ANY(i.indkey)
         WHERE i.indrelid = c.oid AND i.indisprimary)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type ty ON ty.oid = a.atttypid
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(suite)s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND format_type(COALESCE(NULLIF(ty.typbasetype, 0), a.atttypid), NULL) = ANY(%(types)s)
ORDER BY n.nspname, c.relname, a.attnum
"""
PGP_FIRST_BYTES = (b"\xc3", b"\x8c", b"\x8d", b"\x8e", b"\x8f")
FERNET_PREFIX = "gAAAAA"  # version byte 0x80 and the timestamp's high bytes, base64url
FERNET_PATTERN = f"^{FERNET_PREFIX}[A-Za-z0-9_-]{{90,}}={{0,2}}$"  # the shortest token is 100 characters


@dataclass(frozen=True)
class SweptTable:
    schema: str
    table: str
    columns: tuple[tuple[str, str], ...]  # (name, type)
    pk: tuple[str, ...]
    readable: bool

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.table))

    def row_id(self) -> sql.Composable:
        if len(self.pk) == 1:
            return sql.SQL("x.{}::text").format(sql.Identifier(self.pk[0]))
        if self.pk:
            return sql.SQL("row({})::text").format(sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(p))
                                                                       for p in self.pk))
        return sql.SQL("x.ctid::text")

    def id_name(self) -> str:
        return ",".join(self.pk) if self.pk else "ctid"


@dataclass(frozen=True)
class Hit:
    table: str
    column: str
    kind: str  # "PGP" or "Fernet"
    candidates: int
    opened: int
    ids: tuple[str, ...]
    id_name: str

    def line(self) -> str:
        more = ", ..." if self.opened > len(self.ids) else ""
        return (f"{self.table}.{self.column}: {self.opened:,} {self.kind} value{'s' if self.opened != 1 else ''} "
                f"open with the old key ({self.id_name}={', '.join(self.ids)}{more})")


@dataclass(frozen=True)
class SweepResult:
    tables: tuple[SweptTable, ...]
    hits: tuple[Hit, ...]                   # every column with candidates, opened or not
    unreadable: tuple[str, ...] = field(default=())

    @property
    def opened(self) -> tuple[Hit, ...]:
        return tuple(h for h in self.hits if h.opened)

    @property
    def candidates(self) -> int:
        return sum(h.candidates for h in self.hits)

    @property
    def columns(self) -> int:
        return sum(len(t.columns) for t in self.tables if t.readable)

    def scope(self) -> list[str]:
        return [f"{t.name}({', '.join(c for c, _ in t.columns)})" for t in self.tables if t.readable]

    def as_evidence(self) -> dict[str, object]:
        return {"tables": sum(t.readable for t in self.tables), "columns": self.columns,
                "encrypted-looking values": self.candidates,
                "per column": {f"{h.table}.{h.column}": {"kind": h.kind, "candidates": h.candidates,
                                                         "open with the old key": h.opened} for h in self.hits},
                "not readable by this role (not swept)": list(self.unreadable), "scope": self.scope()}


def scope(conn: psycopg.Connection) -> tuple[SweptTable, ...]:
    """Every ordinary table of the app's schemas with its bytea / text-like columns, and its primary key."""
    tables: dict[tuple[str, str], SweptTable] = {}
    for schema, table, column, kind, readable, pk in conn.execute(SCOPE, {"suite": SUITE_SCHEMA,
                                                                          "types": list(TEXT_TYPES)}):
        known = tables.get((schema, table))
        columns = (*(known.columns if known else ()), (str(column), str(kind)))
        tables[(schema, table)] = SweptTable(str(schema), str(table), columns, tuple(pk or ()), bool(readable))
    conn.commit()
    return tuple(tables.values())


def _pgp(column: str, kind: str) -> tuple[sql.Composable, sql.Composable]:
    """(is a PGP symmetric message, the message as bytea) for one column."""
    c = sql.SQL("x.{}").format(sql.Identifier(column))
    if kind == "bytea":
        first = sql.SQL(", ").join(sql.Literal(b) for b in PGP_FIRST_BYTES)
        return (sql.SQL("substr({c}, 1, 1) IN ({first})").format(c=c, first=first), c)
    return (sql.SQL("left({c}, 27) = '-----BEGIN PGP MESSAGE-----'").format(c=c),
            sql.SQL("rotation_runbook.try_dearmor({c}::text)").format(c=c))


def _fernet(column: str, kind: str) -> sql.Composable:
    """Is the value a Fernet token? The prefix is compared first: the regular expression then runs on tokens only."""
    c = sql.SQL("x.{}").format(sql.Identifier(column))
    if kind == "bytea":
        return sql.SQL("substr({c}, 1, 6) = {prefix} AND encode({c}, 'escape') ~ {pattern}").format(
            c=c, prefix=sql.Literal(FERNET_PREFIX.encode()), pattern=sql.Literal(FERNET_PATTERN))
    return sql.SQL("left({c}::text, 6) = {prefix} AND {c}::text ~ {pattern}").format(
        c=c, prefix=sql.Literal(FERNET_PREFIX), pattern=sql.Literal(FERNET_PATTERN))


def table_query(table: SweptTable, limit: int = 5, slices: int = 1) -> sql.Composed:
    """One scan of the table (or of one of `slices` disjoint slices of its rows, by a hash of the row id): per column,
    PGP candidates, those the old key opens (with their first ids), Fernet candidates. Each value is classified and
    tried once, in a subquery (OFFSET 0 keeps PostgreSQL from repeating the attempt in each aggregate reading it)."""
    tests: list[sql.Composable] = [sql.SQL("{} AS rid").format(table.row_id())]
    parts: list[sql.Composable] = []
    for i, (column, kind) in enumerate(table.columns):
        is_pgp, message = _pgp(column, kind)
        pgp, old, fernet = (sql.Identifier(f"{x}{i}") for x in ("pgp", "old", "fernet"))
        tests += [sql.SQL("{} AS {}").format(is_pgp, pgp),
                  sql.SQL("{is_pgp} AND rotation_runbook.try_decrypt_bytea({m}, " + OLD + ") IS NOT NULL AS {o}"
                          ).format(is_pgp=is_pgp, m=message, o=old),
                  sql.SQL("{} AS {}").format(_fernet(column, kind), fernet)]
        parts += [sql.SQL("count(*) FILTER (WHERE {})").format(pgp),
                  sql.SQL("count(*) FILTER (WHERE {})").format(old),
                  sql.SQL("(array_agg(rid ORDER BY rid) FILTER (WHERE {o}))[1:{n}]").format(o=old,
                                                                                          n=sql.Literal(limit)),
                  sql.SQL("count(*) FILTER (WHERE {})").format(fernet)]
    where = (sql.SQL(" WHERE mod(hashtext({rid})::bigint + 2147483648, {n}) = %(part)s").format(
        rid=table.row_id(), n=sql.Literal(slices)) if slices > 1 else sql.SQL(""))
    return sql.SQL("SELECT {} FROM (SELECT {} FROM {} x{} OFFSET 0) v").format(
        sql.SQL(", ").join(parts), sql.SQL(", ").join(tests), table.ident(), where)


def fernet_query(table: SweptTable, column: str, kind: str) -> sql.Composed:
    return sql.SQL("SELECT {rid}, x.{c} FROM {t} x WHERE {is_fernet} ORDER BY 1").format(
        rid=table.row_id(), c=sql.Identifier(column), t=table.ident(), is_fernet=_fernet(column, kind))


QUERY_SOURCE = ("per table of the scope, one scan: per bytea / text-like column, count(*) FILTER (WHERE <PGP "
                "symmetric message: bytea first byte 0xC3 or 0x8C-0x8F, or text armored '-----BEGIN PGP MESSAGE-----'"
                ">) and count(*) FILTER (WHERE <that> AND rotation_runbook.try_decrypt_bytea(<value or "
                "dearmor(value)>, (SELECT pg_temp.rotation_key('old'))) IS NOT NULL), the first row ids, and "
                f"count(*) FILTER (WHERE <value> ~ '{FERNET_PATTERN}'); each Fernet candidate then tried in the suite "
                "with Fernet(urlsafe_b64encode(sha256(old key))). Scope: every ordinary table (relkind 'r') of every "
                "schema but pg_catalog, information_schema, pg_toast*, pg_temp_* and rotation_runbook; columns of "
                f"type {', '.join(TEXT_TYPES)} (or a domain over one). The old key is read from the session's key "
                "table, loaded with COPY FROM STDIN.")


def sizes_kb(conn: psycopg.Connection, tables: list[SweptTable]) -> dict[str, int]:
    """Each table's size in kB as the catalog estimates it (pg_class.relpages, kept by VACUUM and ANALYZE), at least
    1: what a scan reads, the measure of the sweep's progress. Read from the catalog, it takes no lock on the tables
    (pg_table_size would wait behind a lock the scan itself must wait for, where the operator sees it waiting)."""
    found = {str(name): max(1, int(kb or 0)) for name, kb in conn.execute(
        "SELECT t, (SELECT c.relpages::bigint * current_setting('block_size')::int / 1024 FROM pg_class c "
        "WHERE c.oid = to_regclass(t)) FROM unnest(%s::text[]) t",
        ([t.ident().as_string(conn) for t in tables],))}
    conn.commit()
    return {t.name: found.get(t.ident().as_string(conn), 1) for t in tables}


def _scan(dsn: str | None, conn: psycopg.Connection, old_key: Secret, tables: list[SweptTable], limit: int,
          workers: int, meter: Meter, kb: dict[str, int]) -> list[tuple[Any, ...]]:
    """Each table's row of table_query: on this connection, or, given the DSN, in `workers` slices per table on as
    many connections, the slices merged."""
    if not dsn or workers <= 1:
        rows = []
        for t in tables:
            rows.append(tuple(conn.execute(table_query(t, limit)).fetchone() or ()))
            meter.add(kb[t.name])
        return rows
    tasks = [(t, part) for t in tables for part in range(workers)]

    def scan(c: psycopg.Connection, task: tuple[SweptTable, int]) -> tuple[Any, ...]:
        row = tuple(c.execute(table_query(task[0], limit, workers), {"part": task[1]}).fetchone() or ())
        meter.add(kb[task[0].name] // workers)
        return row

    slices = on_connections(dsn, {"old": old_key}, workers, tasks, scan)
    return [_merge(slices[n * workers:(n + 1) * workers], limit) for n in range(len(tables))]


def _merge(slices: list[tuple[Any, ...]], limit: int) -> tuple[Any, ...]:
    """table_query's columns come in fours: counts are added; the third of each four (first ids) merged in order."""
    return tuple(sorted(x for s in slices for x in s[i] or ())[:limit] if i % 4 == 2 else sum(s[i] or 0 for s in slices)
                 for i in range(len(slices[0])))


def sweep(conn: psycopg.Connection, old_key: Secret, *, limit: int = 5, dsn: str | None = None,
          workers: int = 1, on_progress: ProgressCallback | None = None) -> SweepResult:
    """Try the old key on every encrypted-looking value of every bytea / text-like column of the app's schemas
    (given the DSN, each table in `workers` slices on parallel connections). `on_progress` hears of each table (or
    slice) scanned, in kB of the tables' size."""
    load_keys(conn, {"old": old_key})
    tables = scope(conn)
    hits: list[Hit] = []
    readable = [t for t in tables if t.readable]
    kb = sizes_kb(conn, readable) if on_progress else {t.name: 1 for t in readable}
    with Meter(sum(kb.values()), on_progress, beat_s=BEAT_S) as meter:
        scanned = _scan(dsn, conn, old_key, readable, limit, workers, meter, kb)
    for table, row in zip(readable, scanned, strict=True):
        for i, (column, kind) in enumerate(table.columns):
            pgp, pgp_old, ids, fernet = row[4 * i:4 * i + 4]
            if pgp:
                hits.append(Hit(table.name, column, "PGP", int(pgp), int(pgp_old),
                                tuple(str(x) for x in ids or ()), table.id_name()))
            if fernet:
                opened = [str(rid) for rid, value in conn.execute(fernet_query(table, column, kind))
                          if opens(old_key, bytes(value) if not isinstance(value, str) else value.encode())]
                hits.append(Hit(table.name, column, "Fernet", int(fernet), len(opened), tuple(opened[:limit]),
                                table.id_name()))
        conn.commit()
    meter.finish(meter.total)
    return SweepResult(tables, tuple(hits), tuple(t.name for t in tables if not t.readable))
