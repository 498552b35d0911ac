"""Fixtures of the runbook's Automated Rotation Monitoring, Best Practices and Troubleshooting scenarios: the alert
mail account, the app's repository and .env, the rotation history, the server log and the database key procedure.
What differs between staging and live is decided here, once, so the steps stay the same on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.core.clock import utc_now
from rotation.core.deployment import Deployment, Target
from rotation.hygiene.checks import RUNBOOK_OWNER, AppFiles
from staging import rotation_history as history
from staging.app_repo import staging_app_files
from staging.smtp_standin import SmtpStandIn, smtp_standin

STAGING_HISTORY_AGE = "30 days"  # staging's rotation log: every credential rotated a month ago


@pytest.fixture
def alert_mail(tmp_path: Path) -> Iterator[SmtpStandIn]:
    """Staging's mail server for the alert e-mail: STARTTLS required, AUTH only after it, a private CA."""
    with smtp_standin(tmp_path / "alert-mail") as server:
        yield server


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


