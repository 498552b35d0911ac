"""Runbook "Emergency Rotation Procedure", step 5, Notify Stakeholders: one e-mail to the security team, the system
administrators and the compliance officer, over SMTP with verified STARTTLS (rotation.alerts.send_message), saying
what was rotated, when, and what the access review found. Fingerprints only: composing refuses a body that holds
any secret the run handled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from rotation.emergency.incident import Delivery, IncidentRecord, hms, iso, utc_now
from rotation.monitoring import alerts

DEFAULT_FROM = "security-alerts@eventplanning.example.com"


class NotificationError(RuntimeError):
    """The notification could not be composed or delivered. Never carries a secret."""


@dataclass(frozen=True)
class Stakeholders:
    security_team: tuple[str, ...]
    sysadmins: tuple[str, ...]
    compliance_officer: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for address in (*self.security_team, *self.sysadmins, *self.compliance_officer):
            seen.setdefault(address.strip(), None)
        return tuple(a for a in seen if a)

    def missing(self) -> list[str]:
        groups = {"security team": self.security_team, "system administrators": self.sysadmins,
                  "compliance officer": self.compliance_officer}
        return [name for name, addresses in groups.items() if not any(a.strip() for a in addresses)]


def split_addresses(value: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (value or "").split(",") if a.strip())


def body_lines(record: IncidentRecord, *, change_id: str | None, operator: str, approver: str | None) -> list[str]:
    rotated = record.rotated()
    lines = [f"Emergency credential rotation (runbook: Emergency Rotation Procedure), change {change_id or '-'}.",
             f"Run started {iso(record.started_at)} by {operator}"
             + (f", approved by {approver}." if approver else "."),
             "", "Credentials revoked and replaced:"]
    for o in rotated:
        lines.append(f"  - {o.credential_type}: revoked {iso(o.revoked_at)} (time to revoke {hms(o.time_to_revoke)}), "
                     f"service restored {iso(o.restored_at) or 'NOT YET'} (time to restore {hms(o.time_to_restore)}); "
                     f"old {o.old_fp} -> new {o.new_fp}; old credential now rejected: {o.rejection or 'not proven'}")
    if not rotated:
        lines.append("  (none in this run)")
    lines += ["", "Access review (crm_data_access_log, crm_communications):"]
    lines += [f"  {line}" for line in record.review.lines()] if record.review else ["  not run in this run"]
    lines += ["", "Next: post-incident audit and incident report within 24 hours (runbook: Post-Incident Actions).",
              "This message carries fingerprints (sha256 prefixes) only, never a credential."]
    return lines


def compose(record: IncidentRecord, stakeholders: Stakeholders, *, sender: str, change_id: str | None,
            operator: str, approver: str | None, secrets: Iterable[str] = ()) -> EmailMessage:
    missing = stakeholders.missing()
    if missing:
        raise NotificationError(f"no address configured for: {', '.join(missing)} "
                                "(--notify-security, --notify-sysadmins, --notify-compliance)")
    text = "\n".join(body_lines(record, change_id=change_id, operator=operator, approver=approver)) + "\n"
    if any(s and s in text for s in secrets):
        raise NotificationError("the notification body would contain a credential; not sent")
    kinds = ", ".join(o.credential_type for o in record.rotated()) or "no credential"
    msg = EmailMessage()
    msg["Subject"] = f"[SECURITY] Emergency credential rotation{f' {change_id}' if change_id else ''}: {kinds}"
    msg["From"] = sender
    msg["To"] = ", ".join(stakeholders.all())
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
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
