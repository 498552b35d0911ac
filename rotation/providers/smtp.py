"""SMTP password (runbook section 4) through `smtplib`, always over STARTTLS with a verifying TLS context.

SMTP has no rotation API. The new password comes from a `PasswordConsole`: live, the operator creates it at the
provider (e.g. a Gmail App Password) and hands it over in an environment variable or at a getpass prompt (never
on the command line), and revokes the old one there; in staging the stand-in's console plays that part.
"""

from __future__ import annotations

import getpass
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import NoReturn, Protocol, TypeVar

from rotation.core.config import Credential
from rotation.core.keys import WeakSecretError, check_strength
from rotation.core.secret import Secret
from rotation.providers.base import (
    CheckResult,
    CredentialCheck,
    Delivery,
    DeliveryReport,
    Operation,
    ProviderError,
    ProviderUnavailable,
    RegisteredCredential,
    RetryPolicy,
    SendAnswerLost,
    Transient,
    registered,
    require_rejected,
    with_retries,
)
from rotation.providers.revocation import RevocationAct, Terminal, ask_operator, operator_terminal

T = TypeVar("T")
NAME = "smtp"
NEW_PASSWORD_ENV = "SMTP_NEW_PASSWORD"  # noqa: S105  (a variable name)
log = logging.getLogger("rotation.providers.smtp")
SOURCES: dict[Operation, str] = {
    "check": "smtplib: EHLO, STARTTLS (verifying context, TLS 1.2+), AUTH",
    "issue": "the provider's console (live: the operator, through $SMTP_NEW_PASSWORD or a prompt)",
    "discard": "the provider's console (live: the operator revokes the abandoned password)",
    "retire": "the provider's console (live: the operator revokes the old password)",
    "send": "smtplib: STARTTLS, AUTH, MAIL FROM / RCPT TO / DATA",
    "report": "the relay's replies to MAIL FROM, RCPT TO and DATA (250: accepted for delivery); SMTP reports no "
              "delivery",
}


class PasswordConsole(Protocol):
    """Where a new SMTP password comes from and where an old one is revoked."""

    def obtain(self) -> Secret: ...  # a new password (live: from the operator, asking if need be)

    def offered(self) -> Secret | None: ...  # a password the operator handed to this run without being asked

    def retire(self, old: Secret) -> RevocationAct: ...  # revoke it, or ask the person who can; says who and how


