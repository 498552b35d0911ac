"""The DB-key rotation's population figures as an auditor re-runs them: one read-only SELECT per figure, for psql,
with the key as a psql variable (never inlined in the text), plus a key-free census of the table taken when the
figure is recorded, so the report can reconcile rows x columns = non-NULL + NULL.

Run one as the report shows it, e.g.

    psql "$DATABASE_URL" -v new_key="$NEW_KEY" -f population.sql

`rotation_runbook.try_decrypt` (the suite's schema) is pgp_sym_decrypt that returns NULL instead of raising for a
value the key does not open, so one statement can count. psql substitutes `:'new_key'` into the statement it sends:
run it where statement logging is off (or on a restored copy). Values the app encrypts itself (Fernet) cannot be
counted in psql: psql has no Fernet, and the app derives the Fernet key from DB_ENCRYPTION_KEY (FERNET_NOTE).
"""

from __future__ import annotations

from psycopg import sql

from rotation.core.database import connect
from rotation.core.proof import PopulationQuery
from rotation.core.secret import Secret
from rotation.db_key.reencrypt import TableSpec

FERNET_NOTE = ("values the app encrypts itself with Fernet (a key derived from DB_ENCRYPTION_KEY) cannot be counted in "
               "psql, which has no Fernet: this figure comes from the rotation's own decryption in Python")

OPENS = """SELECT count(v) FILTER (WHERE rotation_runbook.try_decrypt(v, :'{var}') IS {test}) AS verified,
       count(v) AS total
FROM {table} AS t
CROSS JOIN LATERAL (VALUES {values}) AS cell(v);"""

CENSUS = "SELECT count(*), {non_null} FROM {table}"


def _name(identifier: str) -> str:
    return sql.Identifier(identifier).as_string(None)


def _text(spec: TableSpec, var: str, test: str) -> str:
    values = ", ".join(f"(t.{_name(c)})" for c in spec.columns)
    return OPENS.format(var=var, test=test, table=_name(spec.table), values=values)


def census(dsn: str, spec: TableSpec) -> dict[str, int]:
    """rows, columns, non-NULL and NULL cells of the spec's columns: no key needed."""
    non_null = " + ".join(f"count({_name(c)})" for c in spec.columns)
    with connect(dsn) as conn:
        row = conn.execute(CENSUS.format(non_null=non_null, table=_name(spec.table))).fetchone() or (0, 0)
    rows, values = int(row[0]), int(row[1])
    columns = len(spec.columns)
    return {"rows": rows, "columns": columns, "non_null": values, "nulls": rows * columns - values}


def new_key(dsn: str, spec: TableSpec, key: Secret) -> PopulationQuery:
    """Values of the spec's columns that open with the new key (`verified`) of all non-NULL values (`total`)."""
    return PopulationQuery(
        subject=spec.table, sql=_text(spec, "new_key", "NOT NULL"),
        variables={"new_key": f"the new DB_ENCRYPTION_KEY, now in .env ({key.fingerprint})"},
        census=census(dsn, spec), reads="opens with the new key: {verified:,} of {total:,}")


def old_key(dsn: str, spec: TableSpec, key: Secret) -> PopulationQuery:
    """Values the old key does not open (`verified`) of all non-NULL values (`total`): total - verified open with it."""
    return PopulationQuery(
        subject=spec.table, sql=_text(spec, "old_key", "NULL"),
        variables={"old_key": f"the old DB_ENCRYPTION_KEY, in the .env backup ({key.fingerprint})"},
        census=census(dsn, spec), reads="opens with the old key: {missing:,}")
