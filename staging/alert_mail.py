"""The alert mail account in staging: the SMTP stand-in (STARTTLS required, AUTH only over TLS, a certificate from
staging's private CA) with the app's .env pointing at it, and what the administrator's mailbox then received."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message

from rotation.core import envfile
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.proof import Evidence, require
from rotation.monitoring.check import DailyCheck, smtp_password_env
from staging.smtp_standin import Received, SmtpStandIn


def configure(smtp: SmtpStandIn, deployment: Deployment, evidence: Evidence) -> None:
    """A fresh password for the stand-in's account, and the SMTP settings in .env, as the app keeps them."""
    password = generate_key()
    evidence.register_secret(password)
    smtp.add_password(password.reveal())
    settings = {"SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port), "SMTP_USERNAME": smtp.username,
                "SMTP_CA_FILE": str(smtp.ca_file)}
    for name, value in settings.items():
        envfile.set_value(deployment.env_file, name, value)
    envfile.set_value(deployment.env_file, smtp_password_env(deployment.config), password)
    evidence.record("alert mail account", {"server": f"{smtp.host}:{smtp.port}", "account": smtp.username,
                                           "password": password.fingerprint, "STARTTLS": "required",
                                           "login": "only after STARTTLS", "certificate": "staging's private CA"},
                    source="SMTP stand-in (aiosmtpd: require_starttls, auth_require_tls); .env: SMTP_HOST, "
                           "SMTP_PORT, SMTP_USERNAME, the SMTP password, SMTP_CA_FILE")


def _summary(received: Received) -> dict[str, object]:
    msg = message_from_bytes(received["data"])
    return {"subject": msg["Subject"], "to": msg["To"], "envelope to": received["rcpt_tos"],
            "over TLS": received["tls"], "authenticated": received["authenticated"], "lines": _lines(msg)}


def _lines(msg: Message) -> list[str]:
    payload = msg.get_payload(decode=True)
    return payload.decode().splitlines() if isinstance(payload, bytes) else []


def _received(smtp: SmtpStandIn, evidence: Evidence) -> list[dict[str, object]]:
    summaries = [_summary(m) for m in list(smtp.messages)]
    evidence.record("alert e-mails received", summaries,
                    source=f"the SMTP stand-in's mailbox on {smtp.host}:{smtp.port}")
    return summaries


def require_one_alert(smtp: SmtpStandIn, daily: DailyCheck, subject: str, lines: list[str],
                      evidence: Evidence) -> None:
    """Exactly one e-mail, to the alert address, over STARTTLS after AUTH, with this subject and exactly these lines."""
    received = _received(smtp, evidence)
    require(len(received) == 1, f"{len(received)} e-mails received, expected 1 ({daily.alert.describe()})")
    got = received[0]
    require(bool(got["over TLS"]) and bool(got["authenticated"]), "the alert was not sent over STARTTLS after AUTH")
    require(got["subject"] == subject, f"the e-mail's subject is {got['subject']!r}, expected {subject!r}")
    require(got["to"] == daily.alert.to and got["envelope to"] == [daily.alert.to],
            f"the e-mail went to {got['envelope to']} (To: {got['to']}), expected {daily.alert.to}")
    require(got["lines"] == lines, f"the e-mail holds the lines {got['lines']}, expected {lines}")


def require_no_alert(smtp: SmtpStandIn, daily: DailyCheck, evidence: Evidence) -> None:
    received = _received(smtp, evidence)
    require(not received, f"{len(received)} alert e-mail(s) sent although nothing was expected to be due: "
                          f"{daily.alert.lines}")


def column(table: list[list[str]], name: str) -> list[str]:
    """One column of a feature's data table, without its header."""
    header, *rows = table
    index = header.index(name)
    return [row[index] for row in rows]
