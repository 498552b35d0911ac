"""Steps and fixtures of the emergency procedure: rotation of compromised credentials, access review, stakeholder
notification and post-incident audit. Steps stay thin: the work is in rotation.{db_key, access_review, notify,
post_incident}; the run's incident record (a session fixture) collects each step's timestamps for the report."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path

import psycopg
import pytest
from pytest_bdd import given, parsers, then, when

from rotation.core import app_control, envfile
from rotation.core.database import connect
from rotation.core.rotation_log import RotationRecord, find_rotation, log_rotation
from rotation.core.secret import Secret, fingerprint
from rotation.db_key import procedure as db_key
from rotation.emergency import access_review, notify, post_incident
from rotation.emergency.incident import IncidentRecord, iso, utc_now
from rotation.emergency.plan import aware_moment
from rotation.emergency.revoke import Revocation, revoke_and_replace
from rotation.monitoring import alerts
from rotation.providers.base import Provider
from rotation.providers.factory import provider_for
from rotation.providers.smtp import OperatorConsole
from rotation_pytest.emergency import INCIDENT, INCIDENT_REPORT, stakeholders_of
from rotation_pytest.progress import say
from staging.provider_standins import STAGING_POLICY, ProviderStandIns, provider_standins
from staging.seed_activity import seed_activity, staging_policy
from staging.world import World, staging_world
from steps.db_key import DbKeyRotation

REASON = "emergency"
STAGING_ROOT_CAUSE = "Staging rehearsal: every credential is treated as compromised (simulated incident)."
STAGING_MEASURES = ("Rehearse `pytest -m emergency` in staging every month",
                    "Alert on any access-review finding within one hour")


# --- session fixtures: one incident, one world ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def incident(pytestconfig: pytest.Config) -> IncidentRecord:
    record = pytestconfig.stash[INCIDENT] = IncidentRecord()
    return record


@pytest.fixture(scope="session")
def incident_standins(target: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderStandIns | None]:
    """Staging: the Twilio, Graph and SMTP stand-ins for the whole incident (the providers and the mail relay).
    Live: none."""
    if target == "live":
        yield None
        return
    with provider_standins(tmp_path_factory.mktemp("providers")) as started:
        yield started


@pytest.fixture(scope="session")
def incident_world(pytestconfig: pytest.Config, target: str, pg_server, incident_standins: ProviderStandIns | None,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Staging: one CRM world for the whole incident, with a normal access and message history seeded.
    Live: the configured systems."""
    if target == "live":
        from rotation_pytest.fixtures import live_world

        yield live_world(pytestconfig)
        return
    rows = pytestconfig.getoption("rows")
    with staging_world(pg_server.admin_dsn, tmp_path_factory.mktemp("incident") / "app", rows=rows,
                       server_log=pg_server.server_log, extra_env=incident_standins.env()) as staged:
        seed_activity(staged.dsn, clients=rows)
        yield staged


@pytest.fixture(scope="session")
def review_policy(pytestconfig: pytest.Config, target: str) -> access_review.ReviewPolicy:
    hours = pytestconfig.getoption("review_window_hours")
    window = dt.timedelta(hours=hours) if hours else None
    path = pytestconfig.getoption("review_policy")
    if path:
        return access_review.load_policy(Path(path), window=window)
    if target == "live":
        raise pytest.UsageError("a live access review needs --review-policy FILE (allowed_accessors, "
                                "allowed_networks, ...): without it every row would be flagged")
    return staging_policy(window or access_review.DEFAULT_WINDOW)


@pytest.fixture(scope="session")
def stakeholders(pytestconfig: pytest.Config) -> notify.Stakeholders:
    s = stakeholders_of(pytestconfig)
    return notify.Stakeholders(s.security_team, s.system_administrators, s.compliance_officer)


# --- the rotation in flight (one credential per scenario) ------------------------------------------------------------

