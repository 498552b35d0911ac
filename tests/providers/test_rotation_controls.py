"""Negative controls for the Twilio, WhatsApp and SMTP rotations: each breaks what one step checks (through the
stand-ins, the app process or the database) and shows the scenario then FAILS at that step, with that step's
message. One run per kind of breakage covers the three scenarios (each sabotage acts only in its provider's
scenario). The positive control, the three scenarios passing untouched, is
tests/providers/test_no_credential_in_output.py."""

from __future__ import annotations

import pytest

from tests.harness import SuiteRunner

SCENARIOS = {
    "twilio": "test_scheduled_90day_rotation_of_the_twilio_auth_token",
    "whatsapp": "test_scheduled_90day_rotation_of_the_whatsapp_access_token",
    "smtp": "test_scheduled_90day_rotation_of_the_smtp_password",
}
FAILING_CHECKS = {
    "new-credential-refused": "is refused",
    "env-0644": "has mode 0o644, not 0600",
    "old-credential-kept-valid": "is still accepted",
    "test-message-not-delivered": "was not delivered",
    "app-not-reloaded": "it was not reloaded",
    "rotation-log-missing": "no security_credential_rotations row records this",
}


@pytest.mark.parametrize("sabotage", list(FAILING_CHECKS))
def test_each_scenario_fails_when_its_check_is_broken(suite: SuiteRunner, sabotage: str) -> None:
    run = suite.run("steps/test_rotation.py", "-k", "twilio or whatsapp or smtp",
                    sabotage=",".join(f"{name}:{sabotage}" for name in SCENARIOS), rows=20)
    assert sorted(run.outcomes) == sorted(SCENARIOS.values()), run.output[-3000:]
    for name, test in SCENARIOS.items():
        outcome = run.outcomes[test]
        assert outcome.status == "failed", f"{name}:{sabotage}: the scenario did not fail"
        assert FAILING_CHECKS[sabotage] in outcome.message, f"{name}:{sabotage}: {outcome.message[-2000:]}"
