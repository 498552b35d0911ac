"""The stakeholder notification (real SMTP over verified STARTTLS on loopback) and the incident document."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes
from pathlib import Path

import pytest

from rotation.core.config import Stakeholders, default_config
from rotation.core.keys import generate_key
from rotation.core.secret import fingerprint
from rotation.emergency import notify, post_incident
from rotation.emergency.access_review import ReviewTables
from rotation.emergency.incident import IncidentRecord, iso
from rotation.monitoring import alerts
from staging.seed_activity import staging_policy
from staging.smtp_standin import smtp_standin

T0 = dt.datetime(2026, 11, 25, 21, 0, tzinfo=dt.UTC)
STAKEHOLDERS = Stakeholders(("sec@eventplanning.io",), ("ops@eventplanning.io", "sec@eventplanning.io"),
                            ("dpo@eventplanning.io",), "alerts@eventplanning.io")
TWILIO = default_config().credential("twilio").type
ACCESS_LOG = ReviewTables.from_config(default_config().access_review).access_log


def rotated_record(old: str, new: str) -> IncidentRecord:
    record = IncidentRecord(started_at=T0)
    record.begin(TWILIO, fingerprint(old)).started_at = T0 + dt.timedelta(seconds=1)
    record.revoked(TWILIO, fingerprint(new), "promoted: compromised token dead")
    record.outcomes[TWILIO].revoked_at = T0 + dt.timedelta(seconds=2.5)
    record.restored(TWILIO, "app healthy")
    record.outcomes[TWILIO].restored_at = T0 + dt.timedelta(seconds=4)
    record.outcomes[TWILIO].rejection = "401/20003"
    return record


def test_notification_is_delivered_to_every_stakeholder_over_verified_starttls(tmp_path: Path) -> None:
    old, new, password = (generate_key().reveal() for _ in range(3))
    record = rotated_record(old, new)
    msg = notify.compose(record, STAKEHOLDERS, change_id="CHG-1", operator="ops", approver="ciso",
                         secrets=[old, new, password])
    with smtp_standin(tmp_path) as relay:
        relay.add_password(password)
        delivery = notify.send(msg, alerts.SmtpSettings("localhost", relay.port, relay.username, password),
                               ca_file=relay.ca_file)
        (received,) = relay.messages
        assert sorted(received["rcpt_tos"]) == sorted(STAKEHOLDERS.all())
        assert received["tls"] and received["authenticated"]
        body = message_from_bytes(received["data"]).get_payload(decode=True).decode()
    assert len(STAKEHOLDERS.all()) == 3 and delivery.recipients == STAKEHOLDERS.all()
    assert f"  - {TWILIO}: revoked and replaced (not yet logged)" in body
    assert "revoked 2026-11-25T21:00:02.500+00:00 (time to revoke 1.5 s)" in body
    assert fingerprint(old) in body and old not in body and new not in body and password not in body
    assert "CHG-1" in str(msg["Subject"])


def test_notification_refuses_a_body_with_a_secret_and_missing_groups() -> None:
    old, new = generate_key().reveal(), generate_key().reveal()
    record = rotated_record(old, new)
    policy_record = IncidentRecord(started_at=T0)
    with pytest.raises(notify.NotificationError, match="compliance officer"):
        notify.compose(policy_record, Stakeholders(("a@b.io",), ("c@b.io",), (), "x@b.io"), change_id=None,
                       operator="o", approver=None)
    record.outcomes[TWILIO].old_fp = old  # a bug that would put the credential itself in the body
    with pytest.raises(notify.NotificationError, match="would contain a credential") as caught:
        notify.compose(record, STAKEHOLDERS, change_id=None, operator="o", approver=None, secrets=[old])
    assert old not in str(caught.value)


def test_undeliverable_notification_raises_a_clear_error(tmp_path: Path) -> None:
    password = generate_key().reveal()
    msg = notify.compose(IncidentRecord(started_at=T0), STAKEHOLDERS, change_id=None, operator="o", approver=None)
    with smtp_standin(tmp_path) as relay:
        relay.add_password(password)
        with pytest.raises(notify.NotificationError, match="NOT delivered: SMTP login as .* refused: 535") as e:
            notify.send(msg, alerts.SmtpSettings("localhost", relay.port, relay.username, "wrong-" + password),
                        ca_file=relay.ca_file)
    assert password not in str(e.value)


def test_incident_document_has_the_runs_timeline_times_and_narrative(tmp_path: Path) -> None:
    record = rotated_record(generate_key().reveal(), generate_key().reveal())
    columns = (ACCESS_LOG.client, ACCESS_LOG.access_type, ACCESS_LOG.accessed_by, ACCESS_LOG.at,
               ACCESS_LOG.ip_address, ACCESS_LOG.purpose)
    audit = post_incident.AuditResult(T0 - dt.timedelta(hours=1), T0, columns, "SELECT ...", [
        ("client-1", "read", "mallory", T0 - dt.timedelta(minutes=5), "203.0.113.66", "x|y")])
    narrative = post_incident.Narrative("Token pasted into a public gist", ("Secret scanning on every repo",))
    context = post_incident.IncidentContext(audit.start, audit.end, "ops", "ciso", "CHG-1", "staging")
    text = post_incident.render(record, context, audit, narrative)
    path = post_incident.write_document(tmp_path / "report", text)
    assert path.name == "incident-report.md"
    for event in record.timeline():
        assert f"| {iso(event.at)} | {event.what} |" in text
    assert f"| {TWILIO} | 2026-11-25T21:00:01.000+00:00 | 2026-11-25T21:00:02.500+00:00 | 1.5 s |" in text
    assert "| 2026-11-25T21:00:04.000+00:00 | 1.5 s |" in text
    assert "Token pasted into a public gist" in text and "- Secret scanning on every repo" in text
    assert "| client-1 | read | mallory |" in text and "x\\|y" in text


def test_narrative_from_file_and_options(tmp_path: Path) -> None:
    notes = tmp_path / "notes.yaml"
    notes.write_text("root_cause: leaked in CI logs\npreventive_measures: [mask CI logs, rotate quarterly]\n")
    assert post_incident.load_narrative(notes).preventive_measures == ("mask CI logs", "rotate quarterly")
    both = post_incident.load_narrative(notes, root_cause="phishing", preventive=["FIDO2 for admins"])
    assert both.root_cause == "phishing" and both.preventive_measures == ("FIDO2 for admins",)
    assert post_incident.Narrative().missing() == ["root cause", "preventive measures"]
    with pytest.raises(post_incident.IncidentInputError):
        post_incident.audit(None, ACCESS_LOG, T0, T0 - dt.timedelta(seconds=1))  # type: ignore[arg-type]
    assert staging_policy().window == dt.timedelta(hours=24)


def test_a_resumed_rotation_keeps_the_interrupted_runs_start_and_revocation() -> None:
    record = IncidentRecord(started_at=T0 + dt.timedelta(minutes=5))  # the rerun started five minutes later
    outcome = record.resume(TWILIO, "sha256:old", started_at=T0, rotation_id="r-1",
                            revoked_at=T0 + dt.timedelta(seconds=2))
    record.revoked(TWILIO, "sha256:new", "provider rejects the compromised credential")
    assert record.started_at == T0 and outcome.resumed and outcome.rotation_id == "r-1"
    assert outcome.outage_from == T0 + dt.timedelta(seconds=2)
    assert [e.at for e in record.timeline()][:2] == [T0, T0 + dt.timedelta(seconds=2)]
    assert outcome.time_to_revoke is not None and outcome.time_to_revoke > dt.timedelta(minutes=5)


def test_the_notification_names_every_compromised_credential_with_its_status_and_says_when_the_incident_completes(
        ) -> None:
    """A failed or waiting credential is named, not left out; a later run that finishes it sends an update that says
    the incident is complete."""
    db_key, smtp = (default_config().credential(p).type for p in ("database", "smtp"))
    record = IncidentRecord(started_at=T0, compromised=(db_key, smtp), change_id="CHG-2")
    record.begin(db_key, "sha256:old-key")
    record.revoked(db_key, "sha256:new-key", "the compromised key opens no value")
    record.finished(db_key)
    record.begin(smtp, "sha256:old-password")
    record.waiting(smtp, "not revoked: still accepted at T (235) after 3 check(s) over 2s")
    first = notify.compose(record, STAKEHOLDERS, change_id="CHG-2", operator="ops", approver="ciso")
    body = first.get_content()
    assert f"  - {db_key}: revoked and replaced" in body
    assert f"  - {smtp}: waiting for the operator to revoke it at the provider's console" in body
    assert "incident IN PROGRESS" in body and "(in progress)" in str(first["Subject"])
    assert db_key in str(first["Subject"]) and smtp in str(first["Subject"])

    record.runs += [{"run": 1}, {"run": 2}]  # the rerun after the operator revoked the password
    record.revoked(smtp, "sha256:new-password", "provider rejects the compromised credential (535/5.7.8)")
    record.finished(smtp)
    update = notify.compose(record, STAKEHOLDERS, change_id="CHG-2", operator="ops", approver="ciso")
    assert str(update["Subject"]).startswith("[SECURITY] UPDATE Emergency credential rotation CHG-2 (complete)")
    assert f"  - {smtp}: revoked and replaced" in update.get_content() and "incident COMPLETE" in update.get_content()


def test_the_security_measures_review_is_recorded_as_the_operator_declared_it(tmp_path: Path) -> None:
    """The runbook's "Review Security Measures": who reviewed the firewall rules, access controls and monitoring,
    when, with what outcome, from --incident-notes; an area nobody declared reads "not recorded" (never "ok"); an
    entry without who/when/outcome is refused."""
    notes = tmp_path / "notes.yaml"
    notes.write_text("root_cause: token in a gist\npreventive_measures: [secret scanning]\nsecurity_review:\n"
                     "  - {area: firewall rules, who: alice, when: '2026-11-25T22:00Z', outcome: no change needed}\n"
                     "  - {area: monitoring, who: bob, when: '2026-11-25T22:30Z', outcome: 401 alert added}\n")
    narrative = post_incident.load_narrative(notes)
    assert narrative.security_rows() == [
        ("firewall rules", "alice", "2026-11-25T22:00Z", "no change needed"),
        ("access controls", "-", "-", "not recorded"),
        ("monitoring", "bob", "2026-11-25T22:30Z", "401 alert added")]
    record = rotated_record(generate_key().reveal(), generate_key().reveal())
    audit = post_incident.AuditResult(T0 - dt.timedelta(hours=1), T0, ("client",), "SELECT ...", [])
    context = post_incident.IncidentContext(audit.start, audit.end, "ops", "ciso", "CHG-1", "staging")
    text = post_incident.render(record, context, audit, narrative)
    assert "## Security measures reviewed (as declared by the operator)" in text
    assert "| access controls | - | - | not recorded |" in text and "| monitoring | bob |" in text
    notes.write_text("security_review:\n  - {area: firewall rules, who: alice}\n")
    with pytest.raises(post_incident.IncidentInputError, match="lacks when, outcome"):
        post_incident.load_narrative(notes)