CREDENTIAL_NAMES = {"Twilio auth token": "twilio_token", "WhatsApp access token": "whatsapp_token",
                    "SMTP password": "smtp_password", "database encryption key": "db_encryption_key"}
PROVIDER_OF = {"twilio_token": "twilio", "whatsapp_token": "whatsapp", "smtp_password": "smtp"}


@dataclass
class EmergencyRotation:
    credential_type: str = ""
    old: str = ""
    provider: Provider | None = None
    revocation: Revocation | None = None
    env_before: dict[str, str] | None = None


@pytest.fixture
def emergency_rotation() -> EmergencyRotation:
    return EmergencyRotation()


def _provider(name: str, env: dict[str, str], target: str, standins: ProviderStandIns | None) -> Provider:
    if target == "live":
        return provider_for(name, env, smtp_console=OperatorConsole())
    return provider_for(name, env, policy=STAGING_POLICY, smtp_console=standins.smtp_console)


@given(parsers.parse("the {credential_name} is reported compromised"))
def compromised_credential(world: World, target: str, credential_name: str, incident: IncidentRecord,
                           emergency_rotation: EmergencyRotation, db_rotation: DbKeyRotation,
                           backup_file: dict[str, Path], incident_standins: ProviderStandIns | None, evidence) -> None:
    credential_type = CREDENTIAL_NAMES[credential_name]
    env = envfile.read_env(world.env_file)
    if incident_standins is not None:
        for known in incident_standins.secrets():
            evidence.register_secret(known)
    name = db_key.ENV_NAME if credential_type == "db_encryption_key" else None
    if credential_type != "db_encryption_key":
        emergency_rotation.provider = _provider(PROVIDER_OF[credential_type], env, target, incident_standins)
        name = emergency_rotation.provider.env_name
    old = envfile.get_value(world.env_file, name)
    evidence.register_secret(old)
    emergency_rotation.credential_type, emergency_rotation.old = credential_type, Secret(old)
    emergency_rotation.env_before = env
    backup_file["path"] = envfile.backup(world.env_file)
    incident.begin(credential_type, fingerprint(old))
    evidence.record("compromised credential", {"credential_type": credential_type, "env": name,
                                               "fingerprint": fingerprint(old), "env backup": backup_file["path"].name},
                    source=f"{world.env_file.name}: {name}; cp .env {backup_file['path'].name}")


@when("the compromised credential is revoked at the provider and a replacement issued")
def revoked_at_provider(pytestconfig: pytest.Config, target: str, emergency_rotation: EmergencyRotation,
                        incident: IncidentRecord, evidence) -> None:
    r = emergency_rotation
    if target == "live" and r.provider.name == "smtp":
        say(pytestconfig, [f"  ACTION revoke the compromised SMTP password {fingerprint(r.old)} in the mail provider's "
                           "console NOW, then create the new one: it is asked for next (or set $SMTP_NEW_PASSWORD)"])
    r.revocation = revoke_and_replace(r.provider, r.old)
    evidence.register_secret(r.revocation.new)
    incident.outage(r.credential_type, f"compromised credential killed at {r.provider.name}: the app's credential "
                                       "is dead until the restart", at=r.revocation.revoked_at)
    incident.outcomes[r.credential_type].new_fp = fingerprint(r.revocation.new)
    evidence.record("provider actions, in order", r.revocation.as_evidence(),
                    source=f"rotation.emergency_rotation.revoke_and_replace({r.provider.name})")


@then("the provider rejects the compromised credential")
def provider_rejects(emergency_rotation: EmergencyRotation, incident: IncidentRecord, evidence) -> None:
    r = emergency_rotation
    result = r.provider.check(r.old)
    evidence.record("compromised credential at the provider", result.as_evidence(),
                    source=f"{r.provider.name} read-only call with the compromised credential")
    assert not result.accepted, f"{r.provider.name}: the compromised credential {result.credential_fp} is still " \
                                f"accepted after revocation ({result.detail})"
    incident.outcomes[r.credential_type].rejection = f"rejected {result.status}/{result.code}"
    incident.revoked(r.credential_type, fingerprint(r.revocation.new),
                     f"provider rejects the compromised credential ({result.status}/{result.code})")


