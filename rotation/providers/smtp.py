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
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol, TypeVar

from rotation.core.config import Credential
from rotation.core.keys import WeakSecretError, check_strength
from rotation.core.secret import Secret
from rotation.providers.base import (
    CheckResult,
    Delivery,
    DeliveryReport,
    Operation,
    ProviderError,
    RegisteredCredential,
    RetryPolicy,
    Transient,
    registered,
    require_rejected,
    with_retries,
)

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
    """Where a new SMTP password comes from and where the old one is revoked."""

    def obtain(self) -> Secret: ...

    def retire(self, old: Secret) -> None: ...


@dataclass(frozen=True)
class OperatorConsole:
    """Live: the operator creates the password at the provider and hands it over in $SMTP_NEW_PASSWORD or at a
    getpass prompt; the old one is revoked by the operator at the provider (this tool then proves it is dead)."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    prompt: Callable[[str], str] = getpass.getpass
    confirm: Callable[[str], str] | None = None  # default: input() when stdin is a terminal, else no wait

    def obtain(self) -> Secret:
        password = self.environ.get(NEW_PASSWORD_ENV, "")
        if not password:
            password = self.prompt("New SMTP password (as created at the provider; not echoed): ")
        return Secret(password.strip())

    def retire(self, old: Secret) -> None:
        """The operator revokes the old password at the provider; the rotation then proves it is rejected (a
        rerun with `resume` finishes once it is)."""
        log.warning("smtp: revoke the old password %s at the provider now; the rotation proves it is rejected",
                    old.fingerprint)
        confirm = self.confirm or (input if sys.stdin is not None and sys.stdin.isatty() else None)
        if confirm is not None:
            confirm(f"Revoke the old SMTP password {old.fingerprint} at the provider, then press Enter: ")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    sender: str
    admin_email: str
    ca_file: str | None = None  # None: the system's trust store
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str], policy: RetryPolicy | None = None) -> SmtpSettings:
        username = env["SMTP_USERNAME"]
        return cls(env["SMTP_HOST"], int(env.get("SMTP_PORT") or 587), username, env.get("SMTP_FROM") or username,
                   env.get("ADMIN_EMAIL", ""), env.get("SMTP_CA_FILE") or None, policy or RetryPolicy())


def _text(reply: bytes | str) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else reply).strip()


def _enhanced_code(reply: bytes | str) -> str | None:
    first = _text(reply).split(" ", 1)[0]
    return first if first.count(".") == 2 and first.replace(".", "").isdigit() else None


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

    def _session(self, password: Secret, work: Callable[[smtplib.SMTP], T], operation: str) -> T:
        """Connect, STARTTLS (verified), AUTH, do `work`, QUIT; transient faults retried."""
        s = self.settings

        def attempt() -> T:
            try:
                with smtplib.SMTP(s.host, s.port, timeout=s.policy.timeout_s) as smtp:
                    smtp.starttls(context=self.tls_context())
                    smtp.login(s.username, password.reveal())
                    return work(smtp)
            except smtplib.SMTPConnectError as exc:
                if 400 <= exc.smtp_code < 500:
                    raise Transient(f"SMTP {exc.smtp_code} at greeting", exc.smtp_code) from None
                raise ProviderError(f"{NAME} {operation}: server refused the connection ({exc.smtp_code})",
                                    status=exc.smtp_code) from None
            except smtplib.SMTPAuthenticationError:
                raise
            except smtplib.SMTPResponseException as exc:
                if 400 <= exc.smtp_code < 500:
                    raise Transient(f"SMTP {exc.smtp_code}", exc.smtp_code) from None
                raise ProviderError(f"{NAME} {operation}: SMTP {exc.smtp_code} {_enhanced_code(exc.smtp_error) or ''}",
                                    status=exc.smtp_code, code=_enhanced_code(exc.smtp_error)) from None
            except ssl.SSLCertVerificationError as exc:
                raise ProviderError(f"{NAME} {operation}: the server's certificate failed verification "
                                    f"({exc.verify_message})", status="tls") from None
            except TimeoutError:
                raise Transient(f"no answer within {s.policy.timeout_s}s", "timeout") from None
            except smtplib.SMTPServerDisconnected as exc:
                if "timed out" in str(exc):  # smtplib reports a read timeout as a disconnection
                    raise Transient(f"no answer within {s.policy.timeout_s}s", "timeout") from None
                raise Transient("connection closed by the server", "connection") from None
            except (ConnectionError, OSError) as exc:
                raise Transient(f"connection failed ({type(exc).__name__})", "connection") from None

        return with_retries(s.policy, NAME, operation, attempt)

    def check(self, credential: Secret) -> CheckResult:
        """STARTTLS with a verified certificate, then AUTH: proves the password without sending anything."""
        def describe(smtp: smtplib.SMTP) -> str:
            tls = smtp.sock.version() if isinstance(smtp.sock, ssl.SSLSocket) else "none"
            return f"{tls}, certificate verified for {self.settings.host}; AUTH as {self.settings.username} accepted"
        try:
            detail = self._session(credential, describe, "login")
        except smtplib.SMTPAuthenticationError as exc:
            reply = _text(exc.smtp_error)
            return CheckResult(NAME, False, exc.smtp_code, _enhanced_code(reply), reply, credential.fingerprint)
        return CheckResult(NAME, True, 235, "2.7.0", detail, credential.fingerprint)

    def issue(self, current: Secret) -> Secret:
        """The operator's new password (staging: the stand-in console's). Refused when it fails the registry's
        strength policy or is the current one."""
        new = self.console.obtain()
        try:
            check_strength(new, self.credential.strength, name=f"the new {self.credential.label}", current=current)
        except WeakSecretError as exc:
            raise ProviderError(f"{NAME}: {exc}") from None
        return new

    def discard_pending(self, current: Secret, pending: Secret) -> None:
        """Abandoning a pending rotation: the password it created is revoked at the console."""
        self.console.retire(pending)

    def retire_old(self, old: Secret, new: Secret) -> None:
        self.console.retire(old)

    def send_test_message(self, credential: Secret, text: str) -> Delivery:
        s = self.settings
        if not s.admin_email:
            raise ProviderError(f"{NAME} test e-mail: ADMIN_EMAIL must be set")
        message = EmailMessage()
        message["From"], message["To"] = s.sender, s.admin_email
        message["Subject"] = "Credential rotation test: SMTP password"
        message["Message-ID"] = make_msgid(domain=s.sender.rpartition("@")[2] or "localhost")
        message.set_content(text)
        try:
            reply = self._session(credential, lambda smtp: self._transaction(smtp, message), "test e-mail")
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderError(f"{NAME} test e-mail: AUTH refused ({exc.smtp_code}) for {credential.fingerprint}",
                                status=exc.smtp_code, code=_enhanced_code(exc.smtp_error)) from None
        return Delivery(NAME, str(message["Message-ID"]), s.admin_email, reply, time.time())

    def _transaction(self, smtp: smtplib.SMTP, message: EmailMessage) -> str:
        """MAIL FROM, RCPT TO, DATA: the relay's reply that decides, as `<code> <text>` (a refusal is kept, not
        raised, so that the check of the test message judges it)."""
        steps: list[Callable[[], tuple[int, bytes]]] = [
            lambda: smtp.mail(self.settings.sender), lambda: smtp.rcpt(self.settings.admin_email),
            lambda: smtp.data(message.as_bytes(policy=policy.SMTP))]
        code, text = 0, b""
        for step in steps:
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
