"""The SMTP adapter with smtplib over loopback against the aiosmtpd stand-in (STARTTLS required, AUTH required)."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import replace

import pytest

from rotation.core.secret import Secret
from rotation.providers.base import CredentialCheck, CredentialStillAccepted, ProviderError, SendAnswerLost
from rotation.providers.smtp import OperatorConsole, SmtpProvider, SmtpSettings
from staging.smtp_standin import SmtpStandIn
from tests.providers.conftest import ADMIN_EMAIL, leaked


@pytest.fixture
def current(smtp_server: SmtpStandIn) -> Secret:
    password = Secret("current-SMTP-password-0123456789")
    smtp_server.add_password(password)
    return password


def test_login_over_verified_starttls(smtp: SmtpProvider, current: Secret) -> None:
    result = smtp.check(current)
    assert result.accepted and result.status == 235
    assert "TLSv1." in result.detail and "certificate verified" in result.detail


def test_wrong_password_gets_535_5_7_8(smtp: SmtpProvider, current: Secret) -> None:
    result = smtp.check(Secret("not-the-password-0123456789"))
    assert (result.accepted, result.status, result.code) == (False, 535, "5.7.8")


def test_the_server_demands_starttls_before_auth(smtp_server: SmtpStandIn, current: Secret) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN AGN1cnJlbnQ=") == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530


def test_the_protocol_as_rfc_3207_and_2034_want_it(smtp_server: SmtpStandIn, current: Secret) -> None:
    """With smtplib over the wire: ENHANCEDSTATUSCODES advertised (and every later reply carries one), a second
    STARTTLS inside TLS gets Postfix's 554 5.5.1 and the session goes on, and any AUTH word is answered, `AUTH
    attempts` included (a handler attribute named auth_* used to be taken for a mechanism and crash the session)."""
    context = ssl.create_default_context(cafile=str(smtp_server.ca_file))
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes") and client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes") and not client.has_extn("starttls")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]  # no ATTEMPTS mechanism
        assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        for word in ("attempts", "ATTEMPTS", "CRAM-MD5", "XOAUTH2", "logins"):
            assert client.docmd("AUTH", word) == (504, b"5.5.4 Unrecognized authentication type"), word
        assert client.docmd("AUTH", "PLAIN !!!") == (501, b"5.5.2 Can't decode base64")
        assert client.noop() == (250, b"2.0.0 OK")
        client.login(smtp_server.username, current.reveal())  # the session survived all of it
        assert client.docmd("AUTH", "attempts") == (503, b"5.5.1 Already authenticated")
        assert client.docmd("RCPT", "TO:<admin@example.com>") == (503, b"5.5.1 Error: need MAIL command")
    assert smtp_server.logins == [(current.fingerprint, True)]


def test_an_unverifiable_certificate_is_refused(smtp: SmtpProvider, current: Secret) -> None:
    system_trust = replace(smtp, settings=replace(smtp.settings, ca_file=None))
    with pytest.raises(ProviderError, match="certificate failed verification"):
        system_trust.check(current)


def test_the_certificate_is_ec_p256_for_localhost(smtp_server: SmtpStandIn) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    assert smtp_server.ca_file is not None
    cert = x509.load_pem_x509_certificate(smtp_server.ca_file.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (smtp_server.ca_file.parent / "smtp-key.pem").stat().st_mode & 0o777 == 0o600


def test_console_issues_a_new_password_and_revokes_the_old(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                           current: Secret) -> None:
    new = smtp.issue(current)
    assert new != current and smtp.check(new).accepted and smtp.check(current).accepted
    smtp.retire_old(current, new)
    rejected = smtp.expect_rejected(current)
    assert (rejected.status, rejected.code) == (535, "5.7.8")
    assert smtp.check(new).accepted


def test_negative_control_old_password_still_accepted_is_caught(smtp: SmtpProvider, current: Secret) -> None:
    new = smtp.issue(current)  # the operator forgot to revoke the old password at the provider
    with pytest.raises(CredentialStillAccepted) as caught:
        smtp.expect_rejected(current)
    assert not leaked(str(caught.value), current, new)


def test_password_changed_at_runtime_takes_effect_at_once(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                          current: Secret) -> None:
    replacement = Secret("replacement-password-0123456789")
    smtp_server.set_password(replacement)
    assert not smtp.check(current).accepted and smtp.check(replacement).accepted


def test_test_email_is_delivered_over_tls_after_auth(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                     current: Secret) -> None:
    delivery = smtp.send_test_message(current, "rotation test")
    [message] = smtp_server.delivered_to(ADMIN_EMAIL)
    assert message["tls"] and message["authenticated"] and delivery.message_id.encode() in message["data"]


def test_operator_console_takes_the_new_password_from_the_environment_or_a_prompt(smtp: SmtpProvider) -> None:
    from_env = OperatorConsole(environ={"SMTP_NEW_PASSWORD": " from-environment-0123456789 \n"})
    assert from_env.obtain() == Secret("from-environment-0123456789") and isinstance(from_env.obtain(), Secret)
    prompts: list[str] = []
    prompted = OperatorConsole(environ={}, prompt=lambda text: prompts.append(text) or "typed-at-prompt-0123456789")
    assert prompted.obtain() == Secret("typed-at-prompt-0123456789") and "not echoed" in prompts[0]
    with pytest.raises(ProviderError, match="at least 16"):
        replace(smtp, console=OperatorConsole(environ={"SMTP_NEW_PASSWORD": "short"})).issue(Secret("x" * 20))


def test_421_three_times_then_success(smtp: SmtpProvider, smtp_server: SmtpStandIn, current: Secret) -> None:
    smtp_server.faults.refuse_next(3)
    assert smtp.check(current).accepted and smtp_server.faults.injected == 3


def test_refused_forever_fails_cleanly_without_the_password(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                            current: Secret, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_server.faults.refuse_forever()
    result = smtp.check(current)  # an outage proves nothing about the password: UNDECIDED, never REFUSED
    assert result.answer is CredentialCheck.UNDECIDED and not result.accepted
    assert "gave up after 4 attempts" in result.detail and "421" in result.detail
    assert not leaked(result.detail + caplog.text, current)
    with pytest.raises(ProviderError, match="no definitive answer"):
        smtp.expect_rejected(current)


def test_a_timeout_is_retried_like_a_refusal(smtp: SmtpProvider, smtp_server: SmtpStandIn, current: Secret) -> None:
    smtp_server.faults.hang_next(1, 1.0)
    assert smtp.check(current).accepted
    smtp_server.faults.hang_next(10, 0.8)
    result = smtp.check(current)
    assert result.answer is CredentialCheck.UNDECIDED and "no answer within" in result.detail


def test_settings_from_env_default_to_port_587_and_the_system_trust_store() -> None:
    settings = SmtpSettings.from_env({"SMTP_HOST": "smtp.example.com", "SMTP_USERNAME": "crm@example.com",
                                      "SMTP_FROM_EMAIL": "crm-notify@example.com", "ADMIN_EMAIL": "a@example.com"})
    assert (settings.port, settings.ca_file, settings.sender) == (587, None, "crm-notify@example.com")
    assert settings.problems() == {}
    context = SmtpProvider(settings, OperatorConsole(environ={})).tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_temporary_auth_failure_is_retried_and_then_decides(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                              current: Secret) -> None:
    """454 4.7.0 is retried with backoff; the answer after it decides (235 here), and each check costs one AUTH."""
    smtp_server.faults.auth_unavailable_next(2)
    result = smtp.check(current)
    assert result.answer is CredentialCheck.ACCEPTED and smtp_server.faults.injected == 2
    assert [ok for _, ok in smtp_server.logins] == [True]  # the 454s never reached the password


def test_a_persistent_temporary_auth_failure_is_undecided_never_refused(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                                       current: Secret) -> None:
    """The issue's bug: a 454 was taken for proof that the password is dead. Negative control: the same password,
    once the backend answers, is accepted (so UNDECIDED was right, REFUSED would have been a false claim)."""
    smtp_server.faults.auth_unavailable_next(100)
    result = smtp.check(current)
    assert (result.answer, result.accepted) == (CredentialCheck.UNDECIDED, False), result
    assert "454" in result.detail and "4.7.0" in result.detail
    smtp_server.faults.clear()
    assert smtp.check(current).answer is CredentialCheck.ACCEPTED


@pytest.mark.parametrize(("code", "reply", "answer"), [
    (535, "5.7.8 Error: authentication failed", CredentialCheck.REFUSED),
    (535, "5.7.3 Authentication unsuccessful", CredentialCheck.REFUSED),
    (535, "Authentication failed", CredentialCheck.REFUSED),  # a relay without ENHANCEDSTATUSCODES
    (454, "4.7.0 Temporary authentication failure", CredentialCheck.UNDECIDED),
    (534, "5.7.9 Authentication mechanism is too weak", CredentialCheck.UNDECIDED),
    (535, "5.5.4 Syntax error", CredentialCheck.UNDECIDED),
    (530, "5.7.0 Must issue a STARTTLS command first", CredentialCheck.UNDECIDED),
])
def test_only_a_permanent_authentication_failure_refuses(code: int, reply: str, answer: CredentialCheck) -> None:
    from rotation.providers.smtp import definitive

    assert definitive(code, reply) is answer


def test_a_wrong_password_costs_one_auth_not_one_per_mechanism(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                               current: Secret) -> None:
    assert smtp.check(Secret("not-the-password-0123456789")).answer is CredentialCheck.REFUSED
    assert [ok for _, ok in smtp_server.logins] == [False]


def test_the_test_email_comes_from_smtp_from_email_with_a_date(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                               current: Secret) -> None:
    from email import message_from_bytes

    sender = replace(smtp, settings=replace(smtp.settings, sender="notify@eventplanning.example.com",
                                            sender_name="Event Planning CRM"))
    delivery = sender.send_test_message(current, "rotation test")
    [stored] = smtp_server.find(delivery.message_id)
    assert stored["mail_from"] == "notify@eventplanning.example.com"
    data = stored["data"]
    assert isinstance(data, bytes)
    parsed = message_from_bytes(data.split(b"\r\n", 1)[1])  # past the relay's Received: line
    assert parsed["From"] == "Event Planning CRM <notify@eventplanning.example.com>"
    assert parsed["Date"] and data.count(b"\r\nDate: ") + data.startswith(b"Date: ") == 1  # ours, none added


def test_a_lost_answer_after_data_is_not_retried(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                 current: Secret) -> None:
    """Retrying after DATA would send a second message: the adapter stops and names the message to look for."""
    smtp_server.faults.lose_data_answer_next(1)
    with pytest.raises(SendAnswerLost) as caught:
        smtp.send_test_message(current, "rotation test")
    assert len(smtp_server.find(caught.value.message_id)) == 1 and len(smtp_server.messages) == 1
    assert caught.value.recipient == ADMIN_EMAIL
