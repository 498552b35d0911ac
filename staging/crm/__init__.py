"""The CRM's own schema, reproduced for staging from the app's migrations (see shared notes crm-schema.md)."""

from __future__ import annotations

from importlib import resources

import psycopg

CRM_SCHEMA = "V001__crm_schema.sql"


def migrations() -> list[str]:
    """Every V*.sql migration of this package, in version order (V001, V002, ...)."""
    found = [f for f in resources.files("staging.crm").iterdir() if f.name.startswith("V") and f.name.endswith(".sql")]
    return [f.read_text() for f in sorted(found, key=lambda f: int(f.name[1:].split("__", 1)[0]))]


def apply_crm_schema(conn: psycopg.Connection) -> None:
    """Create the CRM's tables, functions, triggers and view as the app's migrations define them, in order."""
    for migration in migrations():
        conn.execute(migration)
