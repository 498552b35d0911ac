"""Negative controls for the Troubleshooting scenarios: the untouched feature passes (positive control); a backup
that cannot make the app healthy, a value left under the old key after the repair, or a reload that does not reach
the app, makes its scenario FAIL."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

FEATURE = "steps/test_troubleshooting.py"


def test_troubleshooting_passes_untouched(suite: SuiteRunner) -> None:
    run = suite.run(FEATURE)
    assert len(run.outcomes) == 4, run.output[-3000:]
    failed = {name: o.message[-800:] for name, o in run.outcomes.items() if o.status != "passed"}
    assert not failed, failed


@pytest.mark.parametrize(("sabotage", "scenario", "failing_check"), [
    ("troubleshooting:value-back-under-old-key", "finish_the_interrupted", "1 under the old key"),
    ("troubleshooting:reload-lost", "never_reloaded", "the app is not healthy after the rotation"),
])
def test_scenario_fails_when_the_repair_does_not_work(suite: SuiteRunner, sabotage: str, scenario: str,
                                                      failing_check: str) -> None:
    run = suite.run(FEATURE, "-k", scenario, sabotage=sabotage)
    outcome = run.only()
    assert outcome.status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    assert failing_check in outcome.message, outcome.message[-2000:]
