"""Connections for work that handles keys. A key never travels as a statement parameter or in SQL text.

Keys reach the server through `COPY pg_temp.rotation_key FROM STDIN` into a session temp table, and statements name
them with `key_ref("old")`, a subquery on that table. PostgreSQL's statement log (`log_statement`,
`log_min_duration_statement`, `log_min_duration_sample`, `log_min_error_statement`, auto_explain) records a COPY's
command text but never its rows, and parameter logging (`log_parameter_max_length[_on_error]`) has no key to show.
Temp tables are private to the session, not WAL-logged, and gone when it ends. A `Secret` given as a bound parameter
is refused before anything is sent, so no code path can fall back to parameters by accident.
"""

from __future__ import annotations

import queue
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import TypeVar

import psycopg
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import Format

from rotation.core.errors import RotationError
from rotation.core.secret import Secret

T = TypeVar("T")
R = TypeVar("R")

KEY_TABLE = "pg_temp.rotation_key"
APPLICATION_NAME = "rotation-runbook"
_KEY_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")


# A database password wherever a DSN or its pieces are written down: URL userinfo (postgresql://u:pw@h/db),
# key=value conninfo (`host=h password=pw` or `password='p w'`), the environment (PGPASSWORD=pw) and a mapping's repr
# ({'password': 'pw'}, as psycopg's connection parameters print in a traceback).
MASK = "***"
_DSN_PASSWORDS = (
    re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)(?P<value>[^@\s/'\"]+)(?P<tail>@)"),
    re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s'\",;&]+)(?P<tail>)", re.IGNORECASE),
    re.compile(r"(?P<head>\bPGPASSWORD\s*[=:]\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s'\",;]+)(?P<tail>)"),
    re.compile(r"(?P<head>(?P<q>['\"])password(?P=q)\s*:\s*)(?P<value>'[^']*'|\"[^\"]*\")(?P<tail>)", re.IGNORECASE),
)


def mask_dsn_passwords(text: str) -> str:
    """The text with every database password a DSN form can carry replaced by ***: evidence, recorded command lines
    and reprs show the user, host and database, never the password, even when nobody registered it as a secret."""
    for pattern in _DSN_PASSWORDS:
        text = pattern.sub(lambda m: m["head"] + MASK + m["tail"], text)
    return text


def dsn_password(dsn: str | None) -> str | None:
    """The password a DSN (URL or key=value) carries, if any: registered with the leak scan, never shown."""
    if not dsn:
        return None
    try:
        found = conninfo_to_dict(str(dsn)).get("password")
    except psycopg.Error:  # not a DSN libpq can parse: nothing to connect with, so nothing to find
        return None
    return str(found) if found else None


class Dsn(str):
    """A DSN that shows no password in its repr: a traceback's arguments, a dataclass's repr, an assertion operand.
    Everything else (psycopg, libpq, a command line built with an f-string) gets the string itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_dsn_passwords(str.__str__(self)))


class KeyAsParameterError(RotationError, TypeError):
    """A Secret was given as a statement parameter: it would be logged by servers that log parameters."""


class SecretDumper(Dumper):
    """Refuses to send a Secret as a bound parameter (servers log parameters under common settings)."""

    format = Format.TEXT

    def dump(self, obj: Secret) -> bytes:
        raise KeyAsParameterError(
            f"{obj!r} given as a statement parameter: keys travel only through the session's key table "
            "(rotation.core.database.connect(..., keys=...) and key_ref(name)), never as parameters")


class DatabaseUnreachable(RotationError, psycopg.OperationalError):
    """The database did not accept the connection (refused, unknown host, authentication, no such database, shutting
    down). A psycopg.OperationalError still (code that waits for a restarting database catches it as before), and
    one of the library's errors: its message (libpq's words, the fix) is the report, with no traceback."""

    def __init__(self, said: str) -> None:
        super().__init__(f"the database does not answer ({said}): {UNREACHABLE_FIX}")
        self.said = said


UNREACHABLE_FIX = ("check --dsn (host, port, database, role; the password from ROTATION_DSN or ~/.pgpass) and that the "
                   "server accepts connections from this host")


def libpq_said(error: psycopg.Error) -> str:
    """The first line of libpq's message: it names host, port, role and database, never the password."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def connect(dsn: str, *, autocommit: bool = False, application_name: str = APPLICATION_NAME,
            keys: Mapping[str, Secret] | None = None) -> psycopg.Connection:
    """Open a connection, switch parameter logging off where the role may, and load `keys` into its key table."""
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name=application_name)
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(libpq_said(exc)) from None
    conn.adapters.register_dumper(Secret, SecretDumper)
    try:
        protect_parameters(conn)
        if keys:
            load_keys(conn, keys)
    except BaseException:
        conn.close()
        raise
    return conn


def on_connections(dsn: str, keys: Mapping[str, Secret], workers: int, tasks: Sequence[T],
                   run: Callable[[psycopg.Connection, T], R]) -> list[R]:
    """Run each task on one of `workers` connections of its own (keys loaded), in parallel; results in task order.
    For read-only checks PostgreSQL will not parallelise itself: pgcrypto's errors can only be caught in a function
    with an exception block, and such a function is parallel unsafe."""
    results: dict[int, R] = {}
    pending: queue.SimpleQueue[tuple[int, T]] = queue.SimpleQueue()
    for item in enumerate(tasks):
        pending.put(item)

    def worker() -> None:
        with connect(dsn, keys=keys) as conn:
            while True:
                try:
                    i, task = pending.get_nowait()
                except queue.Empty:
                    return
                results[i] = run(conn, task)
                conn.rollback()

    connections = max(1, min(workers, len(tasks)))
    with ThreadPoolExecutor(max_workers=connections) as pool:
        for future in [pool.submit(worker) for _ in range(connections)]:
            future.result()
    return [results[i] for i in range(len(tasks))]