@when("the .env file is updated with the new credential")
def env_updated_emergency(world: World, emergency_rotation: EmergencyRotation, incident: IncidentRecord,
                          evidence) -> None:
    r = emergency_rotation
    envfile.set_value(world.env_file, r.provider.env_name, r.revocation.new)
    at = incident.note(f"{r.credential_type}: .env updated with the new credential", r.credential_type)
    evidence.record(".env updated", {r.provider.env_name: fingerprint(r.revocation.new), "at": iso(at),
                                     "compromised credential dead since": iso(r.revocation.revoked_at)},
                    source=f"atomic rewrite of {world.env_file.name} (temp file + rename)")
    assert r.revocation.revoked_at <= at, "the new credential reached .env before the compromised one was revoked"
    after = envfile.read_env(world.env_file)
    changed = sorted(k for k in r.env_before.keys() | after.keys()
                     if k != r.provider.env_name and r.env_before.get(k) != after.get(k))
    assert envfile.file_mode(world.env_file) == 0o600 and not changed, f"mode or other settings changed: {changed}"


# --- compromised database encryption key ----------------------------------------------------------------------------

@when("the application services are stopped so that nothing reads with the compromised key")
def stop_for_db_key(world: World, incident: IncidentRecord, evidence) -> None:
    app_control.run(world.app.stop)
    result = app_control.wait_for_health(world.app.health_url, healthy=False, timeout_s=world.app.health_timeout_s)
    incident.outage("db_encryption_key", "application stopped")
    evidence.record("app stopped", {"health_status": result.status_code}, source=world.app.stop)
    assert not result.healthy, "the application still answers healthy after the stop command"


@when("a new database encryption key is generated for the emergency")
def new_emergency_key(world: World, db_rotation: DbKeyRotation, backup_file: dict[str, Path],
                      incident: IncidentRecord, evidence) -> None:
    db_rotation.env_before = envfile.read_env(world.env_file)
    db_rotation.keys = db_key.begin(world.env_file, backup_file["path"], reason=REASON)
    evidence.register_secret(db_rotation.keys.new)
    incident.outcomes["db_encryption_key"].new_fp = fingerprint(db_rotation.keys.new)
    evidence.record("new key", {"fingerprint": fingerprint(db_rotation.keys.new), "length": len(db_rotation.keys.new)},
                    source="rotation.keys.generate_key() (secrets.token_urlsafe(32))")


@then("the compromised key decrypts no value any more")
def db_key_revoked(world: World, db_rotation: DbKeyRotation, incident: IncidentRecord, evidence) -> None:
    counts = db_key.count_readable(world.dsn, db_rotation.keys.old)
    evidence.record("values readable with the compromised key", counts, source=db_key.COUNT_READABLE.strip())
    assert counts["readable"] == 0, f"{counts['readable']} of {counts['non_null']} values still open with the " \
                                    f"compromised key {fingerprint(db_rotation.keys.old)}"
    incident.outcomes["db_encryption_key"].rejection = f"opens 0 of {counts['non_null']} values"
    incident.revoked("db_encryption_key", fingerprint(db_rotation.keys.new),
                     f"revoked: every value re-encrypted, the compromised key opens 0 of {counts['non_null']}")


# --- shared by every compromised credential ---------------------------------------------------------------------------

@when("the application services are restarted immediately")
def restarted(world: World, incident: IncidentRecord, evidence) -> None:
    app_control.run(world.app.restart)
    incident.note("application restarted")
    evidence.record("app restarted", {"command": world.app.restart}, source=world.app.restart)


