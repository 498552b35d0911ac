"""Steps of the emergency procedure: the rotation of a compromised credential, the access review, the stakeholder
notification and the post-incident actions. Each calls one method of the procedure objects in rotation.emergency;
the fixtures that build them (one incident world per session) are in rotation_pytest/emergency.py."""

from __future__ import annotations

from pytest_bdd import given, parsers, then, when

from rotation.core.proof import Evidence
from rotation.emergency.access_review import AccessReview
from rotation.emergency.notify import StakeholderNotification
from rotation.emergency.post_incident import PostIncident
from rotation.emergency.procedure import DbKeyEmergency, EmergencyProcedure, ProviderEmergency

# --- every compromised credential -------------------------------------------------------------------------------------


@given(parsers.parse("the {label} is reported compromised"))
def reported_compromised(emergency_rotation: EmergencyProcedure, label: str, evidence: Evidence) -> None:
    emergency_rotation.report_compromised(label, evidence)


@when("the application services are restarted immediately")
def restarted_immediately(emergency_rotation: EmergencyProcedure, evidence: Evidence) -> None:
    emergency_rotation.restart(evidence)


@then("the system is healthy again on the new credential")
def healthy_on_new(emergency_rotation: EmergencyProcedure, evidence: Evidence) -> None:
    emergency_rotation.check_healthy(evidence)


@when('the rotation is logged with reason "emergency"')
def logged_emergency(emergency_rotation: EmergencyProcedure, evidence: Evidence) -> None:
    emergency_rotation.log(evidence)


@then("the rotation log records the emergency rotation of the compromised credential")
def emergency_logged(emergency_rotation: EmergencyProcedure, evidence: Evidence) -> None:
    emergency_rotation.check_logged(evidence)


# --- a provider credential (Twilio, WhatsApp, SMTP) -------------------------------------------------------------------

@when("the compromised credential is revoked at the provider and a replacement issued")
def revoked_and_replaced(emergency_rotation: ProviderEmergency, evidence: Evidence) -> None:
    emergency_rotation.revoke_and_replace(evidence)


@then("the provider rejects the compromised credential")
def provider_rejects(emergency_rotation: ProviderEmergency, evidence: Evidence) -> None:
    emergency_rotation.check_rejected(evidence)


@when("the .env file is updated with the new credential")
def env_updated(emergency_rotation: ProviderEmergency, evidence: Evidence) -> None:
    emergency_rotation.write_env(evidence)


# --- the database encryption key --------------------------------------------------------------------------------------

@when("the application services are stopped so that nothing reads with the compromised key")
def stopped_for_key(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.stop_app(evidence)


@when("a replacement database encryption key is generated")
def key_generated(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.generate_key(evidence)


@when("the .env file is updated with the replacement key")
def env_updated_with_key(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.write_env(evidence)


@then("the .env file holds the replacement key, keeps mode 0600 and every other setting")
def env_holds_key(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.check_env(evidence)


@when("all sensitive data is re-encrypted under the replacement key")
def reencrypted(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.reencrypt(evidence)


@then("every encrypted value decrypts with the replacement key to its original plaintext")
def opens_with_new_key(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.verify_new_key(evidence)


@then("the compromised key decrypts no value any more")
def old_key_dead(emergency_rotation: DbKeyEmergency, evidence: Evidence) -> None:
    emergency_rotation.verify_old_key_dead(evidence)


# --- verify no unauthorized access ------------------------------------------------------------------------------------

@given("the review policy names the allowed accessors, networks and the app's message markers")
def review_policy_named(incident_review: AccessReview, evidence: Evidence) -> None:
    incident_review.state_policy(evidence)


@when("the data access log and the messages sent are reviewed over the review window")
def reviewed(incident_review: AccessReview, evidence: Evidence) -> None:
    incident_review.run(evidence)


@then("the review states how many rows of each table it reviewed")
def review_counts(incident_review: AccessReview, evidence: Evidence) -> None:
    incident_review.check_counts(evidence)


@then("no access and no message is flagged for investigation")
def nothing_flagged(incident_review: AccessReview, evidence: Evidence) -> None:
    incident_review.check_nothing_flagged(evidence)


# --- notify stakeholders ----------------------------------------------------------------------------------------------

@given("the security team, the system administrators and the compliance officer have e-mail addresses")
def stakeholders_known(stakeholder_notification: StakeholderNotification, evidence: Evidence) -> None:
    stakeholder_notification.check_addresses(evidence)


@when("the notification is sent to them through the mail relay over a verified encrypted connection")
def notification_sent(stakeholder_notification: StakeholderNotification, evidence: Evidence) -> None:
    stakeholder_notification.send(evidence)


@then("the relay accepted it for every stakeholder")
def notification_accepted(stakeholder_notification: StakeholderNotification, evidence: Evidence) -> None:
    stakeholder_notification.check_accepted(evidence)


@then("the notification says what was rotated, when, and what the review found, without any credential")
def notification_content(stakeholder_notification: StakeholderNotification, evidence: Evidence) -> None:
    stakeholder_notification.check_content(evidence)


# --- post-incident actions --------------------------------------------------------------------------------------------

@given("the incident window the operator named")
def incident_window(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.name_window(evidence)


@when("the runbook's audit query runs over the incident window")
def audit_ran(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.run_audit(evidence)


@then("the audit lists every access in the incident window")
def audit_complete(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.check_audit_complete(evidence)


@when("the incident report is written to the run's report folder")
def report_written(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.write_report(evidence)


@then("the incident report's timeline consists of this run's own timestamps")
def timeline_from_run(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.check_timeline(evidence)


@then("the incident report states time to revoke and time to restore for every rotated credential")
def report_times(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.check_times(evidence)


@then("the incident report records the root cause and the preventive measures")
def report_narrative(post_incident_actions: PostIncident, evidence: Evidence) -> None:
    post_incident_actions.check_narrative(evidence)
