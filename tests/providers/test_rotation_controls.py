"""Negative controls for the Twilio, WhatsApp and SMTP rotations: each breaks what one step checks (through the
stand-ins, the app process or the database), and the run's evidence then shows that step failed, and why.

Each run breaks each of the three scenarios in a different way. What only a provider's own adapter checks (the new
credential refused, the old one kept valid, the test message lost) is broken for every provider; what the procedure
checks the same way for all three (.env's mode, the reload, the log row) once, each in another provider's scenario.
The positive control, the three scenarios passing untouched, is tests/providers/test_no_credential_in_output.py."""

from __future__ import annotations

import pytest

from tests.harness import StepResult, SuiteRun, SuiteRunner

SCENARIOS = {
    "twilio": "Scheduled 90-day rotation of the Twilio auth token",
    "whatsapp": "Scheduled 90-day rotation of the WhatsApp access token",
    "smtp": "Scheduled 90-day rotation of the SMTP password",
}
# what breaks -> (a part of the text of the step that must fail, a part of its error)
FAILING_CHECKS = {
    "new-credential-refused": ("is tested before full deployment", "is refused by the provider"),
    "env-0644": ("keeps mode 0600 and every other setting", "has mode 0o644, not 0600"),
    "old-credential-kept-valid": ("is rejected by", "is still accepted by the provider"),
    "test-message-not-delivered": ("the test ", "was not delivered"),
    "test-message-refused": ("the test ", "was not delivered"),
    "app-not-reloaded": ("the application uses the new", "it was not reloaded"),
    "rotation-log-missing": ("the rotation log records", "security_credential_rotations holds no"),
}
RUNS = [
    {"twilio": "new-credential-refused", "whatsapp": "old-credential-kept-valid", "smtp": "test-message-not-delivered"},
    {"twilio": "old-credential-kept-valid", "whatsapp": "test-message-not-delivered", "smtp": "new-credential-refused"},
    {"twilio": "test-message-not-delivered", "whatsapp": "new-credential-refused", "smtp": "old-credential-kept-valid"},
    {"twilio": "env-0644", "whatsapp": "app-not-reloaded", "smtp": "rotation-log-missing"},
    {"twilio": "test-message-refused", "whatsapp": "test-message-refused", "smtp": "test-message-refused"},
]
# what each provider's test-message failure must say (the code and its meaning, Meta's error, the relay's reply)
MESSAGE_ERRORS = {
    ("twilio", "test-message-not-delivered"): "undelivered with error 30003 (unreachable destination handset)",
    ("twilio", "test-message-refused"): "sent with error 30007 (message filtered by the carrier)",
    ("whatsapp", "test-message-not-delivered"): "the app recorded message wamid.",
    ("whatsapp", "test-message-refused"): "message_status is 'held_for_quality_assessment'",
    ("smtp", "test-message-not-delivered"): "the stand-in's mailbox for admin@",
    ("smtp", "test-message-refused"): "refused the test e-mail",
}


def failed_steps(run: SuiteRun, scenario: str) -> list[StepResult]:
    return [s for s in run.steps() if s.scenario == scenario and s.status == "failed"]


def test_every_kind_of_breakage_is_covered() -> None:
    broken = {(p, kind) for run in RUNS for p, kind in run.items()}
    provider_specific = {"new-credential-refused", "old-credential-kept-valid", "test-message-not-delivered",
                         "test-message-refused"}
    assert {(p, k) for p in SCENARIOS for k in provider_specific} <= broken
    assert {k for _, k in broken} == set(FAILING_CHECKS)


@pytest.mark.parametrize("breakage", RUNS, ids=lambda r: "+".join(f"{p}:{k}" for p, k in r.items()))
def test_each_scenario_fails_at_the_step_whose_check_is_broken(suite: SuiteRunner, breakage: dict[str, str]) -> None:
    run = suite.run("rotation_suite/steps/test_rotation.py", "-m", "scheduled", "-k", "twilio or whatsapp or smtp",
                    sabotage=",".join(f"{p}:{kind}" for p, kind in breakage.items()), rows=20)
    for provider, kind in breakage.items():
        failed = failed_steps(run, SCENARIOS[provider])
        step_part, error_part = FAILING_CHECKS[kind]
        assert len(failed) == 1, f"{provider}:{kind}: failed steps {failed}\n{run.output[-3000:]}"
        assert step_part in failed[0].text, f"{provider}:{kind}: the step that failed is {failed[0].step!r}"
        assert error_part in (failed[0].error or ""), f"{provider}:{kind}: {failed[0].error}"
        said = MESSAGE_ERRORS.get((provider, kind), "")
        assert said in (failed[0].error or ""), f"{provider}:{kind}: {failed[0].error}"