@then("the system is healthy again on the new credential")
def healthy_again(world: World, emergency_rotation: EmergencyRotation, incident: IncidentRecord, evidence) -> None:
    credential = emergency_rotation.credential_type
    result = app_control.wait_for_health(world.app.health_url, timeout_s=world.app.health_timeout_s)
    evidence.record("health after", {"status": result.status_code, "body": result.body},
                    source=f"GET {world.app.health_url}")
    assert result.healthy, f"the app is not healthy after the emergency rotation: {result.status_code} {result.body}"
    loaded = loaded_fingerprint(result.body, credential)
    expected = incident.outcomes[credential].new_fp
    assert loaded == expected, f"the app holds {credential} {loaded}, not the new {expected}"
    incident.restored(credential, "application healthy on the new credential")


def loaded_fingerprint(body: dict[str, object], credential: str) -> str | None:
    """The fingerprint of the credential the app reports it loaded (its /health checks)."""
    checks = body.get("checks", {}) if isinstance(body.get("checks"), dict) else {}
    check = checks.get({"db_encryption_key": "database", **PROVIDER_OF}[credential], {})
    if not isinstance(check, dict):
        return None
    found = check.get("key_fingerprint") or check.get("credential_fingerprint")
    return str(found) if found else None


def _log_row(world: World, r: EmergencyRotation, db_rotation: DbKeyRotation) -> RotationRecord | None:
    if r.credential_type == "db_encryption_key":
        return db_key.find_logged(world.dsn, db_rotation.keys)
    with connect(world.dsn) as conn:
        return find_rotation(conn, r.credential_type, r.old)


@when(parsers.parse('the rotation is logged with reason "{reason}"'))
def logged_emergency(world: World, emergency_rotation: EmergencyRotation, db_rotation: DbKeyRotation,
                     incident: IncidentRecord, operator: str, reason: str, evidence) -> None:
    r = emergency_rotation
    if r.credential_type == "db_encryption_key":
        record = db_key.log(world.dsn, db_rotation.keys, world.env_file, rotated_by=operator, reason=reason)
    else:
        with connect(world.dsn) as conn:
            record = log_rotation(conn, r.credential_type, rotated_by=operator, previous_secret=r.old, reason=reason)
    incident.outcomes[r.credential_type].rotation_id = record.rotation_id
    incident.note(f"{r.credential_type}: rotation logged (reason '{reason}')", r.credential_type)
    evidence.record("rotation log row written", {k: str(v) for k, v in record.__dict__.items()},
                    source=f"INSERT INTO security_credential_rotations (...) VALUES ('{r.credential_type}', ...)")


@then("security_credential_rotations records the emergency rotation of the compromised credential")
def emergency_logged(world: World, emergency_rotation: EmergencyRotation, db_rotation: DbKeyRotation, operator: str,
                     evidence) -> None:
    found = _log_row(world, emergency_rotation, db_rotation)
    evidence.record("rotation log row read back", {k: str(v) for k, v in found.__dict__.items()} if found else None,
                    source="SELECT ... FROM security_credential_rotations WHERE credential_type = %s AND "
                           "previous_key_hash = sha256(compromised credential)")
    assert found is not None, "no security_credential_rotations row records this rotation"
    assert found.rotation_reason == REASON, f"the rotation is logged with reason {found.rotation_reason!r}"
    assert found.rotated_by == operator


# --- access review ----------------------------------------------------------------------------------------------------

@given("the review policy names the allowed accessors, networks and the app's message markers")
def policy_given(world: World, review_policy: access_review.ReviewPolicy, evidence) -> None:
    evidence.record("access review policy", review_policy.summary(), source="--review-policy (staging: seeded policy)")


@when("crm_data_access_log and crm_communications are reviewed over the review window")
def reviewed(world: World, review_policy: access_review.ReviewPolicy, incident: IncidentRecord, evidence) -> None:
    with connect(world.dsn) as conn:
        incident.review = access_review.review(conn, review_policy)
    incident.note(f"access review: {incident.review.summary()}")
    evidence.record("access review", incident.review.as_evidence(),
                    source="\n\n".join(incident.review.queries.values()))


