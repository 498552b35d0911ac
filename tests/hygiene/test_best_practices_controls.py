"""Negative controls for the Best Practices scenarios: each sabotage breaks one practice in the staging world right
after the repository and .env are ready (or after the named step), and exactly its scenario must FAIL with a message
naming the problem, never the credential. The untouched feature passing is the positive control.
(The sabotages hygiene:shared-credential and hygiene:credential-in-tracked-file exist too; their checks' failing is
shown faster by tests/hygiene/test_checks.py, to keep CI inside its budget.)"""

from __future__ import annotations

import pytest

from staging.postgres import StagingServer
from tests.harness import SuiteRunner

FEATURE = "steps/test_hygiene.py"
SCENARIOS = {
    "gitignore": "env_is_listed_in_the_app_repositorys_gitignore",
    "access": "env_is_readable_by_its_owner_only",
    "strength": "every_credential_is_strong_and_unique",
    "committed": "no_credential_value_is_committed",
    "rotated": "every_credential_type_was_rotated_within_its_interval",
    "server log": "the_postgresql_server_log_holds_no_key",
}


def feature(pg: StagingServer, *args: str) -> tuple[str, ...]:
    return (FEATURE, "--pg-server-log", str(pg.server_log), *args)


def test_best_practices_pass_untouched(suite: SuiteRunner, pg: StagingServer) -> None:
    run = suite.run(*feature(pg))
    assert len(run.outcomes) == len(SCENARIOS), run.output[-3000:]
    failed = {name: o.message[-800:] for name, o in run.outcomes.items() if o.status != "passed"}
    assert not failed, failed


@pytest.mark.parametrize(("sabotage", "scenario", "failing_check"), [
    ("hygiene:env-not-ignored", "gitignore", ".env is not ignored by git"),
    ("hygiene:env-0644", "access", "has mode 0644, not 0600"),
    ("hygiene:weak-credential", "strength", "SMTP_PASSWORD is 11 characters"),
    ("hygiene:credential-in-history", "committed", "app/local_settings.py (blob"),
    ("hygiene:overdue-rotation", "rotated", "CRITICAL: twilio_token credentials have EXPIRED!"),
    ("hygiene:key-in-server-log", "server log", "key in the PostgreSQL server log"),
])
def test_scenario_fails_when_its_practice_is_broken(suite: SuiteRunner, pg: StagingServer, sabotage: str,
                                                    scenario: str, failing_check: str) -> None:
    run = suite.run(*feature(pg, "-k", SCENARIOS[scenario]), sabotage=sabotage)
    outcome = run.only()
    assert outcome.status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    assert failing_check in outcome.message, outcome.message[-2000:]
