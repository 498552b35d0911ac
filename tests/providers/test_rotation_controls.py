"""Negative controls for the Twilio, WhatsApp and SMTP rotations: each breaks what one step checks (through the
stand-ins, the app process or the database) and shows the scenario then FAILS at that step. The untouched
scenario passing is the positive control."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

SCENARIOS = {
    "twilio": "scheduled_90day_rotation_of_the_twilio_auth_token",
    "whatsapp": "scheduled_90day_rotation_of_the_whatsapp_access_token",
    "smtp": "scheduled_90day_rotation_of_the_smtp_password",
}
FAILING_CHECKS = {
    "new-credential-refused": "is refused",
    "env-0644": "has mode 0o644, not 0600",
    "old-credential-kept-valid": "is still accepted",
    "test-message-not-delivered": "was not delivered",
    "app-not-reloaded": "it was not reloaded",
    "rotation-log-missing": "no security_credential_rotations row records this",
}


def scenario(name: str) -> list[str]:
    return ["steps/test_rotation.py", "-k", SCENARIOS[name]]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scheduled_rotation_passes_untouched(suite: SuiteRunner, name: str) -> None:
    run = suite.run(*scenario(name), rows=20)
    assert run.only().status == "passed", run.output[-3000:]


@pytest.mark.parametrize("sabotage", list(FAILING_CHECKS))
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_fails_when_its_check_is_broken(suite: SuiteRunner, name: str, sabotage: str) -> None:
    outcome = suite.run(*scenario(name), sabotage=f"{name}:{sabotage}", rows=20).only()
    assert outcome.status == "failed", f"{name}:{sabotage}: the scenario did not fail"
    assert FAILING_CHECKS[sabotage] in outcome.message, outcome.message[-2000:]