@then("the review states how many rows of each table it reviewed")
def review_counts(world: World, incident: IncidentRecord, evidence) -> None:
    result = incident.review
    with psycopg.connect(world.dsn) as conn:
        access = conn.execute("SELECT count(*) FROM crm_data_access_log WHERE access_timestamp > %s AND "
                              "access_timestamp <= %s", (result.window.start, result.window.end)).fetchone()[0]
        sent = conn.execute("SELECT count(*) FROM crm_communications WHERE created_at > %s AND created_at <= %s AND "
                            "status = ANY(%s)", (result.window.start, result.window.end,
                                                 list(access_review.SENT_STATUSES))).fetchone()[0]
    evidence.population("crm_data_access_log rows reviewed in the window", result.access_rows_reviewed, access)
    evidence.population("sent crm_communications rows reviewed in the window", result.communications_reviewed, sent)
    evidence.record("review summary", result.summary(), source="independent count(*) over the same window")
    assert (result.access_rows_reviewed, result.communications_reviewed) == (access, sent), \
        f"the review covered {result.access_rows_reviewed}/{access} access rows and " \
        f"{result.communications_reviewed}/{sent} messages"


@then("no access and no message is flagged for investigation")
def nothing_flagged(incident: IncidentRecord, evidence) -> None:
    result = incident.review
    evidence.record("flagged for investigation", [f.as_evidence() for f in result.flagged]
                    + [v.as_evidence() for v in result.volume], source="rotation.access_review.review")
    assert result.clean, "unauthorized access cannot be ruled out; investigate:\n" + "\n".join(result.lines())


# --- notification -----------------------------------------------------------------------------------------------------

@given("the security team, the system administrators and the compliance officer have e-mail addresses")
def recipients_known(world: World, stakeholders: notify.Stakeholders, evidence) -> None:
    evidence.record("stakeholders", {"security team": stakeholders.security_team, "system administrators":
                                     stakeholders.sysadmins, "compliance officer": stakeholders.compliance_officer},
                    source="--notify-security, --notify-sysadmins, --notify-compliance")
    assert not stakeholders.missing(), f"no address for: {', '.join(stakeholders.missing())}"


@pytest.fixture
def notification() -> dict[str, object]:
    return {}


@when("the notification is sent over SMTP with verified STARTTLS")
def notification_sent(world: World, pytestconfig: pytest.Config, incident: IncidentRecord,
                      stakeholders: notify.Stakeholders, operator: str, notification: dict[str, object],
                      evidence) -> None:
    env = envfile.read_env(world.env_file)
    settings = alerts.SmtpSettings.from_env_file(world.env_file)
    evidence.register_secret(settings.password)
    msg = notify.compose(incident, stakeholders, sender=pytestconfig.getoption("notify_from") or env.get("SMTP_FROM")
                         or notify.DEFAULT_FROM, change_id=pytestconfig.getoption("change_id"),
                         operator=operator, approver=pytestconfig.getoption("approver"),
                         secrets=[v for k, v in env.items() if k.endswith(("KEY", "TOKEN", "PASSWORD", "SECRET"))])
    notification["message"] = msg
    try:
        incident.notification = notify.send(msg, settings, ca_file=Path(env["SMTP_CA_FILE"])
                                            if env.get("SMTP_CA_FILE") else None)
    except notify.NotificationError as exc:
        notification["error"] = str(exc)
        incident.note(f"stakeholder notification FAILED: {exc}")
        return
    incident.note(f"stakeholders notified: {', '.join(incident.notification.recipients)}",
                  at=incident.notification.accepted_at)


