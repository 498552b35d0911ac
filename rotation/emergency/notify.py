"""Runbook "Emergency Rotation Procedure", step 5, Notify Stakeholders: one e-mail to the security team, the system
administrators and the compliance officer (the configuration's [stakeholders]), over SMTP with verified STARTTLS
(rotation.monitoring.alerts.send_message), saying what was rotated, when, and what the access review found.
Fingerprints only: composing refuses a body that holds any credential of the app's .env.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from rotation.core import envfile
from rotation.core.clock import utc_now
from rotation.core.config import Stakeholders
from rotation.core.deployment import Deployment
from rotation.core.errors import RotationError
from rotation.core.proof import Evidence, require
from rotation.emergency.incident import Delivery, IncidentRecord, hms, iso
from rotation.monitoring import alerts

SECRET_SUFFIXES = ("KEY", "TOKEN", "PASSWORD", "SECRET")  # .env variables whose values never go into a message
GROUPS = (("security team", "security_team"), ("system administrators", "system_administrators"),
          ("compliance officer", "compliance_officer"))

MailboxCheck = Callable[[str], tuple[str, ...] | None]
"""Staging: the recipients the relay's own mailbox holds for a Message-ID (None when it holds no such message)."""


class NotificationError(RotationError, RuntimeError):
    """The notification could not be composed or delivered. Never carries a secret."""


def split_addresses(value: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (value or "").split(",") if a.strip())


def missing_groups(stakeholders: Stakeholders) -> list[str]:
    return [label for label, name in GROUPS if not any(a.strip() for a in getattr(stakeholders, name))]


def body_lines(record: IncidentRecord, *, change_id: str | None, operator: str, approver: str | None) -> list[str]:
    """Every compromised credential with its status as the incident record holds it (revoked and replaced, waiting
    for the operator, failed, not started): never only the ones that succeeded."""
    state = "COMPLETE" if record.complete else "IN PROGRESS"
    lines = [f"Emergency credential rotation (runbook: Emergency Rotation Procedure), change {change_id or '-'}: "
             f"incident {state}.",
             f"Incident started {iso(record.started_at)}" + (f", detected {iso(record.detected_at)}"
                                                             if record.detected_at else "")
             + f"; this is run {max(len(record.runs), 1)} of it, by {operator}"
             + (f", approved by {approver}." if approver else "."),
             "", "Compromised credentials:"]
    for kind, status in record.statuses().items():
        o = record.outcomes.get(kind)
        lines.append(f"  - {kind}: {status}")
        if o is not None and o.revoked_at:
            rejected = o.rejection or "not proven"
            lines.append(f"      revoked {iso(o.revoked_at)} (time to revoke {hms(o.time_to_revoke)}), service "
                         f"restored {iso(o.restored_at) or 'NOT YET'} (time to restore {hms(o.time_to_restore)}); "
                         f"old {o.old_fp} -> new {o.new_fp}; old credential now rejected: {rejected}")
        elif o is not None and o.waiting:
            lines.append(f"      {o.waiting}")
    if not record.statuses():
        lines.append("  (none)")
    review = record.review
    tables = f" ({review.access_table}, {review.communications_table})" if review else ""
    lines += ["", f"Access review{tables}:"]
    lines += [f"  {line}" for line in review.lines()] if review else ["  not run in this run"]
    lines += ["", "Next: post-incident audit and incident report within 24 hours (runbook: Post-Incident Actions).",
              "This message carries fingerprints (sha256 prefixes) only, never a credential."]
    return lines


def compose(record: IncidentRecord, stakeholders: Stakeholders, *, change_id: str | None, operator: str,
            approver: str | None, secrets: Iterable[str] = ()) -> EmailMessage:
    missing = missing_groups(stakeholders)
    if missing:
        raise NotificationError(f"no address configured for: {', '.join(missing)} (the configuration's "
                                "[stakeholders], or --notify-security, --notify-sysadmins, --notify-compliance)")
    text = "\n".join(body_lines(record, change_id=change_id, operator=operator, approver=approver)) + "\n"
    if any(s and s in text for s in secrets):
        raise NotificationError("the notification body would contain a credential; not sent")
    kinds = ", ".join(record.statuses()) or "no credential"
    update = "UPDATE " if len(record.runs) > 1 else ""
    state = "complete" if record.complete else "in progress"
    msg = EmailMessage()
    msg["Subject"] = (f"[SECURITY] {update}Emergency credential rotation{f' {change_id}' if change_id else ''} "
                      f"({state}): {kinds}")
    msg["From"] = stakeholders.sender
    msg["To"] = ", ".join(stakeholders.all())
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=stakeholders.sender.rpartition("@")[2] or "localhost")
    msg.set_content(text)
    return msg


def send(msg: EmailMessage, settings: alerts.SmtpSettings, *, ca_file: Path | None = None) -> Delivery:
    """Deliver to every recipient or raise NotificationError naming the relay and the reason."""
    try:
        alerts.send_message(msg, settings, ca_file=ca_file)
    except alerts.AlertError as exc:
        raise NotificationError(f"stakeholder notification NOT delivered: {exc}") from None
    body = msg.get_content().encode()
    return Delivery(str(msg["Message-ID"]), tuple(a.strip() for a in str(msg["To"]).split(",")), utc_now(),
                    hashlib.sha256(body).hexdigest(), f"{settings.host}:{settings.port} (STARTTLS, verified)")


