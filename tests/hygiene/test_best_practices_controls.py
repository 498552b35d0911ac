"""Negative controls for the Best Practices scenarios: each sabotage breaks one practice in the staging world right
after the repository and .env are ready (or after the named step), and exactly its scenario must fail, the run's
evidence naming the failing step and why (by .env variable and fingerprint, never the credential). The untouched
feature passing is the positive control."""

from __future__ import annotations

import pytest

from rotation.core.config import default_config
from rotation.db_key import procedure as db_key_procedure
from staging.postgres import StagingServer
from tests.harness import SuiteRunner

FEATURE = "rotation_suite/steps/test_hygiene.py"
SCENARIOS = {
    "gitignore": "test_never_commit_credentials_env_is_listed_in_the_app_repositorys_gitignore_and_not_tracked",
    "access": "test_limit_credential_access_env_is_readable_by_its_owner_only_and_owned_by_the_configured_account",
    "strength": "test_use_strong_unique_credentials",
    "committed": "test_never_commit_credentials_no_credential_value_is_in_the_app_repository_or_its_history",
    "rotated": "test_document_all_rotations_every_credential_was_rotated_within_its_interval",
    "server log": "test_after_a_database_key_rotation_the_postgresql_server_log_holds_no_key",
}
CONFIG = default_config()
DATABASE, TWILIO, SMTP = (CONFIG.credential(name) for name in ("database", "twilio", "smtp"))
NEEDS_DB_KEY_PROCEDURE = pytest.mark.skipif(
    not hasattr(db_key_procedure, "DbKeyRotation"),
    reason="the server-log scenario rotates the DB key with rotation.db_key.procedure.DbKeyRotation, which the "
           "DB-key branch of issue 9 provides")


def scenario(name: str) -> str:
    return f"{FEATURE}::{SCENARIOS[name]}"


def server_log(pg: StagingServer) -> tuple[str, ...]:
    return ("--pg-server-log", str(pg.server_log)) if pg.server_log else ()


def test_best_practices_pass_untouched(suite: SuiteRunner, pg: StagingServer) -> None:
    run = suite.run(FEATURE, "-k", "not postgresql_server_log", *server_log(pg))
    assert len(run.outcomes) == len(SCENARIOS) - 1, run.output[-3000:]
    failed = {name: o.message[-800:] for name, o in run.outcomes.items() if o.status != "passed"}
    assert not failed, failed


@NEEDS_DB_KEY_PROCEDURE
def test_no_key_in_the_server_log_untouched(suite: SuiteRunner, pg: StagingServer) -> None:
    assert suite.run(scenario("server log"), *server_log(pg)).only().status == "passed"


@pytest.mark.parametrize(("sabotage", "name", "failing_step", "why"), [
    ("hygiene:env-not-ignored", "gitignore", "git ignores .env by a rule in the repository's own .gitignore",
     ".env is not ignored by git"),
    ("hygiene:env-0644", "access", "only the owner may read or write .env", "has mode 0644, not 0600"),
    ("hygiene:weak-credential", "strength", "each credential meets its strength policy",
     f"{SMTP.env} (sha256:"),
    ("hygiene:shared-credential", "strength", "no two credentials share a value",
     f"{DATABASE.env} and {SMTP.env} hold the same value"),
    ("hygiene:credential-in-tracked-file", "committed", "no credential value appears in any git-tracked file",
     f"{TWILIO.env} (sha256:"),
    ("hygiene:credential-in-history", "committed",
     "no credential value appears anywhere in the repository's history", "app/local_settings.py (blob"),
    ("hygiene:overdue-rotation", "rotated", "every credential has a rotation logged within its interval",
     f"CRITICAL: {TWILIO.type} credentials have EXPIRED!"),
    pytest.param("hygiene:key-in-server-log", "server log",
                 "the PostgreSQL server log holds neither the old nor the new key",
                 "key in the PostgreSQL server log: old database key", marks=NEEDS_DB_KEY_PROCEDURE),
])
def test_scenario_fails_when_its_practice_is_broken(suite: SuiteRunner, pg: StagingServer, sabotage: str, name: str,
                                                    failing_step: str, why: str) -> None:
    run = suite.run(scenario(name), *server_log(pg), sabotage=sabotage)
    assert run.only().status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    failed = run.failed_step()
    assert (failed.text, failed.status) == (failing_step, "failed"), failed
    assert why in (failed.error or ""), failed.error