@then("the relay accepted it for every stakeholder")
def notification_accepted(incident: IncidentRecord, stakeholders: notify.Stakeholders,
                          incident_standins: ProviderStandIns | None,
                          notification: dict[str, object], evidence) -> None:
    d = incident.notification
    evidence.record("notification delivery", {"message_id": d.message_id, "recipients": d.recipients,
                                              "accepted_at": iso(d.accepted_at), "relay": d.relay,
                                              "body_sha256": d.body_sha256} if d else notification.get("error"),
                    source="smtplib: STARTTLS (verified), AUTH, MAIL FROM / RCPT TO / DATA -> 250")
    assert d is not None, notification.get("error", "the notification was not sent")
    assert set(d.recipients) == set(stakeholders.all())
    if incident_standins is not None:  # staging: the provider's side of the delivery, as its mailbox shows it
        received = [m["rcpt_tos"] for m in list(incident_standins.smtp.messages)
                    if _unfolded(message_from_bytes(m["data"])["Message-ID"]) == _unfolded(d.message_id)]
        assert received and set(received[0]) == set(stakeholders.all()), \
            f"the relay's mailbox does not hold {d.message_id} for every stakeholder"


def _unfolded(header: object) -> str:
    """A header value without the folding whitespace a long Message-ID may get in transit."""
    return "".join(str(header or "").split())


@then("the notification says what was rotated, when, and what the review found, without any credential")
def notification_content(world: World, incident: IncidentRecord, notification: dict[str, object], evidence) -> None:
    msg = notification["message"]
    text = msg.get_content()
    evidence.record("notification text", {"subject": str(msg["Subject"]), "body": text,
                                          "sha256": hashlib.sha256(text.encode()).hexdigest()},
                    source="rotation.notify.compose")
    for outcome in incident.rotated():
        assert outcome.credential_type in text and iso(outcome.revoked_at) in text, \
            f"the notification does not say when {outcome.credential_type} was revoked"
    if incident.review:
        assert incident.review.summary() in text, "the notification lacks the review's findings"
    env = envfile.read_env(world.env_file)
    leaked = [k for k, v in env.items() if len(v) >= 16 and v in text]
    assert not leaked, f"the notification contains the value of {', '.join(leaked)}"


# --- post-incident ----------------------------------------------------------------------------------------------------

@pytest.fixture
def incident_window() -> dict[str, dt.datetime]:
    return {}


@given("the incident window from --incident-start to --incident-end")
def window_given(pytestconfig: pytest.Config, target: str, incident: IncidentRecord,
                 incident_window: dict[str, dt.datetime], evidence) -> None:
    start, end = pytestconfig.getoption("incident_start"), pytestconfig.getoption("incident_end")
    if target == "live" and not start:
        pytest.skip("post-incident audit: pass --incident-start and --incident-end (within 24 hours of the incident)")
    incident_window["start"] = aware_moment(start, "--incident-start") if start else incident.started_at - \
        dt.timedelta(hours=24)
    incident_window["end"] = aware_moment(end, "--incident-end") if end else utc_now()
    evidence.record("incident window", {k: iso(v) for k, v in incident_window.items()},
                    source="--incident-start/--incident-end (staging default: 24 h before the run .. now)")


@pytest.fixture
def audit_result() -> dict[str, post_incident.AuditResult]:
    return {}


@when("the runbook's audit query runs over the incident window")
def audit_ran(world: World, incident_window: dict[str, dt.datetime],
              audit_result: dict[str, post_incident.AuditResult], evidence) -> None:
    with psycopg.connect(world.dsn) as conn:
        audit_result["result"] = post_incident.audit(conn, incident_window["start"], incident_window["end"])
    evidence.record("audit of crm_data_access_log", audit_result["result"].as_evidence(),
                    source=post_incident.AUDIT_QUERY.strip())


@then("the audit lists every access in the incident window")
def audit_complete(world: World, audit_result: dict[str, post_incident.AuditResult], evidence) -> None:
    result = audit_result["result"]
    with psycopg.connect(world.dsn) as conn:
        total = conn.execute("SELECT count(*) FROM crm_data_access_log WHERE access_timestamp BETWEEN %s AND %s",
                             (result.start, result.end)).fetchone()[0]
    evidence.population("access log rows in the incident audit", len(result.rows), total)
    assert len(result.rows) == total, f"the audit lists {len(result.rows)} of {total} accesses in the window"


