"""The DB-key rotation's population figures as an auditor re-performs them: for each figure a psql script of standard
PostgreSQL and pgcrypto (`pgp_sym_decrypt_bytea`, `digest`, `hmac`, `decrypt_iv`), never the suite's own helpers,
plus a key-free census of the table taken when the figure is recorded, so the report can reconcile rows x columns =
non-NULL + NULL.

How the key gets in, and why this way: the script reads it with psql's `\\copy new_key FROM 'new_key.txt'` (a file
holding the key on one line, in the folder psql runs in). psql sends that as `COPY new_key FROM STDIN` plus COPY data,
so the key is in no statement's text: a server with `log_statement = 'all'`, `log_min_error_statement` or
`pg_stat_activity` shows the statement, never the key. (A psql variable, `-v new_key=...` with `:'new_key'`, is
substituted into the statement text before it is sent, so such a server would log the key; `SET log_statement` is
superuser-only, so an auditor cannot turn that off for their session.)

A wrong key gives a visibly different answer:
- every query first compares the loaded key's fingerprint with the recorded one and stops with "the key in
  new_key.txt is sha256:..., not the recorded sha256:..." otherwise: without that, a wrong "old key" would open no
  value either, and "the old key opens none" would pass with any key;
- pgcrypto values under the new key: `count(pgp_sym_decrypt_bytea(v, key))` over every value, which ends with pgcrypto's
  own "Wrong key or corrupt data" at the first value the key does not open;
- the old key: each value is tried in `pg_temp.opens`, defined in the setup the report prints, which catches only
  pgcrypto's errors (SQLSTATE 39000: "Wrong key or corrupt data", "Corrupt ascii-armor") and lets any other through;
- Fernet values (the app encrypts them itself, with the Fernet key `urlsafe_b64encode(sha256(DB_ENCRYPTION_KEY))`):
  the token's HMAC-SHA256 is recomputed with `hmac` and its AES-128-CBC body opened with `decrypt_iv`: a wrong key
  opens 0.

Run one as the report shows it: `psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -v new_key_fingerprint=sha256:...
-f setup.sql -f query.sql`, from the folder holding the key files (mode 600; delete them afterwards). The setup
(functions in the session's temporary schema, shared by the queries) and each query change nothing but the session's
temporary objects. Neither a key nor its fingerprint is in a query's text: the same figure of several runs (or
scenarios) is one query, printed once.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from rotation.core.database import connect
from rotation.core.proof import PopulationQuery
from rotation.core.secret import Secret
from rotation.db_key import sweep
from rotation.db_key.reencrypt import TableSpec

KEY_FILE = "{var}.txt"
FINGERPRINT_VARIABLE = "{var}_fingerprint"

# Run once per psql session before the queries: the functions they share. `recorded_key` refuses a key whose
# fingerprint is not the one recorded; `opens` tries one value (a PGP message, or its ASCII armor), where only
# pgcrypto's own errors (SQLSTATE 39000: "Wrong key or corrupt data", "Corrupt ascii-armor") mean "does not open" and
# any other error stops the query.
SETUP = r"""CREATE OR REPLACE FUNCTION pg_temp.recorded_key(loaded text, file text, recorded text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  found text := 'sha256:' || left(encode(digest(loaded, 'sha256'), 'hex'), 16);
BEGIN
  IF found IS DISTINCT FROM recorded THEN
    RAISE EXCEPTION 'the key in % is %, not the recorded %', file, found, recorded;
  END IF;
  RETURN loaded;
END $$;
CREATE OR REPLACE FUNCTION pg_temp.opens(value bytea, key text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgp_sym_decrypt_bytea(value, key);
  RETURN true;
EXCEPTION WHEN external_routine_invocation_exception THEN
  RETURN false;
END $$;
CREATE OR REPLACE FUNCTION pg_temp.opens(armored text, key text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgp_sym_decrypt_bytea(dearmor(armored), key);
  RETURN true;
EXCEPTION WHEN external_routine_invocation_exception THEN
  RETURN false;
END $$;"""

# The key, loaded without reaching a statement's text, and refused unless it is the recorded one.
LOAD_KEY = r"""DROP TABLE IF EXISTS pg_temp.{var};
CREATE TEMP TABLE {var} (key text NOT NULL);
\copy {var} FROM '{file}'
WITH k AS MATERIALIZED (SELECT pg_temp.recorded_key(key, '{file}', :'{fingerprint}') AS key FROM {var}),
"""

PGP_OPENS = """cells AS (
{cells}
)
SELECT count(pgp_sym_decrypt_bytea(v, k.key)) AS opened, count(v) AS total
FROM cells CROSS JOIN k;"""

PGP_NOT_OPENED = """cells AS (
{cells}
)
SELECT count(v) FILTER (WHERE NOT pg_temp.opens(v, k.key)) AS not_opened, count(v) AS total
FROM cells CROSS JOIN k;"""

# A Fernet token: 0x80, 8-byte timestamp, 16-byte IV, AES-128-CBC ciphertext, 32-byte HMAC-SHA256 of all before it;
# the signing key is the first 16 bytes of sha256(DB_ENCRYPTION_KEY), the encryption key the last 16. `t` is the
# token's bytes, `fk` the 32-byte key.
FERNET_CHECK = """CASE
         WHEN get_byte(t, 0) <> 128 OR length(t) < 73 THEN false
         WHEN hmac(substr(t, 1, length(t) - 32), substr(fk, 1, 16), 'sha256') <> substr(t, length(t) - 31) THEN false
         ELSE decrypt_iv(substr(t, 26, length(t) - 57), substr(fk, 17, 16), substr(t, 10, 16), 'aes-cbc') IS NOT NULL
       END"""
FERNET_KEY = "fk AS (SELECT digest(key, 'sha256') AS fk FROM k),\n"
FERNET_OPENS = FERNET_KEY + """cells AS (
{cells}
),
tokens AS (SELECT decode(translate(convert_from(v, 'UTF8'), '-_', '+/'), 'base64') AS t FROM cells WHERE v IS NOT NULL)
SELECT count(*) FILTER (WHERE """ + FERNET_CHECK.replace("{", "{{").replace("}", "}}") + """) AS opened,
       count(*) AS total
FROM tokens CROSS JOIN fk;"""

CENSUS = "SELECT count(*), {non_null} FROM {table}"
OPENED = {"verified": "opened", "total": "total"}
NOT_OPENED = {"verified": "not_opened", "total": "total"}
NEW_KEY = "the new DB_ENCRYPTION_KEY"
OLD_KEY = "the old DB_ENCRYPTION_KEY, from its custodian or escrow"


def _name(identifier: str) -> str:
    return sql.Identifier(identifier).as_string(None)


def _cells(specs: Sequence[TableSpec]) -> str:
    """Every value of the specs' columns as one column `v`, NULLs included (count(v) skips them)."""
    return "\nUNION ALL\n".join(
        f"  SELECT cell.v FROM {_name(s.table)} AS t CROSS JOIN LATERAL (VALUES "
        + ", ".join(f"(t.{_name(c)})" for c in s.columns) + ") AS cell(v)" for s in specs)


def keyed(var: str, key: Secret, what: str, select: str, *, subject: str, reads: str, returns: dict[str, str],
          census: dict[str, int] | None = None, note: str | None = None) -> PopulationQuery:
    """The query: load and check the key, then the SELECT (the rest of the WITH the key opens). Neither the key nor
    its fingerprint is in the text (the fingerprint is a psql variable), so the same figure of several runs reads
    the same and the report prints it once."""
    file, fingerprint = KEY_FILE.format(var=var), FINGERPRINT_VARIABLE.format(var=var)
    return PopulationQuery(
        subject=subject, sql=LOAD_KEY.format(var=var, file=file, fingerprint=fingerprint) + select, setup=SETUP,
        key_files={file: f"{what} ({key.fingerprint})"}, variables={fingerprint: key.fingerprint},
        census=census or {}, reads=reads, returns=returns, note=note)


def census(dsn: str, spec: TableSpec) -> dict[str, int]:
    """rows, columns, non-NULL and NULL cells of the spec's columns: no key needed."""
    non_null = " + ".join(f"count({_name(c)})" for c in spec.columns)
    with connect(dsn) as conn:
        row = conn.execute(CENSUS.format(non_null=non_null, table=_name(spec.table))).fetchone() or (0, 0)
    rows, values = int(row[0]), int(row[1])
    columns = len(spec.columns)
    return {"rows": rows, "columns": columns, "non_null": values, "nulls": rows * columns - values}


def _subject(specs: Sequence[TableSpec]) -> str:
    return ", ".join(s.table for s in specs)


def _census(dsn: str, specs: Sequence[TableSpec]) -> dict[str, int]:
    return census(dsn, specs[0]) if len(specs) == 1 else {}


def new_key(dsn: str, spec: TableSpec | Sequence[TableSpec], key: Secret) -> PopulationQuery:
    """pgcrypto values of the spec's (or specs') columns that open with the new key (`opened`) of all non-NULL
    values (`total`); a wrong key stops the query with pgcrypto's "Wrong key or corrupt data"."""
    specs = (spec,) if isinstance(spec, TableSpec) else tuple(spec)
    return keyed("new_key", key, NEW_KEY, PGP_OPENS.format(cells=_cells(specs)), subject=_subject(specs),
                 census=_census(dsn, specs), reads="opens with the new key: {verified:,} of {total:,}", returns=OPENED)


def old_key(dsn: str, spec: TableSpec, key: Secret) -> PopulationQuery:
    """Values the old key does not open (`not_opened`) of all non-NULL values (`total`)."""
    return keyed("old_key", key, OLD_KEY, PGP_NOT_OPENED.format(cells=_cells((spec,))), subject=spec.table,
                 census=census(dsn, spec), reads="opens with the old key: {missing:,}", returns=NOT_OPENED)


def fernet_new_key(spec: TableSpec, key: Secret) -> PopulationQuery:
    """Fernet values (the app's own encryption) of the spec's columns whose HMAC checks and body opens under the
    Fernet key the app derives from the new key (`opened`) of all non-NULL values (`total`)."""
    return keyed("new_key", key, NEW_KEY, FERNET_OPENS.format(cells=_cells((spec,))), subject=spec.table,
                 reads="opens with the new key (Fernet): {verified:,} of {total:,}", returns=OPENED)


def under_new_key(dsn: str, spec: TableSpec, kind: str, key: Secret) -> PopulationQuery:
    """The new-key query for a table of either kind ("pgcrypto" or "fernet")."""
    return new_key(dsn, spec, key) if kind == "pgcrypto" else fernet_new_key(spec, key)


# --- the completeness sweep's figure: every column where it found encrypted-looking values -------------------------
SWEEP_TOTAL = """per_column AS (
{columns}
)
SELECT sum(not_opened)::bigint AS not_opened, sum(total)::bigint AS total FROM per_column;"""
PGP_COLUMN = ("  SELECT {label} AS value_of, count(*) FILTER (WHERE NOT pg_temp.opens(x.{c}, k.key)) AS not_opened, "
              "count(*) AS total\n  FROM {table} x CROSS JOIN k WHERE {is_pgp}")
FERNET_COLUMN = ("  SELECT {label}, count(*) FILTER (WHERE NOT " + FERNET_CHECK.replace("\n", "\n  ") + "), "
                 "count(*)\n  FROM (SELECT decode(translate({text}, '-_', '+/'), 'base64') AS t FROM {table} x "
                 "WHERE {is_fernet}) tokens CROSS JOIN fk")


def _sweep_column(table: str, column: str, kind: str, bytea: bool) -> str:
    schema, name = table.split(".", 1)
    ident, c = f"{_name(schema)}.{_name(name)}", _name(column)
    label = sql.Literal(f"{table}.{column}").as_string(None)
    if kind == "PGP":
        first = ", ".join(sql.Literal(b).as_string(None) for b in sweep.PGP_FIRST_BYTES)
        is_pgp = (f"substr(x.{c}, 1, 1) IN ({first})" if bytea
                  else f"left(x.{c}::text, 27) = '-----BEGIN PGP MESSAGE-----'")
        value = c if bytea else f"{c}::text"
        return PGP_COLUMN.format(label=label, c=value, table=ident, is_pgp=is_pgp)
    prefix = sql.Literal(sweep.FERNET_PREFIX).as_string(None)
    pattern = sql.Literal(sweep.FERNET_PATTERN).as_string(None)
    if bytea:  # as the sweep tells a token: no conversion of a value that is not one (it may not be UTF-8)
        is_fernet = (f"substr(x.{c}, 1, 6) = {sql.Literal(sweep.FERNET_PREFIX.encode()).as_string(None)} "
                     f"AND encode(x.{c}, 'escape') ~ {pattern}")
        text = f"convert_from(x.{c}, 'UTF8')"
    else:
        is_fernet, text = f"left(x.{c}::text, 6) = {prefix} AND x.{c}::text ~ {pattern}", f"x.{c}::text"
    return FERNET_COLUMN.format(label=label, text=text, table=ident, is_fernet=is_fernet)


def swept(result: sweep.SweepResult, key: Secret) -> PopulationQuery:
    """The sweep's figure: encrypted-looking values (PGP messages, their armor, Fernet tokens) the old key does not
    open (`not_opened`) of all of them (`total`), over every column where the sweep found any."""
    types = {(t.name, c): kind for t in result.tables for c, kind in t.columns}
    columns = [_sweep_column(h.table, h.column, h.kind, types.get((h.table, h.column)) == "bytea")
               for h in result.hits]
    body = FERNET_KEY + SWEEP_TOTAL.format(columns="\n  UNION ALL\n".join(columns))
    return keyed(
        "old_key", key, OLD_KEY, body, subject="every column of the app's schemas holding encrypted-looking values",
        reads="encrypted-looking values the old key opens: {missing:,}", returns=NOT_OPENED,
        note="the sweep's scope is every bytea and text column of every table of the app's schemas; the query "
             "covers the columns where it found encrypted-looking values (the evidence lists them)")