@dataclass(frozen=True)
class OperatorConsole:
    """Live: the operator creates the password at the provider and hands it over in $SMTP_NEW_PASSWORD or at a
    getpass prompt; the old one is revoked by the operator at the provider, asked at their terminal (/dev/tty, outside
    pytest's capture) or, without one, told in the log; the rotation then proves it refused."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    prompt: Callable[[str], str] = getpass.getpass
    terminal: Callable[[], Terminal | None] = operator_terminal

    def offered(self) -> Secret | None:
        password = self.environ.get(NEW_PASSWORD_ENV, "").strip()
        return Secret(password) if password else None

    def obtain(self) -> Secret:
        offered = self.offered()
        if offered is not None:
            return offered
        if self.prompt is getpass.getpass and self.terminal() is None:  # getpass would read pytest's stdin
            raise ProviderError(f"{NAME}: no new password was handed over and there is no terminal to ask at: create "
                                f"it at the provider, then run again with {NEW_PASSWORD_ENV} set in the environment")
        return Secret(self.prompt("New SMTP password (as created at the provider; not echoed): ").strip())

    def retire(self, old: Secret) -> RevocationAct:
        return ask_operator(f"Revoke the SMTP password {old.fingerprint} at the email provider's console now.",
                            self.terminal())


# Every .env setting the rotation reads besides the password, with what it is for and how to fix it when missing.
# The CRM's own names (crm-schema.md); ADMIN_EMAIL and SMTP_CA_FILE are read only by this tool.
SETTINGS: dict[str, tuple[str, str]] = {
    "SMTP_HOST": ("the submission server", "add SMTP_HOST=<the provider's submission host> to .env"),
    "SMTP_PORT": ("its port (default 587)", "set SMTP_PORT to a port number in .env, or remove it for 587"),
    "SMTP_USERNAME": ("the account whose password is rotated", "add SMTP_USERNAME=<the account> to .env"),
    "SMTP_FROM_EMAIL": ("the test e-mail's sender, as the app's own mail",
                        "add SMTP_FROM_EMAIL=<the sender the app uses> to .env"),
    "ADMIN_EMAIL": ("the test e-mail's recipient (read only by this tool)",
                    "add ADMIN_EMAIL=<an administrator's mailbox you can read> to .env (the app ignores it)"),
    "SMTP_CA_FILE": ("optional: a CA file for the server's certificate (default: the system's trust store)",
                     "point SMTP_CA_FILE at a readable PEM file, or remove it to use the system's trust store"),
}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    sender: str
    admin_email: str
    ca_file: str | None = None  # None: the system's trust store
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sender_name: str = ""
    port_text: str = ""  # SMTP_PORT as .env spells it, when it is not a number

    @classmethod
    def from_env(cls, env: Mapping[str, str], policy: RetryPolicy | None = None) -> SmtpSettings:
        """The settings as the CRM's .env names them; never raises: `problems()` names what is missing or wrong."""
        port_text = (env.get("SMTP_PORT") or "587").strip()
        return cls(env.get("SMTP_HOST", "").strip(), int(port_text) if port_text.isdigit() else 0,
                   env.get("SMTP_USERNAME", "").strip(), env.get("SMTP_FROM_EMAIL", "").strip(),
                   env.get("ADMIN_EMAIL", "").strip(), env.get("SMTP_CA_FILE") or None, policy or RetryPolicy(),
                   env.get("SMTP_FROM_NAME", "").strip(), "" if port_text.isdigit() else port_text)

    def problems(self) -> dict[str, str]:
        """Each setting a later step needs that is missing or unusable, with its fix (checked before any change)."""
        found = {"SMTP_HOST": bool(self.host), "SMTP_PORT": 0 < self.port < 65536,
                 "SMTP_USERNAME": bool(self.username), "SMTP_FROM_EMAIL": "@" in self.sender,
                 "ADMIN_EMAIL": "@" in self.admin_email,
                 "SMTP_CA_FILE": self.ca_file is None or os.access(self.ca_file, os.R_OK)}
        return {name: SETTINGS[name][1] for name, ok in found.items() if not ok}

    def as_evidence(self) -> dict[str, object]:
        return {"SMTP_HOST": self.host, "SMTP_PORT": self.port or self.port_text, "SMTP_USERNAME": self.username,
                "SMTP_FROM_EMAIL": self.sender, "SMTP_FROM_NAME": self.sender_name or "(none)",
                "ADMIN_EMAIL": self.admin_email, "SMTP_CA_FILE": self.ca_file or "(the system's trust store)"}


def _text(reply: bytes | str) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else reply).strip()


def _enhanced_code(reply: bytes | str) -> str | None:
    first = _text(reply).split(" ", 1)[0]
    return first if first.count(".") == 2 and first.replace(".", "").isdigit() else None


def definitive(code: int, reply: str) -> CredentialCheck:
    """What an AUTH reply proves. RFC 4954 section 6: 535 "authentication credentials invalid" is the permanent
    refusal; RFC 3463 X.7.x is the security class (5.7.8 as Postfix / Dovecot send it, 5.7.3 at Microsoft 365, 5.7.0
    elsewhere). 4xx (454 4.7.0 "temporary authentication failure") proves nothing and neither do other 5xx replies
    (534 mechanism too weak, 538 encryption required, 530 need STARTTLS): they are about the session, not the
    password."""
    enhanced = _enhanced_code(reply)
    if code == 535 and (enhanced is None or enhanced.startswith("5.7.")):
        return CredentialCheck.REFUSED
    return CredentialCheck.UNDECIDED


class _AuthTemporary(Transient):
    """A 4xx reply to AUTH: retried with backoff, never a refusal."""


