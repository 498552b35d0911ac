"""The SMTP stand-in fails as a real submission server does (Postfix 3.7 + Dovecot 2.3, integration-facts.md), driven
over the wire with smtplib: 454 4.7.0 while the auth backend is down, a delay before 535 5.7.8, MAIL accepted then
RCPT refused 554 5.7.1 without AUTH, 550 5.1.1 for an unknown local recipient, 554 5.5.1 for a second STARTTLS, a
Date header added when the client sends none, the old password valid until it is revoked at the console, and a
lost answer to DATA after the message was queued."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from rotation.core.secret import Secret
from staging.smtp_standin import SmtpStandIn, smtp_standin

PASSWORD = Secret("standin-password-0123456789")
USER = "crm-notifications@eventplanning.example.com"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[SmtpStandIn]:
    standin = SmtpStandIn(failed_auth_delay_s=0.3, mailboxes=frozenset({"admin@eventplanning.example.com"}))
    with smtp_standin(tmp_path / "tls", standin) as server:
        server.add_password(PASSWORD)
        yield server


def session(relay: SmtpStandIn) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", relay.port, timeout=10)
    client.starttls(context=ssl.create_default_context(cafile=str(relay.ca_file)))
    client.ehlo()
    return client


def auth(client: smtplib.SMTP, password: Secret) -> tuple[int, bytes]:
    """One AUTH PLAIN, as the adapter sends it (smtplib's login() would try every mechanism)."""
    client.user, client.password = USER, password.reveal()
    try:
        return client.auth("PLAIN", client.auth_plain)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error


def test_a_temporary_auth_failure_is_454_4_7_0_and_the_next_auth_succeeds(relay: SmtpStandIn) -> None:
    relay.faults.auth_unavailable_next(1)
    with session(relay) as client:
        assert auth(client, PASSWORD) == (454, b"4.7.0 Temporary authentication failure")
        assert auth(client, PASSWORD)[0] == 235
    assert relay.faults.injected == 1


def test_a_wrong_password_gets_535_5_7_8_only_after_the_failed_auth_delay(relay: SmtpStandIn) -> None:
    with session(relay) as client:
        started = time.monotonic()
        code, text = auth(client, Secret("wrong-password-0123456789"))
        waited = time.monotonic() - started
    assert (code, text.split(b" ", 1)[0]) == (535, b"5.7.8")
    assert waited >= 0.25, f"the 535 came after {waited:.2f}s, not after the configured 0.3s delay"


def test_mail_is_accepted_without_auth_but_rcpt_is_refused_554_5_7_1(relay: SmtpStandIn) -> None:
    with session(relay) as client:
        assert client.mail("crm@eventplanning.example.com")[0] == 250
        code, text = client.rcpt("someone@elsewhere.example.org")
    assert (code, text) == (554, b"5.7.1 <someone@elsewhere.example.org>: Relay access denied")


def test_an_unknown_local_recipient_is_550_5_1_1_and_other_domains_are_relayed(relay: SmtpStandIn) -> None:
    with session(relay) as client:
        assert auth(client, PASSWORD)[0] == 235
        client.mail("crm@eventplanning.example.com")
        assert client.rcpt("nobody@eventplanning.example.com") == (
            550, b"5.1.1 <nobody@eventplanning.example.com>: Recipient address rejected: User unknown in local "
                 b"recipient table")
        assert client.rcpt("admin@eventplanning.example.com")[0] == 250
        assert client.rcpt("someone@elsewhere.example.org")[0] == 250


def test_a_second_starttls_is_554_5_5_1_and_the_session_goes_on(relay: SmtpStandIn) -> None:
    with session(relay) as client:
        assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        assert auth(client, PASSWORD)[0] == 235


def test_a_message_without_date_gets_one_and_the_queue_id_is_in_received(relay: SmtpStandIn) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = USER, "admin@eventplanning.example.com", "no date"
    message.set_content("body")
    with session(relay) as client:
        auth(client, PASSWORD)
        client.mail(USER)
        client.rcpt("admin@eventplanning.example.com")
        code, text = client.data(message.as_bytes())
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    [stored] = relay.messages
    queue_id = text.rsplit(b" ", 1)[1]
    data = stored["data"]
    assert isinstance(data, bytes) and b"\r\nDate: " in data and b"with ESMTPSA id " + queue_id in data


def test_the_old_password_stays_valid_until_it_is_revoked_at_the_console(relay: SmtpStandIn) -> None:
    new = Secret("the-new-password-0123456789")
    relay.add_password(new)
    with session(relay) as client:
        assert auth(client, PASSWORD)[0] == 235  # a new password does not end the old one
    relay.revoke(PASSWORD)
    with session(relay) as client:
        assert auth(client, PASSWORD)[0] == 535
    with session(relay) as client:
        assert auth(client, new)[0] == 235


def test_a_lost_answer_to_data_leaves_the_message_queued(relay: SmtpStandIn) -> None:
    relay.faults.lose_data_answer_next(1)
    with session(relay) as client:
        auth(client, PASSWORD)
        client.mail(USER)
        client.rcpt("admin@eventplanning.example.com")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.data(b"Subject: lost\r\nMessage-ID: <nonce-1@x>\r\n\r\nbody\r\n")
    assert len(relay.find("<nonce-1@x>")) == 1
