"""The suite's own schema, `rotation_runbook` (V100__rotation_runbook.sql), on the app's database.

A production database holds only the app's migrations on day one. The first rotation creates the schema, and a later
release's first run upgrades it, as one explicit, idempotent step before anything reads it, under the role of the DSN
(the app's own role). What the role may do is read from the catalog first (has_database_privilege,
has_schema_privilege, has_table_privilege, has_function_privilege, ownership): a statement refused for want of a
privilege writes an ERROR line to the server log, and the check names the privilege and the GRANT that gives it.

    absent    CREATE SCHEMA ...: needs CREATE on the database (the database owner has it)
    outdated  V100 run again (CREATE ... IF NOT EXISTS, CREATE OR REPLACE): needs CREATE on the database and
              ownership of the schema and of its objects
    current   nothing executed; the run needs USAGE and CREATE on the schema (a staged rotation creates its side
              tables there), SELECT/INSERT/UPDATE/DELETE on its tables, USAGE on its sequences, EXECUTE on its
              functions
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import psycopg
from psycopg import sql

from rotation.core.database import RUNBOOK_SCHEMA, RUNBOOK_SCHEMA_CURRENT, apply_runbook_schema

SCHEMA = "rotation_runbook"
State = Literal["absent", "outdated", "current"]

ROLE = """
SELECT current_user::text, current_database()::text, has_database_privilege(current_database(), 'CREATE'),
       n.oid IS NOT NULL, n.nspowner::regrole::text, COALESCE(pg_has_role(n.nspowner, 'USAGE'), false),
       COALESCE(has_schema_privilege(n.oid, 'USAGE'), false), COALESCE(has_schema_privilege(n.oid, 'CREATE'), false)
FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
"""
# Every table, sequence and function of the schema: whether this role owns it (or is a member of its owner) and
# whether it may use it as a rotation does. has_*_privilege with a list is true when ANY is held: one call each.
OBJECTS = """
SELECT 'table ' || c.relname, pg_has_role(c.relowner, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
       AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s AND c.relkind = 'r'
UNION ALL
SELECT 'sequence ' || c.relname, pg_has_role(c.relowner, 'USAGE'), has_sequence_privilege(c.oid, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s AND c.relkind = 'S'
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, pg_has_role(p.proowner, 'USAGE'), has_function_privilege(p.oid,
       'EXECUTE')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(schema)s
ORDER BY 1
"""
SOURCE = (f"the catalog (has_database_privilege, has_schema_privilege, has_table_privilege, has_sequence_privilege, "
          f"has_function_privilege, pg_has_role on each owner), then {RUNBOOK_SCHEMA} (idempotent: CREATE ... IF NOT "
          "EXISTS, CREATE OR REPLACE) when the schema is absent or outdated; nothing executed when it is current")


@dataclass(frozen=True)
class SchemaCheck:
    """What the schema is and whether the role can create, upgrade or use it; `missing` names each privilege the
    role lacks, `fixes` the statements (run by the database owner or a superuser) that grant it."""

    role: str
    database: str
    state: State
    owner: str | None
    missing: tuple[str, ...] = field(default=())
    fixes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def action(self) -> str:
        return {"absent": "create", "outdated": "upgrade", "current": "none"}[self.state]

    def refusal(self) -> str:
        return (f"the role {self.role} cannot {'use' if self.state == 'current' else self.action} the suite's schema "
                f"{SCHEMA} in database {self.database} ({self.state}): it lacks " + "; ".join(self.missing)
                + ". Fix: " + " ".join(self.fixes))


def check(conn: psycopg.Connection) -> SchemaCheck:
    """The schema's state and this role's privileges on it, from the catalog alone (no statement that can fail)."""
    row = conn.execute(ROLE, {"schema": SCHEMA}).fetchone()
    if row is None:  # cannot happen: one constant row LEFT JOINed
        raise RuntimeError("the catalog query about the role and the schema returned no row")
    role, database, create_db, exists, owner, owns_schema, usage, create = row
    current = bool(conn.execute(RUNBOOK_SCHEMA_CURRENT).fetchone()[0]) if exists else False  # type: ignore[index]
    objects = conn.execute(OBJECTS, {"schema": SCHEMA}).fetchall() if exists else []
    if not conn.autocommit:
        conn.commit()
    state: State = "current" if current else "outdated" if exists else "absent"
    ident, db_ident = _ident(role), _ident(database)
    missing: list[str] = []
    fixes: list[str] = []
    if state != "current" and not create_db:
        missing.append(f"CREATE on database {database} (to {'create' if state == 'absent' else 'upgrade'} the "
                       "schema)")
        fixes.append(f"GRANT CREATE ON DATABASE {db_ident} TO {ident};")
    if state == "outdated":
        foreign = [name for name, owned, _ in objects if not owned] + ([] if owns_schema else [f"schema {SCHEMA}"])
        if foreign:
            missing.append(f"ownership of {', '.join(foreign)} (owner: {owner}; an upgrade replaces them)")
            fixes.append(f"run this release's first rotation once as {owner}, or upgrade the schema as {owner}: "
                         f"`psql -v ON_ERROR_STOP=1 -d {database} -f rotation/core/{RUNBOOK_SCHEMA}`.")
    if state == "current":
        lacking = ([] if usage and create else [f"USAGE and CREATE on schema {SCHEMA}"]) + [
            f"{name} (SELECT, INSERT, UPDATE, DELETE / USAGE / EXECUTE)" for name, _, allowed in objects
            if not allowed]
        if lacking:
            missing += lacking
            fixes.append(grants(role))
    return SchemaCheck(str(role), str(database), state, str(owner) if owner else None, tuple(missing), tuple(fixes))


def grants(role: str) -> str:
    """What the schema's owner runs so that another role (the app's) may rotate with the schema as it is."""
    ident = _ident(role)
    return (f"GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {ident}; "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {ident}; "
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {ident}; "
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {SCHEMA} TO {ident};")


def ensure(conn: psycopg.Connection, found: SchemaCheck) -> str:
    """Create or upgrade the schema as `found` says (a check that passed); returns what was done. Idempotent: a
    current schema is left alone, and V100 itself only adds what is missing."""
    if found.state == "current":
        return "already current: nothing executed"
    apply_runbook_schema(conn)
    if not conn.autocommit:
        conn.commit()
    after = check(conn)
    if after.state != "current":
        raise RuntimeError(f"{RUNBOOK_SCHEMA} ran but the schema {SCHEMA} is still {after.state}")
    return "created" if found.state == "absent" else "upgraded"


def sql_file() -> str:
    """The schema's DDL, as an operator may run it by hand (the `fixes` name it)."""
    return resources.files("rotation.core").joinpath(RUNBOOK_SCHEMA).read_text()


def _ident(name: object) -> str:
    return sql.Identifier(str(name)).as_string(None)