@dataclass
class IncidentDocument:
    text: str = ""
    narrative: post_incident.Narrative | None = None


@pytest.fixture
def incident_report() -> IncidentDocument:
    return IncidentDocument()


@when("the incident report is written to the run's report folder")
def report_written(pytestconfig: pytest.Config, target: str, operator: str, incident: IncidentRecord,
                   incident_window: dict[str, dt.datetime], audit_result: dict[str, post_incident.AuditResult],
                   incident_report: IncidentDocument, evidence) -> None:
    notes = pytestconfig.getoption("incident_notes")
    narrative = post_incident.load_narrative(Path(notes) if notes else None,
                                             root_cause=pytestconfig.getoption("root_cause"),
                                             preventive=pytestconfig.getoption("preventive_measure"))
    if target != "live" and not (narrative.root_cause or narrative.preventive_measures):
        narrative = post_incident.Narrative(STAGING_ROOT_CAUSE, STAGING_MEASURES)
    incident.note("incident report written")
    context = post_incident.IncidentContext(incident_window["start"], incident_window["end"], operator,
                                            pytestconfig.getoption("approver"), pytestconfig.getoption("change_id"),
                                            target)
    text = post_incident.render(incident, context, audit_result["result"], narrative)
    evidence.attach(post_incident.DOCUMENT_NAME, text)  # into the run folder, under the signed manifest
    incident_report.text, incident_report.narrative = text, narrative
    pytestconfig.stash[INCIDENT_REPORT] = Path(post_incident.DOCUMENT_NAME)
    evidence.record("incident report", {"file": post_incident.DOCUMENT_NAME, "timeline events": len(incident.events),
                                        "sha256": hashlib.sha256(text.encode()).hexdigest()},
                    source="rotation.post_incident.render -> the run folder (listed in manifest.json)")


@then("the incident report's timeline consists of this run's own timestamps")
def timeline_from_run(incident: IncidentRecord, incident_report: IncidentDocument) -> None:
    text = incident_report.text
    section = text.split("## Timeline", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| 20")]
    events = incident.timeline()
    assert events, "the run recorded no events"
    assert len(rows) == len(events), f"the timeline has {len(rows)} rows for {len(events)} recorded events"
    for row, event in zip(rows, events, strict=True):
        assert row.startswith(f"| {iso(event.at)} |"), f"timeline row {row!r} is not the run's event {event}"
        assert incident.started_at <= event.at <= utc_now()


@then("the incident report states time to revoke and time to restore for every rotated credential")
def report_times(incident: IncidentRecord, incident_report: IncidentDocument, evidence) -> None:
    text = incident_report.text
    evidence.record("time to revoke and restore", [o.as_evidence() for o in incident.outcomes.values()],
                    source="the run's own clock at each step")
    for o in incident.outcomes.values():
        assert o.time_to_revoke is not None, f"{o.credential_type} was not revoked in this run"
        assert o.time_to_restore is not None, f"{o.credential_type}: the service was not restored in this run"
        line = next((ln for ln in text.splitlines() if ln.startswith(f"| {o.credential_type} |")), "")
        assert iso(o.revoked_at) in line and iso(o.restored_at) in line, \
            f"the report's row for {o.credential_type} lacks its revoke and restore times"


@then("the incident report records the root cause and the preventive measures")
def report_narrative(incident_report: IncidentDocument) -> None:
    narrative = incident_report.narrative
    assert not narrative.missing(), f"the incident report lacks: {', '.join(narrative.missing())} " \
                                    "(--root-cause, --preventive-measure or --incident-notes FILE)"
    text = incident_report.text
    assert narrative.root_cause in text and all(m in text for m in narrative.preventive_measures)