def protect_parameters(conn: psycopg.Connection) -> bool:
    """Defence in depth: `log_parameter_max_length[_on_error] = 0` for the session where the role may set them (the
    first is superuser-only unless granted). Returns whether both were set. No key depends on it: keys are never
    parameters. The privilege is read from the catalog first: a refused SET writes an ERROR line to the server log,
    which log monitoring pages on."""
    conn.execute("SET log_parameter_max_length_on_error = 0")
    protected = may_set(conn, "log_parameter_max_length")
    if protected:
        conn.execute("SET log_parameter_max_length = 0")
    if not conn.autocommit:
        conn.commit()
    return protected


# Whether the session's role may SET a parameter, from the catalog alone: `user` parameters anyone may; `superuser`
# ones a superuser, or (PostgreSQL 15+) a role granted SET ON PARAMETER; the other contexts cannot be SET at all.
MAY_SET = ("SELECT s.context = 'user' OR (s.context = 'superuser' AND (r.rolsuper OR {granted})) "
           "FROM pg_settings s JOIN pg_roles r ON r.rolname = current_user WHERE s.name = %s")
PARAMETER_PRIVILEGES = 150000  # has_parameter_privilege and GRANT SET ON PARAMETER exist from PostgreSQL 15


def may_set(conn: psycopg.Connection, parameter: str) -> bool:
    """Whether this session may SET `parameter` (pg_settings.context, rolsuper, has_parameter_privilege), learned
    without trying it."""
    granted = ("has_parameter_privilege(current_user, s.name, 'SET')"
               if conn.info.server_version >= PARAMETER_PRIVILEGES else "false")
    row = conn.execute(MAY_SET.format(granted=granted), (parameter,)).fetchone()
    return bool(row and row[0])


def key_ref(name: str) -> str:
    """SQL text naming a key loaded with load_keys: a scalar subquery, evaluated once per statement, that fails
    ("key ... is not loaded") rather than yield NULL, which pgcrypto's STRICT functions would turn into "opens
    nothing"."""
    if not _KEY_NAME.fullmatch(name):
        raise ValueError(f"not a key name: {name!r}")
    return f"(SELECT pg_temp.rotation_key('{name}'))"


# The rotation's two keys as SQL text: every statement that moves a value from one key to the other names them
# so, after connect(dsn, keys={"old": ..., "new": ...}) loaded them.
OLD_KEY, NEW_KEY = key_ref("old"), key_ref("new")

def load_keys(conn: psycopg.Connection, keys: Mapping[str, Secret]) -> None:
    """Put the keys into the session's temp table with COPY FROM STDIN (binary: an error context names no value).
    Loading a name again replaces its key. Commits, unless the connection is in autocommit mode."""
    for name in keys:
        key_ref(name)  # validates the name before anything is sent
    conn.execute(KEY_TABLE_DDL)
    conn.execute(f"DELETE FROM {KEY_TABLE} WHERE name = ANY(%s)", (list(keys),))
    with conn.cursor().copy(f"COPY {KEY_TABLE} (name, value) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text"])
        for name, key in keys.items():
            copy.write_row((name, key.reveal()))
    if not conn.autocommit:
        conn.commit()


KEY_TABLE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS rotation_key (name text PRIMARY KEY, value text NOT NULL);
CREATE OR REPLACE FUNCTION pg_temp.rotation_key(key_name text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE found text;
BEGIN
    SELECT value INTO found FROM pg_temp.rotation_key WHERE name = key_name;
    IF found IS NULL THEN
        RAISE EXCEPTION 'key % is not loaded in this session', key_name;
    END IF;
    RETURN found;
END $$;
"""

RUNBOOK_SCHEMA = "V100__rotation_runbook.sql"


# The newest objects of V100 (and the absence of the one it replaces): when they are as V100 leaves them, the schema
# is up to date and nothing is executed (a role that may use the schema but not CREATE in the database can still
# rotate). Read from the catalog by name: to_regclass would fail (and log an ERROR) for a role without USAGE on it.
RUNBOOK_SCHEMA_CURRENT = """
SELECT count(*) FILTER (WHERE kind = 'f' AND name = 'try_dearmor') = 1
   AND count(*) FILTER (WHERE kind = 'r' AND name IN ('row_digest', 'run_lock', 'staged_job', 'unreadable_value')) = 4
   AND count(*) FILTER (WHERE kind = 'r' AND name = 'plaintext_digest') = 0
FROM (SELECT 'r' AS kind, c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'rotation_runbook' AND c.relkind = 'r'
      UNION ALL
      SELECT 'f', p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'rotation_runbook' AND p.proname = 'try_dearmor') AS objects
"""


def apply_runbook_schema(conn: psycopg.Connection) -> None:
    """Our own objects in schema rotation_runbook (jobs, checkpoints, digests): idempotent, safe on live."""
    current = conn.execute(RUNBOOK_SCHEMA_CURRENT).fetchone()
    if current and current[0]:
        return
    conn.execute(resources.files("rotation.core").joinpath(RUNBOOK_SCHEMA).read_text())
