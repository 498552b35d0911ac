"""Fixtures of the runbook's Automated Rotation Monitoring, Best Practices and Troubleshooting scenarios: the alert
mail account, the app's repository and .env, the rotation history, the server log and the database key procedure.
What differs between staging and live is decided here, once, so the steps stay the same on both; what only staging can
do (seed a history, open a mail account, make the server log every statement) is offered here too, so the steps never
import a stand-in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotation.core.clock import utc_now
from rotation.core.config import Credential
from rotation.core.deployment import Deployment, Target
from rotation.core.proof import Evidence
from rotation.hygiene import server_log as server_log_checks
from rotation.hygiene.checks import RUNBOOK_OWNER, AppFiles
from rotation.hygiene.server_log import LogWatch
from rotation.monitoring.check import DailyCheck
from staging import alert_mail as mailbox
from staging import rotation_history as history
from staging.app_repo import staging_app_files
from staging.postgres import StagingServer
from staging.server_log import log_every_statement
from staging.smtp_standin import SmtpStandIn, smtp_standin

STAGING_HISTORY_AGE = "30 days"  # staging's rotation log: every credential rotated a month ago


@dataclass(frozen=True)
class AlertMailbox:
    """The alert mail account and the administrator's mailbox: staging's SMTP stand-in (staging.alert_mail)."""

    server: SmtpStandIn

    def open_account(self, deployment: Deployment, evidence: Evidence) -> None:
        """A fresh password for the account, and the app's SMTP settings in .env pointing at it."""
        mailbox.configure(self.server, deployment, evidence)

    def require_one_alert(self, daily: DailyCheck, subject: str, table: list[list[str]], evidence: Evidence) -> None:
        """Exactly one e-mail, sent encrypted, with this subject and exactly the lines of the table's `line` column."""
        mailbox.require_one_alert(self.server, daily, subject, mailbox.column(table, "line"), evidence)

    def require_no_alert(self, daily: DailyCheck, evidence: Evidence) -> None:
        mailbox.require_no_alert(self.server, daily, evidence)


@dataclass(frozen=True)
class SeededHistory:
    """Past rotations written into the staging world's rotation log (staging.rotation_history), at ages in the
    features' words ('82 days', '1 day', 'never')."""

    deployment: Deployment

    def rotated_ago(self, credential: str, age: str, *, now: dt.datetime) -> Credential:
        return history.rotated_ago(self.deployment, credential, age, now=now)

    def others_rotated_ago(self, age: str, *, now: dt.datetime, except_for: Iterable[Credential] = ()) -> None:
        history.others_rotated_ago(self.deployment, age, now=now, except_for=except_for)

    def app_logged(self, credential: str, age: str, *, now: dt.datetime) -> None:
        history.app_logged(self.deployment, credential, age, now=now)

    def table_rotated(self, rows: Sequence[Sequence[str]], *, now: dt.datetime) -> None:
        history.table_rotated(self.deployment, rows, now=now)


@dataclass(frozen=True)
class StatementLogging:
    """Staging's PostgreSQL server, which the suite owns, set to log every statement of the CRM database."""

    deployment: Deployment
    admin_dsn: str
    server_log: Path

    def start(self, evidence: Evidence) -> LogWatch:
        """Every new session logs each statement; the log is watched from its current end."""
        log_every_statement(self.deployment, self.admin_dsn, evidence)
        return server_log_checks.watch(self.server_log, evidence)


@pytest.fixture
def alert_mail(tmp_path: Path) -> Iterator[AlertMailbox]:
    """Staging's mail server for the alert e-mail: STARTTLS required, AUTH only after it, a private CA."""
    with smtp_standin(tmp_path / "alert-mail") as server:
        yield AlertMailbox(server)


@pytest.fixture
def seeded_history(deployment: Deployment) -> SeededHistory:
    return SeededHistory(deployment)


@pytest.fixture
def statement_logging(deployment: Deployment, pg_server: StagingServer | None, server_log: Path) -> StatementLogging:
    """Only staging may change the server's logging (the scenario is @staging_only): there is no server to own on
    live."""
    if pg_server is None:
        pytest.skip("staging only: the suite changes the logging of its own staging server, never of a live one")
    return StatementLogging(deployment, pg_server.admin_dsn, server_log)


@pytest.fixture
def app_files(pytestconfig: pytest.Config, target: Target, deployment: Deployment,
              tmp_path: Path) -> Iterator[AppFiles]:
    """Live: --app-repo (default: the directory holding --env-file) and --env-owner (default the runbook's
    eventuser:eventuser). Staging: a small repository built around the world's .env, which holds every credential,
    each issued by its provider's stand-in."""
    owner = pytestconfig.getoption("env_owner")
    if target == "live":
        repo = Path(pytestconfig.getoption("app_repo") or deployment.env_file.parent)
        yield AppFiles(repo, deployment.env_file, owner or RUNBOOK_OWNER)
        return
    with staging_app_files(deployment, tmp_path / "providers", owner) as files:
        yield files


@pytest.fixture
def rotation_history(target: Target, deployment: Deployment) -> str:
    """Live: the rotation log as it is. Staging: a history in which every credential was rotated a month ago."""
    if target == "staging":
        history.others_rotated_ago(deployment, STAGING_HISTORY_AGE, now=utc_now())
        return f"staging history: every credential rotated {STAGING_HISTORY_AGE} ago"
    return "the live rotation log"


@pytest.fixture
def server_log(pytestconfig: pytest.Config, deployment: Deployment) -> Path:
    """The PostgreSQL server's log file: staging's private cluster provides it; with --dsn, --pg-server-log names it."""
    log = deployment.server_log or pytestconfig.getoption("pg_server_log")
    if log is None:
        pytest.skip("needs the PostgreSQL server's log file: a private staging cluster, or --pg-server-log")
    return Path(log)


