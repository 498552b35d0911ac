"""Everything the DB key rotation can check before its first change, in one place: `preflight` returns typed findings
(rotation.core.preflight.Finding), and the rotation's first step records them and refuses, naming each finding that
does not hold and its fix, before staging writes a row, the app is stopped or .env changes.

Beyond the checks every procedure makes (signing key, reports folder, .env, app settings, TEMP, pgcrypto EXECUTE):

    the suite's schema   absent, outdated or current, and whether the role can create, upgrade or use it
                         (rotation.core.runbook_schema)
    triggers             per inventory table, how its enabled triggers will be kept from firing: replica mode (the
                         role may SET session_replication_role: superuser or GRANT SET ON PARAMETER, read with
                         has_parameter_privilege) or ownership (ALTER TABLE ... DISABLE TRIGGER); neither is refused
                         naming the GRANT (rotation.db_key.triggers)
    inventory tables     SELECT and UPDATE on each, SELECT and INSERT on the rotation log
    the sweep            SELECT on every table of the app's schemas (the completeness sweep reads them all once the app
                         is back; a table it cannot read would fail the run after the change)
    the proof            how the app will be proven on the new key (a probe, or its process start)

All from the catalog: nothing here writes, and nothing fails on the server.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from rotation.core import app_proof, runbook_schema
from rotation.core.config import Config
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.preflight import (
    Finding,
    Preflight,
    RunContext,
    database_privileges,
    database_unreachable,
    files_and_settings,
)
from rotation.db_key import sweep
from rotation.db_key.reencrypt import TableSpec
from rotation.db_key.triggers import TriggerRefusal, guard_for

SOURCE = ("read-only, before any change: the signing key loaded and tried (sign + verify a probe); a probe file "
          "created, written, fsynced and removed in the reports folder, and its free space; .env (its real path) "
          "opened and access(2) for writing; the catalog for the role's privileges: has_database_privilege (CREATE, "
          "TEMP), has_schema_privilege, has_table_privilege, has_sequence_privilege, has_function_privilege "
          "(pgcrypto, the suite's functions), pg_settings.context with rolsuper and has_parameter_privilege "
          "(session_replication_role), pg_trigger and each table's owner (pg_has_role)")
LOG_TABLE = "security_credential_rotations"


def preflight(deployment: Deployment, context: RunContext, specs: Sequence[TableSpec],
              fernet_specs: Sequence[TableSpec]) -> tuple[Preflight, runbook_schema.SchemaCheck | None]:
    """Every finding, and the schema's state (the step that creates or upgrades it acts on it; None when the
    database did not answer, which is then a finding that refuses the run)."""
    findings = files_and_settings(context, deployment.env_file, deployment.app)
    findings.append(_proof(deployment))
    try:
        with connect(deployment.dsn) as conn:
            findings += database_privileges(conn)
            schema = runbook_schema.check(conn)
            findings.append(Finding(f"the suite's schema {runbook_schema.SCHEMA}", schema.ok,
                                    f"{schema.state} ({schema.action} as role {schema.role})" if schema.ok
                                    else schema.refusal(), " ".join(schema.fixes)))
            tables = [s.table for s in (*specs, *fernet_specs)]
            findings += [_triggers(conn, t) for t in tables]
            findings += _table_privileges(conn, deployment.config, tables)
            findings.append(_sweep_scope(conn))
    except psycopg.OperationalError as exc:
        return Preflight((*findings, database_unreachable(exc))), None
    return Preflight(tuple(findings)), schema


def _proof(deployment: Deployment) -> Finding:
    method = app_proof.proof_method(deployment.app)
    return Finding("proof of the app's key", method is not None, method or "none configured",
                   app_proof.NO_PROOF)


def _triggers(conn: psycopg.Connection, table: str) -> Finding:
    try:
        guard = guard_for(conn, table)
    except TriggerRefusal as exc:
        return Finding(f"triggers of {table}", False, str(exc).split(". Nothing was written.")[0],
                       str(exc).split("Grant one of: ", 1)[-1])
    return Finding(f"triggers of {table}", True, guard.describe())


TABLE_PRIVILEGES = """
SELECT t, to_regclass(t) IS NOT NULL,
       COALESCE(has_table_privilege(to_regclass(t), 'SELECT'), false),
       COALESCE(has_table_privilege(to_regclass(t), %(write)s), false)
FROM unnest(%(tables)s::text[]) AS t
"""


def _table_privileges(conn: psycopg.Connection, config: Config, tables: list[str]) -> list[Finding]:
    """SELECT and UPDATE on the inventory's tables; SELECT and INSERT on the rotation log."""
    role = conn.execute("SELECT current_user::text").fetchone()
    ident = sql.Identifier(str(role[0] if role else "")).as_string(None)
    findings = []
    for write, names in (("UPDATE", tables), ("INSERT", [LOG_TABLE])):
        for table, exists, select, writes in conn.execute(TABLE_PRIVILEGES, {"write": write, "tables": names}):
            missing = [p for p, held in (("SELECT", select), (write, writes)) if not held]
            found = ("does not exist" if not exists else f"SELECT, {write}" if not missing
                     else f"the role lacks {', '.join(missing)}")
            findings.append(Finding(f"privileges on {table}", bool(exists) and not missing, found,
                                    f"GRANT {', '.join(missing)} ON {sql.Identifier(table).as_string(None)} TO "
                                    f"{ident};" if exists else f"{table} must exist (the app's migrations)"))
    conn.commit()
    return findings


def _sweep_scope(conn: psycopg.Connection) -> Finding:
    unreadable = [t.name for t in sweep.scope(conn) if not t.readable]
    role = conn.execute("SELECT current_user::text").fetchone()
    conn.commit()
    ident = sql.Identifier(str(role[0] if role else "")).as_string(None)
    return Finding("tables the completeness sweep reads", not unreadable,
                   "every table of the app's schemas is readable" if not unreadable
                   else f"the role cannot read {', '.join(unreadable)}",
                   " ".join(f"GRANT SELECT ON {t} TO {ident};" for t in unreadable))
