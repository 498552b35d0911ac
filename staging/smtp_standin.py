"""An SMTP submission stand-in: aiosmtpd on loopback requiring STARTTLS and AUTH, with a runtime-changeable password.

At start-up it makes a self-signed EC P-256 certificate with `cryptography` (CN=localhost, SAN DNS:localhost and
IP:127.0.0.1) and writes it as the CA file a verifying client trusts. The replies it really sends, each as a Postfix
3.7 submission service with Dovecot 2.3 SASL sends it (checked 2026-12, ../shared/notes/integration-facts.md):

    220 greeting; EHLO advertises STARTTLS (before TLS), AUTH LOGIN PLAIN (after TLS) and ENHANCEDSTATUSCODES
    530 5.7.0  MAIL, RCPT, DATA or AUTH before STARTTLS (Postfix smtpd_tls_security_level=encrypt; aiosmtpd's
               require_starttls answers AUTH so too, never 538)
    554 5.5.1  a second STARTTLS inside TLS (Postfix smtpd.c: "554 5.5.1 Error: TLS already active"; the session
               goes on, RFC 3207 section 4.2 forbids a second handshake)
    504 5.5.4  AUTH with a mechanism it does not offer (any word: `AUTH attempts` included)
    535 5.7.8  wrong credentials (RFC 4954 section 6: permanent, "authentication credentials invalid"), sent after
               `failed_auth_delay_s` (Dovecot's auth_failure_delay, default 2 s; Postfix smtpd_error_sleep_time)
    454 4.7.0  "Temporary authentication failure" while the auth backend is unavailable (RFC 4954 section 6:
               temporary, retry later; Postfix xsasl_dovecot_server.c when the Dovecot auth socket fails), when told
               to (`faults.auth_unavailable_next(n)`); the password is not even looked at
    235 2.7.0  accepted
    250        MAIL FROM without AUTH (Postfix decides at RCPT: smtpd_relay_restrictions)
    554 5.7.1  RCPT TO without AUTH: "<addr>: Relay access denied" (Postfix reject_unauth_destination, RFC 3463
               X.7.1 "delivery not authorized")
    550 5.1.1  RCPT TO an address of the local domain that has no mailbox (`mailboxes`): "<addr>: Recipient address
               rejected: User unknown in local recipient table" (Postfix local_recipient_maps, RFC 3463 X.1.1)
    250 2.0.0  message queued: "Ok: queued as <queue id>", the id also in the Received: header the mailbox gets
               (Postfix cleanup); a Date: header is added when the message has none (Postfix
               always_add_missing_headers / RFC 5322 section 3.6 requires one); 554 5.7.1 when told to refuse
               messages (`refuse_messages`)
    421 4.3.2  at greeting, when told to (`faults.refuse_next`)

Every 2xx, 4xx and 5xx reply after the greeting carries an enhanced status code (RFC 2034), since EHLO advertises
ENHANCEDSTATUSCODES; aiosmtpd's replies without one get the class's generic code (2.0.0, 5.5.1 ...).

Old passwords: like an app password or an API key at most providers, a password stays valid until someone revokes it
at the console (adding a new password does not end the old one): `revoke(password)` is that console action.

Admin (Python): `SmtpStandIn.passwords` (the accepted set: add a new one, remove the old, as a provider console
does), `.messages` (delivered), `.logins` (password fingerprint, accepted), `.faults` (`refuse_next(n)`: 421 at
greeting; `hang_next(n, s)`: stall the EHLO; `auth_unavailable_next(n)`: 454 4.7.0 to the next AUTHs;
`lose_data_answer_next(n)`: queue the message, then drop the connection instead of answering DATA). No handler
attribute may start with `auth_`: aiosmtpd takes every such name for an AUTH mechanism.
Admin (HTTP, for a rotation running in another process): the console at `.console_url`,
`POST /_admin/passwords {"add": "..."}`,
`POST /_admin/passwords/revoke {"remove": "..."}`, `GET /_admin/state` (fingerprints and counts only).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import ipaddress
import logging
import os
import secrets
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any, AnyStr, TypedDict

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotation.core.keys import generate_key
from rotation.core.secret import Secret, fingerprint, reveal
from rotation.providers.base import ProviderError
from rotation.providers.revocation import RevocationAct, now
from rotation.providers.smtp import NEW_PASSWORD_ENV
from staging.http_standin import Faults as HttpFaults
from staging.http_standin import Reply, Request, serve
from staging.postgres import free_port

TEMPORARY_FAILURE = "421 4.3.2 Service not available, closing transmission channel"
SECOND_STARTTLS = "554 5.5.1 Error: TLS already active"  # Postfix smtpd.c
REFUSED_MESSAGE = "554 5.7.1 Message rejected"
AUTH_UNAVAILABLE = "454 4.7.0 Temporary authentication failure"  # RFC 4954 section 6; Postfix + Dovecot SASL
AUTH_FAILED_PREFIX = "535 "
LOST_ANSWER = "__lost__"  # handle_DATA's word for "close the connection instead of answering"
RELAY_DENIED = "554 5.7.1 <{address}>: Relay access denied"  # Postfix reject_unauth_destination
UNKNOWN_USER = ("550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table")
FAILED_AUTH_DELAY_S = 2.0  # Dovecot auth_failure_delay's default: a failed AUTH is answered after 2 s
FAST_FAILED_AUTH_DELAY_S = 0.05  # what the staging world and the tests use: the same behaviour, faster
STAND_IN_OPERATOR = "the staging console (playing the operator)"
# RFC 3463 codes for aiosmtpd's replies that carry none: by reply code, else by class
ENHANCED = {"500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0",
            "554": "5.7.0", "2": "2.0.0", "4": "4.0.0", "5": "5.0.0"}


def with_enhanced_code(reply: str) -> str:
    """`503 Error: need MAIL command` -> `503 5.5.1 Error: need MAIL command`; a reply with a code stays as it is."""
    code, _, text = reply.partition(" ")
    first = text.split(" ", 1)[0]
    if not (len(code) == 3 and code[0] in "245") or (first.count(".") == 2 and first.replace(".", "").isdigit()):
        return reply
    return f"{code} {ENHANCED.get(code, ENHANCED[code[0]])} {text}".rstrip()


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path
    ca_file: Path


def make_certificate(directory: Path, days: int = 2) -> Certificate:
    """A self-signed EC P-256 server certificate for localhost / 127.0.0.1; the key file is 0600."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file, ca_file = directory / "smtp-cert.pem", directory / "smtp-key.pem", directory / "smtp-ca.pem"
    cert_file.write_bytes(pem)
    ca_file.write_bytes(pem)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return Certificate(cert_file, key_file, ca_file)


