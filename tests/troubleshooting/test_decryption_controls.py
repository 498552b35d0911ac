"""Negative controls for "Decryption fails after key rotation": each breaks what a step checks, and the evidence must
show that very step failed, saying why. Both scenarios passing untouched is the positive control."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

FEATURE = "rotation_suite/steps/test_troubleshooting.py"
SELECTION = ("-m", "troubleshooting and db_encryption_key")


def test_decryption_scenarios_pass_untouched(suite: SuiteRunner) -> None:
    run = suite.run(FEATURE, *SELECTION)
    assert len(run.outcomes) == 2, run.output[-3000:]
    assert all(o.status == "passed" for o in run.outcomes.values()), run.output[-3000:]


@pytest.mark.parametrize(("sabotage", "scenario", "failed_step", "why"), [
    ("troubleshooting:value-back-under-old-key", "finish_the_interrupted",
     "Then every value is under the new key and none under the old key or neither", "1 under the old key"),
    ("troubleshooting:unreadable-value-fixed", "under_neither_key",
     "Then the repair stops and names that value by its row and column",
     "the repair reported success over a value no key opens"),  # the one pass digests the fixed value as it finds it
])
def test_scenario_fails_at_the_step_whose_check_is_broken(suite: SuiteRunner, sabotage: str, scenario: str,
                                                          failed_step: str, why: str) -> None:
    run = suite.run(FEATURE, *SELECTION, "-k", scenario, sabotage=sabotage)
    assert run.only().status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    failed = run.failed_step()
    assert failed.step == failed_step, f"{sabotage}: failed at {failed.step!r}: {failed.error}"
    assert why in (failed.error or ""), f"{sabotage}: {failed.error}"
