"""A minimal SMTP server for the alert-e-mail unit tests (including one WITHOUT STARTTLS, which the staging
SMTP stand-in cannot be): aiosmtpd on loopback, self-signed EC P-256 certificate, AUTH required."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from staging.postgres import free_port


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        self.messages.append(message_from_bytes(envelope.original_content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    ca_file: Path
    mailbox: Mailbox


@contextlib.contextmanager
def smtp_server(directory: Path, username: str, password: str, *, tls: bool = True) -> Iterator[SmtpServer]:
    cert_file, key_file = self_signed_cert(directory)
    mailbox = Mailbox()

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == username.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies 535 itself

    ctx = None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=tls,
                            auth_required=True, auth_require_tls=tls, authenticator=authenticator)
    controller.start()
    try:
        yield SmtpServer("localhost", port, username, password, cert_file, mailbox)
    finally:
        controller.stop()
