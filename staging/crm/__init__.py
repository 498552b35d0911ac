"""The CRM's own schema, reproduced for staging from the app's migrations (see shared notes crm-schema.md)."""

from __future__ import annotations

from importlib import resources

import psycopg

CRM_SCHEMA = "V001__crm_schema.sql"


def apply_crm_schema(conn: psycopg.Connection) -> None:
    """Create the CRM's tables, functions, triggers and view as the app's migrations define them."""
    conn.execute(resources.files("staging.crm").joinpath(CRM_SCHEMA).read_text())
