"""Fixtures for the monitoring tests: one scratch database (CRM schema) on the session's staging PostgreSQL,
an emptied rotation log per test (rows written only through `log_rotation`), and a loopback SMTP server with
STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from rotation.core.config import Config, Credential, default_config
from staging import rotation_history
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, scratch_database
from tests.monitoring.mini_smtp import SmtpServer, smtp_server

NOW = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
CONFIG = default_config()


def credential(name: str) -> Credential:
    """A credential of the built-in registry by provider, alias or label ('twilio', 'database', ...)."""
    return CONFIG.credential(name)


@pytest.fixture(scope="session")
def monitoring_dsn(pg: StagingServer) -> Iterator[str]:
    """One scratch database with the CRM schema on the session's staging PostgreSQL server."""
    with scratch_database(pg.admin_dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_crm_schema(conn)
        yield dsn


@dataclass
class RotationLog:
    """Past rotations, written by the rotation log's own `log_rotation` (backdated with `at=`)."""

    dsn: str
    config: Config = CONFIG

    def rotated(self, name: str, at: dt.datetime, *, logged_as: str | None = None) -> None:
        rotation_history.rotated(self.dsn, self.config.credential(name), at, logged_as=logged_as)

    def all_rotated(self, at: dt.datetime, *, but: Iterable[str] = ()) -> None:
        skipped = {self.config.credential(name).type for name in but}
        for c in self.config.credentials:
            if c.type not in skipped:
                rotation_history.rotated(self.dsn, c, at)


@pytest.fixture
def rotation_log(monitoring_dsn: str) -> RotationLog:
    with psycopg.connect(monitoring_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE security_credential_rotations")
    return RotationLog(monitoring_dsn)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with smtp_server(tmp_path, "alerts@staging.test", secrets.token_urlsafe(24)) as server:
        yield server
