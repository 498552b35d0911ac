"""The runbook's rotation alert e-mail ("Set Up Rotation Alerts"): SMTP with verified STARTTLS only."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from rotation.core.envfile import read_env
from rotation.core.errors import RotationError
from rotation.core.secret import Secret, reveal

SUBJECT = "Credential Rotation Alert"
DEFAULT_FROM = "alerts@eventplanning.example.com"
SMTP_SERVER_SETTINGS = ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME")
# The default name of the password's .env variable (not a password); callers pass the registry's SMTP credential's.
PASSWORD_SETTING = "SMTP_PASSWORD"  # noqa: S105
SMTP_SETTINGS = (*SMTP_SERVER_SETTINGS, PASSWORD_SETTING)


class AlertError(RotationError, RuntimeError):
    """The alert could not be sent. The message names settings and servers, never a credential."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    password: Secret | str = field(repr=False)
    ca_file: Path | None = None  # SMTP_CA_FILE in .env: a private CA to verify the server with (staging's)

    @classmethod
    def from_env_file(cls, path: Path, *, password_env: str = PASSWORD_SETTING) -> SmtpSettings:
        env = read_env(path)
        wanted = (*SMTP_SERVER_SETTINGS, password_env)
        missing = [name for name in wanted if not env.get(name)]
        if missing:
            raise AlertError(f"{path} lacks {', '.join(missing)}: "
                             f"the alert e-mail needs all of {', '.join(wanted)}")
        try:
            port = int(env["SMTP_PORT"])
        except ValueError:
            raise AlertError(f"SMTP_PORT in {path} is not a port number") from None
        ca_file = Path(env["SMTP_CA_FILE"]) if env.get("SMTP_CA_FILE") else None
        return cls(env["SMTP_HOST"], port, env["SMTP_USERNAME"], Secret(env[password_env]), ca_file)


def build_message(lines: list[str], to: str, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = SUBJECT
    msg["From"] = sender
    msg["To"] = to
    msg.set_content("\n".join(lines) + "\n")
    return msg


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verified against the system store, or only `ca_file` (staging's CA)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def send_alert(lines: list[str], to: str, settings: SmtpSettings, *, sender: str = DEFAULT_FROM,
               ca_file: Path | None = None, timeout: float = 30.0) -> None:
    """Connect, STARTTLS with a verified certificate, AUTH, send the lines. Any failure raises AlertError."""
    send_message(build_message(lines, to, sender), settings, ca_file=ca_file, timeout=timeout)


def send_message(msg: EmailMessage, settings: SmtpSettings, *, ca_file: Path | None = None,
                 timeout: float = 30.0) -> None:
    """Send any message over STARTTLS with a verified certificate after AUTH. Raises AlertError on any failure,
    including a server that accepts the message for only some of its recipients."""
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
            smtp.starttls(context=tls_context(ca_file or settings.ca_file))
            smtp.login(settings.username, reveal(settings.password))
            refused = smtp.send_message(msg)
    except smtplib.SMTPNotSupportedError:
        raise AlertError(f"{settings.host}:{settings.port} does not offer STARTTLS; "
                         "refusing to send in clear") from None
    except ssl.SSLCertVerificationError as e:
        raise AlertError(f"TLS certificate of {settings.host}:{settings.port} not verified: "
                         f"{e.verify_message}") from None
    except smtplib.SMTPAuthenticationError as e:
        raise AlertError(f"SMTP login as {settings.username} refused: {e.smtp_code}") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as e:
        raise AlertError(f"sending the alert via {settings.host}:{settings.port} failed: "
                         f"{type(e).__name__}: {_safe(str(e), reveal(settings.password))}") from None
    if refused:
        raise AlertError(f"{settings.host}:{settings.port} refused recipients: "
                         + ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in sorted(refused.items())))


def _safe(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text
