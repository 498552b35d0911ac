"""Negative controls for the database encryption key rotation: each breaks what a step checks, and the run's evidence
must show that very step failed, saying why. The scheduled rotation passing untouched is the positive control."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

FEATURE = "rotation_suite/steps/test_rotation.py"
SCHEDULED = "scheduled_90day_rotation_of_the_database_encryption_key"
WRONG_OLD_KEY = "a_wrong_old_key_is_refused"


def test_db_key_scenarios_pass_untouched(suite: SuiteRunner) -> None:
    run = suite.run(FEATURE, "-m", "db_encryption_key")
    assert len(run.outcomes) == 3, run.output[-3000:]
    assert all(o.status == "passed" for o in run.outcomes.values()), run.output[-3000:]


@pytest.mark.parametrize(("sabotage", "scenario", "failed_step", "why"), [
    ("db-key:value-left-under-old-key", SCHEDULED,
     "Then every encrypted value decrypts with the new key to its original plaintext", "still under the old key"),
    ("db-key:plaintext-changed", SCHEDULED,
     "Then every encrypted value decrypts with the new key to its original plaintext", "plaintext changed"),
    ("db-key:rotation-log-missing", SCHEDULED,
     "Then the rotation log records it with the previous key hash and the next rotation due date",
     "no rotation log row records the rotation"),
    ("db-key:env-0644", SCHEDULED,
     "Then the .env file keeps its restrictive permissions and every other setting", "has mode 0o644, not 0600"),
    ("db-key:app-keeps-old-key", SCHEDULED,
     "And the encryption key loaded by the application is the new key",
     "the app could not read crm_client_preferences.email_encrypted client_id=client-00000001: HTTP 500"),
    ("db-key:staged-row-unverified", SCHEDULED, "When all sensitive data is re-encrypted under the new key",
     "rows do not hold their verified staged ciphertext after the swap (client_id=client-00000001)"),
    ("db-key:other-column-changed", SCHEDULED,
     "Then every encrypted value decrypts with the new key to its original plaintext",
     "crm_client_preferences: 1 row changed in columns other than the encrypted ones (client_id=client-00000001)"),
    ("db-key:old-key-value-outside-the-inventory", SCHEDULED, "And no encrypted value decrypts with the old key",
     "public.crm_attachments.blob: 1 PGP value open with the old key (attachment_id=1)"),
    ("db-key:refused-attempt-wrote", WRONG_OLD_KEY,
     "And every encrypted value still decrypts with the current key", "values no longer open with the current key"),
])
def test_scenario_fails_at_the_step_whose_check_is_broken(suite: SuiteRunner, sabotage: str, scenario: str,
                                                          failed_step: str, why: str) -> None:
    run = suite.run(FEATURE, "-k", scenario, sabotage=sabotage)
    assert run.only().status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    failed = run.failed_step()
    assert failed.step == failed_step, f"{sabotage}: failed at {failed.step!r}: {failed.error}"
    assert why in (failed.error or ""), f"{sabotage}: {failed.error}"