@dataclass
class SmtpFaults:
    """Connection-level faults: refuse the next connections with 421, or stall their EHLO past the client timeout."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    _refuse: int = 0
    _hang: int = 0
    _hang_seconds: float = 0.0
    _auth_unavailable: int = 0
    _lose_data_answer: int = 0
    injected: int = 0

    def refuse_next(self, n: int) -> None:
        with self.lock:
            self._refuse = n

    def refuse_forever(self) -> None:
        self.refuse_next(10**9)

    def hang_next(self, n: int, seconds: float) -> None:
        with self.lock:
            self._hang, self._hang_seconds = n, seconds

    def auth_unavailable_next(self, n: int) -> None:
        """The next n AUTH commands get 454 4.7.0 (the auth backend is down), whatever the password."""
        with self.lock:
            self._auth_unavailable = n

    def lose_data_answer_next(self, n: int) -> None:
        """The next n messages are queued (they reach the mailbox), then the connection drops before the 250."""
        with self.lock:
            self._lose_data_answer = n

    def clear(self) -> None:
        with self.lock:
            self._refuse = self._hang = self._auth_unavailable = self._lose_data_answer = 0

    def take_auth_unavailable(self) -> bool:
        with self.lock:
            if self._auth_unavailable > 0:
                self._auth_unavailable -= 1
                self.injected += 1
                return True
            return False

    def take_lost_data_answer(self) -> bool:
        with self.lock:
            if self._lose_data_answer > 0:
                self._lose_data_answer -= 1
                self.injected += 1
                return True
            return False

    def take_refusal(self) -> bool:
        with self.lock:
            if self._refuse > 0:
                self._refuse -= 1
                self.injected += 1
                return True
            return False

    def take_hang(self) -> float:
        with self.lock:
            if self._hang > 0:
                self._hang -= 1
                self.injected += 1
                return self._hang_seconds
            return 0.0


class Received(TypedDict):
    """One message in the stand-in's mailbox, as the relay took it in (DATA answered 250)."""

    mail_from: str | None
    rcpt_tos: list[str]
    subject: str
    tls: bool  # the session had completed STARTTLS
    authenticated: bool | None  # aiosmtpd's Session.authenticated: None when no AUTH succeeded or failed
    queue_id: str
    data: bytes  # with the Received: (and, when the client sent none, Date:) header the relay adds


