"""Versioned SQL: the CRM schema (staging reproduces it) and the rotation-runbook's own bookkeeping objects."""

from __future__ import annotations

from importlib import resources

import psycopg

CRM_SCHEMA = "V001__crm_schema.sql"
RUNBOOK_SCHEMA = "V100__rotation_runbook.sql"


def sql_text(name: str) -> str:
    return resources.files("rotation.db").joinpath(name).read_text()


def apply_crm_schema(conn: psycopg.Connection) -> None:
    """Staging only: create the CRM's tables, functions, triggers and view as the app's migrations define them."""
    conn.execute(sql_text(CRM_SCHEMA))


def apply_runbook_schema(conn: psycopg.Connection) -> None:
    """Our own objects in schema rotation_runbook (job, checkpoints, digests): idempotent, safe on live."""
    conn.execute(sql_text(RUNBOOK_SCHEMA))
