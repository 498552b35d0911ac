"""Connections for work that handles keys: keys travel only as bound parameters; the server is told not to log them."""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import errors
from psycopg.adapt import Dumper
from psycopg.pq import Format

from rotation.core.secret import Secret


class SecretDumper(Dumper):
    """Sends a Secret as a text parameter: the value reaches the server only as a bound parameter."""

    format = Format.TEXT

    def dump(self, obj: Secret) -> bytes:
        return obj.reveal().encode()


class SecretLoggingRiskError(RuntimeError):
    """The server would log bound parameters (and so keys) and this role may not switch that off."""


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "rotation-runbook") -> psycopg.Connection:
    """Open a connection with parameter logging off where the role may set it; refuse when keys would be logged."""
    conn = psycopg.connect(dsn, autocommit=autocommit, application_name=application_name)
    conn.adapters.register_dumper(Secret, SecretDumper)
    try:
        protect_parameters(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def protect_parameters(conn: psycopg.Connection) -> bool:
    """SET log_parameter_max_length = 0 for the session (PG 13+, needs the privilege). Returns whether it was set.

    Without the privilege we go on only when the server does not log statements anyway; otherwise a
    `log_statement=all` server would write `parameters: $1 = '<key>'` into its log.
    """
    conn.execute("SET log_parameter_max_length_on_error = 0")
    try:
        with conn.transaction():
            conn.execute("SET log_parameter_max_length = 0")
    except (errors.InsufficientPrivilege, errors.CantChangeRuntimeParam):
        logged = conn.execute("SHOW log_statement").fetchone()
        if logged and logged[0] in ("all", "mod"):
            raise SecretLoggingRiskError(
                f"this server logs statements (log_statement={logged[0]}) with their parameters and this role may "
                "not SET log_parameter_max_length = 0; ask a DBA to `GRANT SET ON PARAMETER log_parameter_max_length "
                "TO <role>` or to set log_statement = 'ddl' before rotating"
            ) from None
        if not conn.autocommit:
            conn.commit()
        return False
    if not conn.autocommit:
        conn.commit()
    return True


RUNBOOK_SCHEMA = "V100__rotation_runbook.sql"


def apply_runbook_schema(conn: psycopg.Connection) -> None:
    """Our own objects in schema rotation_runbook (jobs, checkpoints, digests): idempotent, safe on live."""
    conn.execute(resources.files("rotation.core").joinpath(RUNBOOK_SCHEMA).read_text())