@dataclass
class SmtpStandIn:
    username: str = "crm-notifications@eventplanning.example.com"
    passwords: set[str] = field(default_factory=set, repr=False)  # no secret in a test report
    messages: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (password fingerprint, accepted)
    faults: SmtpFaults = field(default_factory=SmtpFaults)
    drop_messages: bool = False  # a negative control: 250 queued, but nothing reaches the mailbox
    refuse_messages: bool = False  # a negative control: DATA answered 554 5.7.1
    failed_auth_delay_s: float = FAILED_AUTH_DELAY_S
    local_domain: str = "eventplanning.example.com"
    mailboxes: frozenset[str] | None = None  # the local domain's mailboxes; None: every local address has one
    host: str = "localhost"
    port: int = 0
    ca_file: Path | None = None
    console_url: str = ""
    console_faults: HttpFaults = field(default_factory=HttpFaults)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- admin (the provider console) --------------------------------------------------------------------------
    def add_password(self, password: str | Secret) -> None:
        with self.lock:
            self.passwords.add(reveal(password))

    def remove_password(self, password: str | Secret) -> None:
        with self.lock:
            self.passwords.discard(reveal(password))

    def revoke(self, password: str | Secret) -> None:
        """The console's revoke: from now on this password gets 535 5.7.8; every other password is unchanged."""
        self.remove_password(password)

    def set_password(self, password: str | Secret) -> None:
        """A provider that allows one password: the new one replaces every other at once."""
        with self.lock:
            self.passwords = {reveal(password)}

    def delivered_to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if address in m["rcpt_tos"]]

    # --- SMTP --------------------------------------------------------------------------------------------------
    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: object) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if self.faults.take_auth_unavailable():
            return AuthResult(success=False, handled=False, message=AUTH_UNAVAILABLE)
        login, password = auth_data.login.decode(errors="replace"), auth_data.password.decode(errors="replace")
        with self.lock:
            ok = secrets.compare_digest(login, self.username) and any(
                secrets.compare_digest(password, p) for p in self.passwords)
            self.logins.append((fingerprint(password), ok))
        return AuthResult(success=ok, handled=False)  # failure: aiosmtpd answers 535 5.7.8

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,  # noqa: N802
                          responses: list[str]) -> list[str]:
        stall = self.faults.take_hang()
        if stall:
            await asyncio.sleep(stall)
        session.host_name = hostname
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        """Postfix decides at RCPT: without AUTH nothing is relayed (554 5.7.1); an address of the local domain
        without a mailbox is unknown (550 5.1.1)."""
        if not session.authenticated:
            return RELAY_DENIED.format(address=address)
        local = address.rpartition("@")[2].lower() == self.local_domain
        if local and self.mailboxes is not None and address.lower() not in self.mailboxes:
            return UNKNOWN_USER.format(address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = message_from_bytes(content)
        queue_id = secrets.token_hex(5).upper()
        added = b"" if parsed.get("Date") else f"Date: {email.utils.formatdate()}\r\n".encode()
        received = (f"Received: from {session.host_name} by {self.host} with ESMTPSA id {queue_id}; "
                    f"{email.utils.formatdate()}\r\n").encode()
        with self.lock:
            if self.refuse_messages:
                return REFUSED_MESSAGE
            if self.drop_messages:
                return f"250 2.0.0 Ok: queued as {queue_id}"
            self.messages.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                  "subject": str(parsed.get("Subject", "")), "tls": session.ssl is not None,
                                  "authenticated": session.authenticated, "queue_id": queue_id,
                                  "data": received + added + content})
        if self.faults.take_lost_data_answer():
            return LOST_ANSWER
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def find(self, needle: str) -> list[Received]:
        """The messages in the mailbox whose text contains `needle` (a Message-ID, a nonce)."""
        wanted = needle.encode()
        with self.lock:
            return [m for m in self.messages if wanted in m["data"]]

    # --- HTTP console ------------------------------------------------------------------------------------------
    def console(self, request: Request) -> Reply:
        if (request.method, request.path) == ("GET", "/_admin/state"):
            with self.lock:
                return Reply(200, {"passwords": sorted(fingerprint(p) for p in self.passwords),
                                   "messages": len(self.messages)})
        paths = ("/_admin/passwords", "/_admin/passwords/revoke")
        if request.method == "POST" and request.path in paths and request.json:
            add, remove = request.json.get("add"), request.json.get("remove")
            if isinstance(add, str):
                self.add_password(add)
            if isinstance(remove, str):
                self.remove_password(remove)
            return Reply(200, {"passwords": len(self.passwords)})
        return Reply(404, {"error": "not found"})


