"""Fixtures for the emergency tests: one scratch CRM database per module on the session's PostgreSQL, emptied of
access log and communications before each test, with the database clock as the reference instant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from rotation.core.database import apply_runbook_schema
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, scratch_database


@pytest.fixture(scope="module")
def crm_dsn(pg: StagingServer) -> Iterator[str]:
    with scratch_database(pg.admin_dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
        yield dsn


@pytest.fixture
def crm(crm_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(crm_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE crm_data_access_log, crm_delivery_logs, crm_communications, "
                     "security_credential_rotations")
        yield conn


@pytest.fixture
def now(crm: psycopg.Connection) -> dt.datetime:
    return crm.execute("SELECT now()").fetchone()[0]
