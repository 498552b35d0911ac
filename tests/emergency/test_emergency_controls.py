"""Negative controls for `pytest -m emergency`: each breaks what a step checks, through real systems, and shows the
scenario then FAILS (or flags the row). The untouched emergency run passing is the positive control."""

from __future__ import annotations

import json

from rotation.evidence.recorder import Recorder
from tests.harness import SuiteRunner

EMERGENCY = ["-m", "emergency"]


def test_emergency_run_passes_untouched(suite: SuiteRunner) -> None:
    run = suite.run(*EMERGENCY)
    assert run.returncode == 0, run.output[-4000:]
    assert run.outcomes and all(o.status == "passed" for o in run.outcomes.values()), run.output[-4000:]
    assert "EMERGENCY ROTATION PLAN" in run.output
    assert "  ok " in run.output, "no progress line per step"
    for credential in ("twilio_token", "whatsapp_token", "smtp_password", "db_encryption_key"):
        assert f"{credential:<18} time-to-revoke" in run.output
    folder = (suite.workdir / "reports" / "latest").resolve()
    manifest = (folder / "manifest.json").read_text()
    assert "incident-report.md" in manifest, "the incident report is not under the signed manifest"
    report = (folder / "incident-report.md").read_text()
    chain = [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines()]
    assert "## Timeline (UTC, recorded by the run as each step finished)" in report
    assert "| twilio_token |" in report and "rejected 401/20003" in report
    assert any("incident report" in line.get("name", "") for line in chain if isinstance(line, dict)) or \
        "incident report" in (folder / "evidence.jsonl").read_text()


def test_compromised_key_still_opening_a_value_fails_the_rotation(suite: SuiteRunner) -> None:
    run = suite.run(*EMERGENCY, "-k", "database_encryption_key", sabotage="emergency:db-key-old-key-opens")
    outcome = run.only()
    assert outcome.status == "failed", run.output[-3000:]
    assert "still open with the compromised key" in outcome.message


def test_intruder_access_is_flagged_and_fails_the_review(suite: SuiteRunner) -> None:
    run = suite.run(*EMERGENCY, "-k", "unauthorized or notify or audit_the_incident",
                    sabotage="emergency:intruder-access")
    review = next(o for name, o in run.outcomes.items() if "unauthorized" in name)
    assert review.status == "failed", run.output[-3000:]
    assert "unauthorized access cannot be ruled out" in review.message
    assert "accessor 'mallory@intruder.example' is not in the allowlist" in review.message
    assert "IP 203.0.113.66 is outside the allowed networks" in review.message
    others = [o for name, o in run.outcomes.items() if "unauthorized" not in name]
    assert len(others) == 2 and all(o.status == "passed" for o in others), run.output[-3000:]
    folder = (suite.workdir / "reports" / "latest").resolve()
    report = (folder / "incident-report.md").read_text()
    flagged = [line for line in report.splitlines() if "mallory@intruder.example" in line and "203.0.113.66" in line]
    assert any("is outside the allowed networks" in line for line in flagged), report[-3000:]
    assert "mallory@intruder.example" in (folder / "index.html").read_text(), "the finding is not in the HTML report"


def test_compromised_token_still_valid_after_revocation_fails_the_rotation(suite: SuiteRunner) -> None:
    run = suite.run(*EMERGENCY, "-k", "twilio or whatsapp", sabotage="emergency:revoked-token-still-valid")
    assert len(run.outcomes) == 2, run.output[-3000:]
    for outcome in run.outcomes.values():
        provider = "twilio" if "twilio" in outcome.name else "whatsapp"
        assert outcome.status == "failed", run.output[-3000:]
        assert f"{provider}: the compromised credential sha256:" in outcome.message
        assert "is still accepted after revocation" in outcome.message


def test_undelivered_notification_fails_the_notification_scenario(suite: SuiteRunner) -> None:
    run = suite.run(*EMERGENCY, "-k", "notify", sabotage="emergency:notification-not-delivered")
    outcome = run.only()
    assert outcome.status == "failed", run.output[-3000:]
    assert "stakeholder notification NOT delivered" in outcome.message


def test_attachments_are_redacted_and_plain_file_names() -> None:
    recorder = Recorder()
    recorder.register_secret("s3cr3t-value-0123456789")
    recorder.attach("incident-report.md", "token s3cr3t-value-0123456789 leaked")
    assert "s3cr3t-value" not in recorder.attachments["incident-report.md"]
    for bad in ("../x.md", ".hidden", "a/b.md", ""):
        try:
            recorder.attach(bad, "x")
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted as an attachment name")