@dataclass(frozen=True)
class StandInConsole:
    """The provider console in staging (a `PasswordConsole`): creates a new password at the stand-in and revokes the
    old one there, over the stand-in's HTTP console so a rotation in another process can use it too. It plays the
    operator, and the evidence says so. `offered` plays a password the operator handed over ($SMTP_NEW_PASSWORD in
    the environment given), used as it is (the operator created it at the console); `forget_to_revoke` is the
    negative control of an operator who says nothing and revokes nothing."""

    console_url: str
    environ: Mapping[str, str] = field(default_factory=dict)
    forget_to_revoke: bool = False

    def offered(self) -> Secret | None:
        password = self.environ.get(NEW_PASSWORD_ENV, "").strip()
        return Secret(password) if password else None

    def obtain(self) -> Secret:
        offered = self.offered()
        if offered is not None:
            return offered
        password = generate_key()
        self._post("create a password", "/_admin/passwords", {"add": password.reveal()})
        return password

    def retire(self, old: Secret) -> RevocationAct:
        asked_at = now()
        if self.forget_to_revoke:
            return RevocationAct(STAND_IN_OPERATOR, "the stand-in console (told to do nothing)", asked_at)
        self._post("revoke the old password", "/_admin/passwords/revoke", {"remove": old.reveal()})
        return RevocationAct(STAND_IN_OPERATOR, f"POST {self.console_url}/_admin/passwords/revoke", asked_at, now())

    def _post(self, what: str, path: str, body: dict[str, str]) -> None:
        try:
            response = requests.post(f"{self.console_url}{path}", json=body, timeout=5)
        except requests.RequestException as exc:
            raise ProviderError(f"smtp console: could not {what} ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise ProviderError(f"smtp console: could not {what} (HTTP {response.status_code})",
                                status=response.status_code)


class _FaultySMTP(SMTP):
    """aiosmtpd's SMTP with what a submission server does beyond it: 554 5.5.1 for a second STARTTLS, enhanced status
    codes on every reply after the greeting (EHLO's lines excepted), the delay before a 535, a 421 at greeting and a
    lost answer to DATA when the stand-in is told to."""

    def __init__(self, *args: Any, standin: SmtpStandIn, **kwargs: Any) -> None:  # aiosmtpd's SMTP arguments
        super().__init__(*args, **kwargs)
        self._standin = standin
        self._greeted = False
        self._in_ehlo = False

    async def push(self, status: AnyStr) -> None:
        if not self._greeted:
            self._greeted = True
            if isinstance(status, str) and status.startswith("220 ") and self._standin.faults.take_refusal():
                await super().push(TEMPORARY_FAILURE)
                if self.transport is not None:
                    self.transport.close()
                return
            await super().push(status)
            return
        if status == LOST_ANSWER:  # the message is queued; the answer never reaches the client
            if self.transport is not None:
                self.transport.close()
            return
        if isinstance(status, str) and status.startswith(AUTH_FAILED_PREFIX):
            await asyncio.sleep(self._standin.failed_auth_delay_s)  # Dovecot's auth_failure_delay
        if isinstance(status, str) and not self._in_ehlo:  # bytes: an AUTH challenge (334 ...), kept plain
            await super().push(with_enhanced_code(status))
        else:
            await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:  # noqa: N802  (aiosmtpd's naming)
        self._in_ehlo = True  # RFC 2034: EHLO's reply keeps its plain form
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def smtp_STARTTLS(self, arg: str) -> None:  # noqa: N802
        if self._tls_protocol is not None:  # aiosmtpd would start a second handshake and drop the session
            await self.push(SECOND_STARTTLS)
            return
        await super().smtp_STARTTLS(arg)


class _Controller(Controller):
    def __init__(self, standin: SmtpStandIn, **kwargs: Any) -> None:  # aiosmtpd's Controller arguments
        super().__init__(standin, **kwargs)
        self._standin = standin

    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, standin=self._standin, **self.SMTP_kwargs)


@contextlib.contextmanager
def smtp_standin(directory: Path, standin: SmtpStandIn | None = None) -> Iterator[SmtpStandIn]:
    """Start the SMTP stand-in (and its HTTP console) on free loopback ports; certificates go to `directory`. Without
    a stand-in given, one whose failed-AUTH delay is FAST_FAILED_AUTH_DELAY_S (the behaviour, at test speed)."""
    standin = standin or SmtpStandIn(failed_auth_delay_s=FAST_FAILED_AUTH_DELAY_S)
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # DEBUG echoes base64 AUTH; WARNING: its own deprecations
    cert = make_certificate(directory)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert.cert_file, cert.key_file)
    port = free_port()
    # auth_required=False: like Postfix, MAIL is answered 250 without AUTH and the refusal comes at RCPT (554 5.7.1)
    controller = _Controller(standin, hostname="127.0.0.1", port=port, server_hostname="localhost", tls_context=tls,
                             require_starttls=True, auth_required=False, auth_require_tls=True,
                             authenticator=standin.authenticate, ready_timeout=10)
    controller.start()
    standin.port, standin.ca_file = port, cert.ca_file
    try:
        unavailable = lambda status: Reply(status, {"error": "unavailable"})  # noqa: E731
        with serve(standin.console, standin.console_faults, unavailable) as console_url:
            standin.console_url = console_url
            yield standin
    finally:
        standin.faults.clear()
        controller.stop()
