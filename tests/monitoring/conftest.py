"""Fixtures for the monitoring tests: one scratch database (CRM schema) on the session's staging PostgreSQL,
an emptied rotation log per test, and a loopback SMTP server with STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, scratch_database
from tests.monitoring.mini_smtp import SmtpServer, smtp_server

NOW = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def monitoring_dsn(pg: StagingServer) -> Iterator[str]:
    """One scratch database with the CRM schema on the session's staging PostgreSQL server."""
    with scratch_database(pg.admin_dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_crm_schema(conn)
        yield dsn


@dataclass
class RotationLog:
    """Writes rows into security_credential_rotations, always with bound parameters."""

    conn: psycopg.Connection

    def rotated(self, credential_type: str, at: dt.datetime | None, *, by: str = "monitoring-test") -> None:
        self.conn.execute(
            "INSERT INTO security_credential_rotations (credential_type, rotated_at, rotated_by,"
            " rotation_reason, next_rotation_due) VALUES (%s, %s, %s, %s, %s)",
            (credential_type, at, by, "test seed", at + dt.timedelta(days=90) if at else None))

    def all_rotated(self, at: dt.datetime, types: tuple[str, ...] = ("db_encryption_key", "whatsapp_token",
                                                                  "twilio_token", "smtp_password")) -> None:
        for t in types:
            self.rotated(t, at)


@pytest.fixture
def rotation_log(monitoring_dsn: str) -> Iterator[RotationLog]:
    with psycopg.connect(monitoring_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE security_credential_rotations")
        yield RotationLog(conn)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with smtp_server(tmp_path, "alerts@staging.test", secrets.token_urlsafe(24)) as server:
        yield server
