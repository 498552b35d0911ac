"""Negative controls for the Automated Rotation Monitoring scenarios: the untouched feature passes (positive
control); each sabotage, or a configuration without the app trigger's aliases, makes exactly its scenario fail, and
the run's evidence names the failing step and why."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from tests.harness import SuiteRunner

FEATURE = "rotation_suite/steps/test_monitoring.py"
OUTLINE = f"{FEATURE}::test_status_of_a_credential_last_rotated_age"
TWILIO_84_DAYS = f"{OUTLINE}[Twilio auth token-84 days ago-due-6-a rotation due]"
ALIAS = f"{FEATURE}::test_a_rotation_the_application_logged_itself_counts_for_its_credential"
ALERT = f"{FEATURE}::test_the_daily_check_emails_the_runbooks_critical_and_warning_lines_to_the_administrator"
NO_ALERT = f"{FEATURE}::test_no_alert_email_while_every_credential_is_current"


def test_monitoring_passes_untouched(suite: SuiteRunner) -> None:
    run = suite.run(FEATURE)
    assert len(run.outcomes) == 13, run.output[-3000:]
    failed = {name: o.message[-800:] for name, o in run.outcomes.items() if o.status != "passed"}
    assert not failed, failed


@pytest.mark.parametrize(("sabotage", "scenario", "failing_step", "why"), [
    ("monitoring:newer-rotation", TWILIO_84_DAYS, "the Twilio auth token is reported due with 6 days until rotation",
     "Twilio auth token is reported current with 88 days until rotation; expected due with 6"),
    ("monitoring:untrusted-certificate", ALERT,
     'the administrator receives one "Credential Rotation Alert" e-mail, sent encrypted, with exactly these lines:',
     "0 e-mails received, expected 1 (alert e-mail NOT sent: TLS certificate of localhost"),
    ("monitoring:key-never-rotated", NO_ALERT, "the administrator receives no e-mail",
     "1 alert e-mail(s) sent although nothing was expected to be due"),
])
def test_scenario_fails_when_its_world_is_broken(suite: SuiteRunner, sabotage: str, scenario: str, failing_step: str,
                                                 why: str) -> None:
    run = suite.run(scenario, sabotage=sabotage)
    assert run.only().status == "failed", f"{sabotage}: the scenario did not fail\n{run.output[-2000:]}"
    failed = run.failed_step()
    assert (failed.text, failed.status) == (failing_step, "failed"), failed
    assert why in (failed.error or ""), failed.error


def test_app_logged_rotations_count_only_through_the_configurations_aliases(suite: SuiteRunner,
                                                                             tmp_path: Path) -> None:
    """The same scenario under a configuration that gives the credentials no log aliases: the app's own row no longer
    counts, so the Twilio auth token is expired (its runbook row is 95 days old)."""
    default = resources.files("rotation.core").joinpath("rotation.toml").read_text()
    without_aliases, found = re.subn(r"(?m)^log_aliases = \[.*\]$", "log_aliases = []", default)
    assert found >= 1
    config = tmp_path / "rotation.toml"
    config.write_text(without_aliases)
    run = suite.run(ALIAS, f"--config={config}")
    failed = run.failed_step()
    assert failed.text == "the Twilio auth token is reported current with 80 days until rotation", failed
    assert "is reported expired with -5 days until rotation" in (failed.error or ""), failed.error
