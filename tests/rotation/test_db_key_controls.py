"""Negative controls for the database encryption key rotation: each breaks what a step checks and shows the
scenario then FAILS at that step. The scheduled rotation passing untouched is the positive control."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

SCHEDULED = ["steps/test_rotation.py", "-k", "scheduled_90day_rotation_of_the_database_encryption_key"]


def test_scheduled_rotation_passes_untouched(suite: SuiteRunner) -> None:
    run = suite.run(*SCHEDULED)
    assert run.only().status == "passed", run.output[-3000:]


@pytest.mark.parametrize(("sabotage", "failing_check"), [
    ("db-key:value-left-under-old-key", "values"),
    ("db-key:plaintext-changed", "plaintext changed"),
    ("db-key:rotation-log-missing", "no security_credential_rotations row records this rotation"),
    ("db-key:env-0644", "has mode 0o644, not 0600"),
    ("db-key:app-keeps-old-key", "not healthy after the rotation"),
])
def test_scenario_fails_when_its_check_is_broken(suite: SuiteRunner, sabotage: str, failing_check: str) -> None:
    outcome = suite.run(*SCHEDULED, sabotage=sabotage).only()
    assert outcome.status == "failed", f"{sabotage}: the scenario did not fail"
    assert failing_check in outcome.message, outcome.message[-2000:]