def unfolded(header: object) -> str:
    """A header value without the folding whitespace a long Message-ID may get in transit."""
    return "".join(str(header or "").split())


def env_secrets(env: dict[str, str], credential_envs: Iterable[str]) -> list[str]:
    """Every credential value in .env: the registry's, and any other variable named like a secret."""
    names = set(credential_envs) | {k for k in env if k.endswith(SECRET_SUFFIXES)}
    return [env[k] for k in sorted(names) if env.get(k)]


# --- the steps of the notification ------------------------------------------------------------------------------------

@dataclass
class StakeholderNotification:
    """features/emergency/access_review.feature, second scenario: the message goes through the app's own SMTP settings
    in .env (after an SMTP rotation: the new password)."""

    deployment: Deployment
    stakeholders: Stakeholders
    stakeholders_source: str
    incident: IncidentRecord
    change_id: str | None
    approver: str | None
    mailbox: MailboxCheck | None = None
    message: EmailMessage | None = None

    def _secrets(self) -> list[str]:
        env = envfile.read_env(self.deployment.env_file)
        return env_secrets(env, (c.env for c in self.deployment.config.credentials))

    # Given the security team, the system administrators and the compliance officer have e-mail addresses
    def check_addresses(self, evidence: Evidence) -> None:
        s = self.stakeholders
        evidence.record("stakeholders", {label: list(getattr(s, name)) for label, name in GROUPS} | {"from": s.sender},
                        source=self.stakeholders_source)
        missing = missing_groups(s)
        require(not missing, f"no address for: {', '.join(missing)}")

    # When the notification is sent to them through the mail relay
    def send(self, evidence: Evidence) -> None:
        settings = alerts.SmtpSettings.from_env_file(self.deployment.env_file)
        evidence.register_secret(settings.password)
        self.message = compose(self.incident, self.stakeholders, change_id=self.change_id,
                               operator=self.deployment.operator, approver=self.approver, secrets=self._secrets())
        try:
            delivery = send(self.message, settings)
        except NotificationError as exc:
            self.incident.notification_error = str(exc)
            self.incident.note(f"stakeholder notification FAILED: {exc}")
            evidence.record("notification delivery", {"verdict": "not accepted by the relay", "error": str(exc)},
                            source=f"smtplib to {settings.host}:{settings.port}: STARTTLS (verified), AUTH, "
                                   "MAIL FROM / RCPT TO / DATA")
            return
        self.incident.notification = delivery
        self.incident.note(f"notification accepted by the relay for: {', '.join(delivery.recipients)}",
                           at=delivery.accepted_at)
        # SMTP proves acceptance by the relay (250), never delivery: the evidence claims no more.
        evidence.record("notification delivery", {"verdict": "accepted by the relay (250); delivery not proven",
                                                  **delivery.as_evidence()},
                        source=f"smtplib to {settings.host}:{settings.port}: STARTTLS (verified), AUTH, MAIL FROM / "
                               "RCPT TO / DATA -> 250")

    # Then the relay accepted it for every stakeholder
    def check_accepted(self, evidence: Evidence) -> None:
        d = self.incident.notification
        require(d is not None, self.incident.notification_error or "the notification was not sent")
        assert d is not None
        wanted = set(self.stakeholders.all())
        require(set(d.recipients) == wanted, f"the relay accepted it for {sorted(d.recipients)}, not {sorted(wanted)}")
        if self.mailbox is None:
            return
        received = self.mailbox(unfolded(d.message_id))
        evidence.record("relay mailbox", {
            "verdict": ("rehearsal: delivered to the stand-in's mailbox for every stakeholder"
                        if received is not None and set(received) == wanted else "not in the stand-in's mailbox"),
            "message_id": d.message_id, "recipients": list(received or ())},
                        source="the mail relay's own mailbox (staging stand-in)")
        require(received is not None and set(received) == wanted,
                f"the relay's mailbox does not hold {d.message_id} for every stakeholder: {received}")

    # Then the notification says what was rotated, when, and what the review found, without any credential
    def check_content(self, evidence: Evidence) -> None:
        require(self.message is not None, "no notification was composed in this run")
        assert self.message is not None
        text = self.message.get_content()
        evidence.record("notification text", {"subject": str(self.message["Subject"]), "body": text,
                                              "sha256": hashlib.sha256(text.encode()).hexdigest()},
                        source="rotation.emergency.notify.compose")
        for outcome in self.incident.rotated():
            require(outcome.credential_type in text and str(iso(outcome.revoked_at)) in text,
                    f"the notification does not say when {outcome.credential_type} was revoked")
        for kind, status in self.incident.statuses().items():
            require(f"  - {kind}: {status}" in text, f"the notification does not give {kind}'s status ({status})")
        review = self.incident.review
        require(review is None or review.summary() in text, "the notification lacks the review's findings")
        leaked = [s for s in self._secrets() if len(s) >= 16 and s in text]
        require(not leaked, f"the notification contains {len(leaked)} credential value(s) of .env")
