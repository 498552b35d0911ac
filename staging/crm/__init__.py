"""The CRM's own schema, reproduced for staging from the app's migrations (see shared notes crm-schema.md)."""

from __future__ import annotations

from importlib import resources

import psycopg

CRM_SCHEMA = "V001__crm_schema.sql"


def migrations() -> list[str]:
    """The migration files, V001 first: every `V*.sql` of this package, in version order."""
    files = [f.name for f in resources.files("staging.crm").iterdir()
             if f.name.startswith("V") and f.name.endswith(".sql")]
    return sorted(files, key=lambda name: int(name[1:].split("__", 1)[0]))


def apply_crm_schema(conn: psycopg.Connection) -> None:
    """Create the CRM's tables, functions, triggers and view as the app's migrations define them, in order."""
    for name in migrations():
        conn.execute(resources.files("staging.crm").joinpath(name).read_text())
