"""Steps of the runbook's "Best Practices". The checks live in rotation.hygiene; what the app's files are (staging: a
small repository built around the world's .env; live: --app-repo and --env-file) is decided by the `app_files`
fixture in rotation_pytest.practices."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from rotation.core.clock import utc_now
from rotation.core.config import Config
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.db_key.procedure import DbKeyRotation
from rotation.hygiene import practices
from rotation.hygiene import server_log as server_log_checks
from rotation.hygiene.checks import AppFiles
from rotation.hygiene.server_log import LogWatch
from rotation.monitoring import check
from rotation_pytest import scheduled
from rotation_pytest.practices import StatementLogging


@given("the app's source repository and the .env beside it")
def app_repository(app_files: AppFiles, rotation_config: Config, evidence: Evidence) -> None:
    practices.describe(app_files, rotation_config, evidence)


@then("git ignores .env by a rule in the repository's own .gitignore")
def env_ignored(app_files: AppFiles, evidence: Evidence) -> None:
    practices.require_ignored(app_files, evidence)


@then(".env is not tracked by git")
def env_untracked(app_files: AppFiles, evidence: Evidence) -> None:
    practices.require_untracked(app_files, evidence)


@then("only the owner may read or write .env")
def env_private(deployment: Deployment, evidence: Evidence) -> None:
    practices.require_private(deployment.env_file, evidence)


@then(".env is owned by the configured account")
def env_owner(app_files: AppFiles, evidence: Evidence) -> None:
    practices.require_owner(app_files, evidence)


@then(".env holds every credential of the deployment configuration")
def all_present(app_files: AppFiles, rotation_config: Config, evidence: Evidence) -> None:
    practices.require_all_present(app_files, rotation_config, evidence)


@then("each credential meets its strength policy")
def strong(app_files: AppFiles, rotation_config: Config, evidence: Evidence) -> None:
    practices.require_strong(app_files, rotation_config, evidence)


@then("no two credentials share a value")
def unique(app_files: AppFiles, rotation_config: Config, evidence: Evidence) -> None:
    practices.require_unique(app_files, rotation_config, evidence)


@then("no credential value appears in any git-tracked file")
def not_in_tracked_files(app_files: AppFiles, rotation_config: Config, evidence: Evidence) -> None:
    practices.require_not_in_tracked_files(app_files, rotation_config, evidence)


@then("no credential value appears anywhere in the repository's history")
def not_in_history(app_files: AppFiles, rotation_config: Config, evidence: Evidence) -> None:
    practices.require_not_in_history(app_files, rotation_config, evidence)


@given("the latest rotations in the rotation log")
def latest_rotations(deployment: Deployment, rotation_history: str, evidence: Evidence) -> None:
    check.recent_rotations(deployment.dsn, evidence)


@then("every credential has a rotation logged within its interval")
def rotated_in_time(deployment: Deployment, evidence: Evidence) -> None:
    check.require_within_interval(check.check_status(deployment.dsn, deployment.config, utc_now(), evidence))


@given("the PostgreSQL server logs every statement of the CRM database", target_fixture="log_watch")
def log_everything(statement_logging: StatementLogging, evidence: Evidence) -> LogWatch:
    return statement_logging.start(evidence)


@when("the database encryption key is rotated")
def rotate_db_key(request: pytest.FixtureRequest, evidence: Evidence) -> None:
    scheduled.rotate_db_key(request, evidence)


@then("the PostgreSQL server log holds neither the old nor the new key")
def no_key_in_log(log_watch: LogWatch, db_key_rotation: DbKeyRotation, deployment: Deployment,
                  evidence: Evidence) -> None:
    server_log_checks.require_no_key(log_watch, deployment, evidence, old_key=db_key_rotation.old_key,
                                     new_key=db_key_rotation.new_key)