@dataclass(frozen=True)
class SmtpProvider(RegisteredCredential):
    sources = SOURCES
    settings: SmtpSettings
    console: PasswordConsole
    credential: Credential = field(default_factory=lambda: registered(NAME))
    name: str = NAME

    def tls_context(self) -> ssl.SSLContext:
        """Verifying: certificate chain and host name, TLS 1.2 at least."""
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def input_problems(self) -> dict[str, str]:
        """Every .env setting a later step reads that is missing or unusable, with its fix."""
        return self.settings.problems()

    def inputs(self) -> dict[str, object]:
        return self.settings.as_evidence()

    def _login(self, smtp: smtplib.SMTP, password: Secret) -> None:
        """One AUTH with one mechanism (PLAIN where offered, else LOGIN): smtplib's login() tries every mechanism in
        turn, and a real relay answers each failure after a ~2 s delay, so one refusal would cost twice that."""
        smtp.ehlo_or_helo_if_needed()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        mechanism = "PLAIN" if "PLAIN" in offered or "LOGIN" not in offered else "LOGIN"
        smtp.user, smtp.password = self.settings.username, password.reveal()
        try:
            smtp.auth(mechanism, smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login)
        finally:
            smtp.password = ""  # smtplib keeps it on the object otherwise

    def _session(self, password: Secret, work: Callable[[smtplib.SMTP, list[str]], T], operation: str) -> T:
        """Connect, STARTTLS (verified), AUTH, do `work`, QUIT; transient faults retried, except once `work` has
        issued DATA (it appends "DATA" to its progress list): the relay may have queued the message, so a lost
        answer then is SendAnswerLost, never a second message."""
        s = self.settings

        def attempt() -> T:
            progress: list[str] = []
            try:
                with smtplib.SMTP(s.host, s.port, timeout=s.policy.timeout_s) as smtp:
                    smtp.starttls(context=self.tls_context())
                    self._login(smtp, password)
                    return work(smtp, progress)
            except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError) as exc:
                if "DATA" in progress:
                    raise SendAnswerLost(f"{NAME} {operation}: the connection ended after DATA without the relay's "
                                         f"answer ({type(exc).__name__})", status="no answer") from None
                return self._transport(exc, operation)
            except smtplib.SMTPConnectError as exc:
                if 400 <= exc.smtp_code < 500:
                    raise Transient(f"SMTP {exc.smtp_code} at greeting", exc.smtp_code) from None
                raise ProviderError(f"{NAME} {operation}: server refused the connection ({exc.smtp_code})",
                                    status=exc.smtp_code) from None
            except smtplib.SMTPAuthenticationError as exc:
                if 400 <= exc.smtp_code < 500:
                    raise _AuthTemporary(f"AUTH answered {exc.smtp_code} {_text(exc.smtp_error)}",
                                         exc.smtp_code) from None
                raise
            except smtplib.SMTPResponseException as exc:
                if 400 <= exc.smtp_code < 500:
                    raise Transient(f"SMTP {exc.smtp_code}", exc.smtp_code) from None
                raise ProviderError(f"{NAME} {operation}: SMTP {exc.smtp_code} {_enhanced_code(exc.smtp_error) or ''}",
                                    status=exc.smtp_code, code=_enhanced_code(exc.smtp_error)) from None
            except ssl.SSLCertVerificationError as exc:
                raise ProviderError(f"{NAME} {operation}: the server's certificate failed verification "
                                    f"({exc.verify_message})", status="tls") from None
            except OSError as exc:
                return self._transport(exc, operation)

        return with_retries(s.policy, NAME, operation, attempt)

    def _transport(self, exc: BaseException, operation: str) -> NoReturn:
        """A connection that failed or went quiet before anything was sent: retried."""
        timeout = self.settings.policy.timeout_s
        if isinstance(exc, TimeoutError) or "timed out" in str(exc):  # smtplib reports a read timeout so
            raise Transient(f"no answer within {timeout}s", "timeout") from None
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            raise Transient("connection closed by the server", "connection") from None
        raise Transient(f"connection failed ({type(exc).__name__})", "connection") from None

    def check(self, credential: Secret) -> CheckResult:
        """STARTTLS with a verified certificate, then AUTH: proves the password without sending anything. ACCEPTED
        on 235, REFUSED only on a permanent authentication failure (`definitive`), UNDECIDED otherwise: 4xx replies
        are retried with backoff first, and an outage that outlasts the retries decides nothing either."""
        def describe(smtp: smtplib.SMTP, _: list[str]) -> str:
            tls = smtp.sock.version() if isinstance(smtp.sock, ssl.SSLSocket) else "none"
            return f"{tls}, certificate verified for {self.settings.host}; AUTH as {self.settings.username} accepted"
        try:
            detail = self._session(credential, describe, "login")
        except smtplib.SMTPAuthenticationError as exc:
            reply = _text(exc.smtp_error)
            verdict = definitive(exc.smtp_code, reply)
            shown = reply if verdict is CredentialCheck.REFUSED else f"{reply} (not a verdict on the password)"
            return CheckResult(NAME, False, exc.smtp_code, _enhanced_code(reply), shown, credential.fingerprint,
                               verdict)
        except ProviderUnavailable as exc:
            return CheckResult(NAME, False, exc.status or "unavailable", None, f"{exc} (no verdict on the password)",
                               credential.fingerprint, CredentialCheck.UNDECIDED)
        return CheckResult(NAME, True, 235, "2.7.0", detail, credential.fingerprint, CredentialCheck.ACCEPTED)

    def offered(self) -> Secret | None:
        """A new password the operator handed to this run ($SMTP_NEW_PASSWORD), without asking for one."""
        return self.console.offered()

    def issue(self, current: Secret) -> Secret:
        """The operator's new password (staging: the stand-in console's). Refused when it fails the registry's
        strength policy or is the current one."""
        new = self.console.obtain()
        try:
            check_strength(new, self.credential.strength, name=f"the new {self.credential.label}", current=current)
        except WeakSecretError as exc:
            raise ProviderError(f"{NAME}: {exc}") from None
        return new

    def discard_pending(self, current: Secret, pending: Secret) -> RevocationAct:
        """Abandoning a pending rotation: the password it was given is revoked at the console (by whoever can)."""
        return self.console.retire(pending)

    def retire_old(self, old: Secret, new: Secret) -> RevocationAct:
        return self.console.retire(old)

    def message(self, text: str) -> EmailMessage:
        """The test e-mail as the app's own mail looks: From is SMTP_FROM_EMAIL (with SMTP_FROM_NAME), a Date, and a
        Message-ID that is also the nonce by which a lost answer is looked up before anything is sent again."""
        s = self.settings
        message = EmailMessage()
        message["From"] = formataddr((s.sender_name, s.sender)) if s.sender_name else s.sender
        message["To"] = s.admin_email
        message["Subject"] = "Credential rotation test: SMTP password"
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=s.sender.rpartition("@")[2] or "localhost")
        message.set_content(f"{text}\n\nMessage-ID: {message['Message-ID']}\n")
        return message

    def send_test_message(self, credential: Secret, text: str) -> Delivery:
        s = self.settings
        if "@" not in s.admin_email or "@" not in s.sender:
            raise ProviderError(f"{NAME} test e-mail: " + "; ".join(
                f"{k}: {v}" for k, v in s.problems().items() if k in ("ADMIN_EMAIL", "SMTP_FROM_EMAIL")))
        message = self.message(text)
        message_id = str(message["Message-ID"])
        try:
            reply = self._session(credential, lambda smtp, progress: self._transaction(smtp, message, progress),
                                  "test e-mail")
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderError(f"{NAME} test e-mail: AUTH refused ({exc.smtp_code}) for {credential.fingerprint}",
                                status=exc.smtp_code, code=_enhanced_code(exc.smtp_error)) from None
        except SendAnswerLost as lost:
            raise SendAnswerLost(str(lost), status=lost.status, message_id=message_id,
                                 recipient=s.admin_email) from None
        return Delivery(NAME, message_id, s.admin_email, reply, time.time())

    def _transaction(self, smtp: smtplib.SMTP, message: EmailMessage, progress: list[str]) -> str:
        """MAIL FROM (SMTP_FROM_EMAIL), RCPT TO, DATA: the relay's reply that decides, as `<code> <text>` (a refusal
        is kept, not raised, so that the check of the test message judges it)."""
        steps: list[tuple[str, Callable[[], tuple[int, bytes]]]] = [
            ("MAIL", lambda: smtp.mail(self.settings.sender)), ("RCPT", lambda: smtp.rcpt(self.settings.admin_email)),
            ("DATA", lambda: smtp.data(message.as_bytes(policy=policy.SMTP)))]
        code, text = 0, b""
        for command, step in steps:
            progress.append(command)
            code, text = step()
            if code not in (250, 251):
                break
        return f"{code} {_text(text)}"

    def delivery_report(self, credential: Secret, delivery: Delivery) -> DeliveryReport:
        """SMTP says no more than that the relay accepted the message (250) for delivery; any other reply to MAIL,
        RCPT or DATA is a refusal."""
        code = delivery.status.split(" ", 1)[0]
        if code != "250":
            return DeliveryReport("failed", delivery.status, _enhanced_code(delivery.status.split(" ", 1)[-1]),
                                  f"the relay refused the test e-mail {delivery.message_id} for {delivery.recipient}: "
                                  f"{delivery.status}", self.source("report"), accepted_by="the relay (250)")
        return DeliveryReport("accepted", delivery.status, None,
                              f"the relay accepted {delivery.message_id} for {delivery.recipient} ({delivery.status});"
                              " SMTP does not report delivery", self.source("report"), accepted_by="the relay (250)")

    def expect_rejected(self, credential: Secret) -> CheckResult:
        return require_rejected(self.check(credential))
