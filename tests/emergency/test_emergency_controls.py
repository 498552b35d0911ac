"""Negative controls for `pytest -m emergency`: each breaks what a step checks, through real systems, and shows from the
run's evidence which step then fails and why. The untouched emergency run passing is the positive control."""

from __future__ import annotations

import importlib

import pytest

from rotation.core.config import default_config
from rotation.evidence.recorder import Recorder
from tests.harness import SuiteRunner, read_evidence

CONFIG = default_config()
PROVIDER_CREDENTIALS = [c for c in CONFIG.credentials if c.provider != "database"]
REVOKE_STEP = "When the compromised credential is revoked at the provider and a replacement issued"
DB_KEY = next(c for c in CONFIG.credentials if c.provider == "database")
DB_KEY_PROCEDURE_MERGED = hasattr(importlib.import_module("rotation.db_key.procedure"), "DbKeyRotation")
NEEDS_DB_KEY_PROCEDURE = pytest.mark.skipif(not DB_KEY_PROCEDURE_MERGED,
                                            reason="rotation.db_key.procedure.DbKeyRotation (the DB-key branch) is "
                                                   "not merged yet")
# Until the DB-key procedure is merged, the rehearsal rotates the provider credentials only.
REHEARSED = CONFIG.types if DB_KEY_PROCEDURE_MERGED else tuple(c.type for c in PROVIDER_CREDENTIALS)


def test_emergency_run_passes_untouched(suite: SuiteRunner) -> None:
    run = suite.run("-m", "emergency", f"--compromised={','.join(REHEARSED)}")
    assert run.returncode == 0, run.output[-4000:]
    assert run.outcomes and all(o.status == "passed" for o in run.outcomes.values()), run.output[-4000:]
    assert "EMERGENCY ROTATION PLAN" in run.output
    assert "  ok " in run.output, "no progress line per step"
    for credential in REHEARSED:
        assert f"{credential:<18} time-to-revoke" in run.output
    folder = (suite.workdir / "reports" / "latest").resolve()
    assert "incident-report.md" in (folder / "manifest.json").read_text(), "the incident report is not signed"
    report = (folder / "incident-report.md").read_text()
    assert "## Timeline (UTC, recorded by the run as each step finished)" in report
    for credential in REHEARSED:
        assert f"| {credential} |" in report
    recorded = {e["name"] for e in read_evidence(folder) if e["type"] == "evidence"}
    assert {"time to revoke and restore", "notification delivery", "access review", "incident report"} <= recorded


def test_compromised_credential_still_valid_after_revocation_fails_the_proof(suite: SuiteRunner) -> None:
    """One run for every provider credential (the provider keeps each revoked credential valid): each scenario fails
    once, and only there. The sabotage strikes after a revocation step: that scenario then fails at the proof. It
    also sets the Twilio and Graph stand-ins to ignore revocations from then on, so a later Twilio/WhatsApp scenario
    fails at the revocation itself, which waits for a definitive refusal (up to --revoke-wait) and never records one
    it did not see. (SMTP: the sabotage re-adds only the current password, so SMTP fails at the proof.)"""
    selection = " or ".join(c.type for c in PROVIDER_CREDENTIALS)
    run = suite.run("-m", f"emergency and ({selection})", sabotage="emergency:revoked-token-still-valid")
    failed = {s.scenario: s for s in run.steps() if s.status == "failed"}
    assert sorted(failed) == sorted(f"Compromised {c.label}" for c in PROVIDER_CREDENTIALS), run.output[-3000:]
    order = [t for t in CONFIG.emergency_order if t in {c.type for c in PROVIDER_CREDENTIALS}]
    api_revoked = [t for t in order if t != CONFIG.credential("smtp").type]
    for credential in PROVIDER_CREDENTIALS:
        step = failed[f"Compromised {credential.label}"]
        if credential.type in api_revoked[1:]:  # the stand-in already ignores revocations
            assert step.step == REVOKE_STEP, (credential.type, step.step)
            assert f"the compromised {credential.label} sha256:" in str(step.error), step.error
            assert "not revoked: still accepted at " in str(step.error), step.error
            assert "run the same command again" in str(step.error), step.error
            continue
        assert step.step == "Then the provider rejects the compromised credential", (credential.type, step.step)
        assert f"{credential.provider}: the compromised credential sha256:" in str(step.error)
        assert "is still accepted after revocation" in str(step.error)


def test_intruder_access_is_flagged_and_fails_the_review(suite: SuiteRunner) -> None:
    run = suite.run("-m", "emergency", "-k", "unauthorized or notify or audit_the_incident",
                    sabotage="emergency:intruder-access")
    failed = run.failed_step()
    assert failed.step == "And no access and no message is flagged for investigation", run.output[-3000:]
    error = str(failed.error)
    assert "unauthorized access cannot be ruled out" in error
    assert "accessor 'mallory@intruder.example' is not in the allowlist" in error
    assert "IP 203.0.113.66 is outside the allowed networks" in error
    others = [o for name, o in run.outcomes.items() if "unauthorized" not in name]
    assert len(others) == 2 and all(o.status == "passed" for o in others), run.output[-3000:]
    folder = (suite.workdir / "reports" / "latest").resolve()
    report = (folder / "incident-report.md").read_text()
    flagged = [line for line in report.splitlines() if "mallory@intruder.example" in line and "203.0.113.66" in line]
    assert any("is outside the allowed networks" in line for line in flagged), report[-3000:]
    assert "mallory@intruder.example" in (folder / "index.html").read_text(), "the finding is not in the HTML report"


def test_undelivered_notification_fails_the_relay_check(suite: SuiteRunner) -> None:
    run = suite.run("-m", "emergency", "-k", "notify", sabotage="emergency:notification-not-delivered")
    failed = run.failed_step()
    assert failed.step == "Then the relay accepted it for every stakeholder", run.output[-3000:]
    assert "stakeholder notification NOT delivered" in str(failed.error)


@NEEDS_DB_KEY_PROCEDURE
def test_compromised_key_still_opening_a_value_fails_the_proof(suite: SuiteRunner) -> None:
    run = suite.run("-m", f"emergency and {DB_KEY.type}", sabotage="emergency:db-key-old-key-opens")
    failed = run.failed_step()
    assert failed.scenario == "Compromised database encryption key", run.output[-3000:]
    assert failed.step == "And the compromised key decrypts no value any more"
    assert failed.error and failed.error.startswith("CheckFailed: ")


def test_attachments_are_redacted_and_plain_file_names() -> None:
    recorder = Recorder()
    recorder.register_secret("s3cr3t-value-0123456789")
    recorder.attach("incident-report.md", "token s3cr3t-value-0123456789 leaked")
    assert "s3cr3t-value" not in recorder.attachments["incident-report.md"]
    for bad in ("../x.md", ".hidden", "a/b.md", ""):
        with pytest.raises(ValueError):
            recorder.attach(bad, "x")
