"""Negative controls for Troubleshooting "Application Won't Start After Rotation": the untouched scenarios pass
(positive control); a backup that cannot make the app healthy, or a second bad line in .env, makes its scenario
fail, and the run's evidence names the failing step and why."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

FEATURE = "rotation_suite/steps/test_troubleshooting.py"
WONT_START = f"{FEATURE}::test_application_wont_start_after_rotation"
SYNTAX = f"{WONT_START}_the_env_syntax_check_names_the_line_that_does_not_parse"
RESTORE = f"{WONT_START}_restoring_the_newest_backup_and_restarting_brings_it_back"


def test_app_wont_start_passes_untouched(suite: SuiteRunner) -> None:
    run = suite.run(FEATURE, "-k", "wont_start")
    assert len(run.outcomes) == 2, run.output[-3000:]
    failed = {name: o.message[-800:] for name, o in run.outcomes.items() if o.status != "passed"}
    assert not failed, failed


@pytest.mark.parametrize(("sabotage", "scenario", "failing_step", "why"), [
    ("troubleshooting:bad-backup", RESTORE, "the system is healthy again",
     "the app is not healthy again: it cannot read its data with the key in .env"),
    ("troubleshooting:second-bad-line", SYNTAX, "the check names that line, and no other",
     "do not parse; expected exactly line"),
])
def test_scenario_fails_when_the_repair_does_not_work(suite: SuiteRunner, sabotage: str, scenario: str,
                                                      failing_step: str, why: str) -> None:
    run = suite.run(scenario, sabotage=sabotage)
    assert run.only().status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    failed = run.failed_step()
    assert (failed.text, failed.status) == (failing_step, "failed"), failed
    assert why in (failed.error or ""), failed.error
